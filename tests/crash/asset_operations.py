"""The Dagster asset the crash trials kill: ``inference_log``, loading a day of the service's
JSONL log into the lake (one partition replaced in one commit).

A module of its own: it imports Dagster and the asset definitions (seconds), which the other
trials' children need not. The trial folder holds ``lake/`` and ``data/inference_log`` (a
symlink to the log files).
"""

from pathlib import Path

import dagster as dg

from fti_assets.defs.inference.assets import inference_log
from fti_assets.lib.core.settings import LakeConfig
from fti_assets.resources import DataDirResource, OfflineStoreResource

LOG_DAY = "2026-09-10"


def materialize_inference_log(workdir: Path) -> None:
    """Materialize the asset's partition for :data:`LOG_DAY` in-process, with the trial
    folder's lake and data folder as resources."""
    lake = LakeConfig.under(workdir / "lake")
    dg.materialize(
        [inference_log],
        partition_key=LOG_DAY,
        resources={
            "offline_store": OfflineStoreResource(catalog=lake.catalog, data_path=lake.data_path),
            "data_dir": DataDirResource(path=str(workdir / "data")),
        },
        # Dagster's console logger prints every event at DEBUG: keep the trials' output to
        # their one line per kind.
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
    )
