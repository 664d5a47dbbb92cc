"""The monitoring library stays pure: no Dagster, no other platform module."""

from __future__ import annotations

import json
import subprocess
import sys

MODULES = ("drift", "evidently_report", "performance", "estimation")


def test_monitoring_imports_neither_dagster_nor_other_platform_modules() -> None:
    code = (
        "import json, sys\n"
        + "".join(f"import fti_assets.lib.monitoring.{m}\n" for m in MODULES)
        + "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('dagster', 'fti_assets'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout

    loaded = json.loads(out)
    assert [m for m in loaded if m.startswith("dagster")] == []
    assert [m for m in loaded if not m.startswith("fti_assets.lib.monitoring")] == [
        "fti_assets",
        "fti_assets.lib",
    ]
