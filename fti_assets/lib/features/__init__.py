"""Feature groups, windows, pipelines, on-demand features, views and the PIT join."""
