"""Pure-Python core of the platform: no Dagster imports live under this package."""
