"""Environments for the processes a test starts (``fti stream``, uvicorn, dagster-daemon)."""

from __future__ import annotations

import os


def fti_env(**values: str) -> dict[str, str]:
    """This process's environment without any ``FTI_*`` variable, plus ``values``.

    In-process runs earlier in the same test worker may have left ``FTI_*`` variables behind
    (the dbt asset exports the lake's location for dbt's profile), which would point a child
    process at another test's data. The daily partition window (``FTI_START_DATE`` /
    ``FTI_END_DATE``, pinned by tests/conftest.py) is kept.
    """
    keep = ("FTI_START_DATE", "FTI_END_DATE")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FTI_") or k in keep}
    return {**env, **values}
