"""Where runtime state lives, read from environment variables with defaults under ``data/``.

Dagster resources, the dbt profile, the CLI and the HTTP service all resolve paths through
:class:`Settings`, so they agree on one offline store, one online store, one event log and one
data folder.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from fti_assets.lib.store_urls import sqlite_url

PROJECT_ROOT = Path(__file__).resolve().parents[2]

DEFAULT_START = date(2026, 9, 1)
DEFAULT_DAYS = 60


@dataclass(frozen=True)
class DataLayout:
    """The folders under FTI_DATA_DIR."""

    data_dir: Path

    @property
    def landing_dir(self) -> Path:
        return self.data_dir / "landing"

    @property
    def oracle_dir(self) -> Path:
        """Ground truth the generator writes apart from the landing zone: no feature reads it."""
        return self.data_dir / "oracle"

    @property
    def datasets_dir(self) -> Path:
        return self.data_dir / "datasets"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def reports_dir(self) -> Path:
        return self.data_dir / "reports"

    @property
    def inference_log_dir(self) -> Path:
        return self.data_dir / "inference_log"


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    duckdb_path: Path
    online_path: Path
    # Online store backend (FTI_ONLINE_URL): sqlite:///abs/path or redis://host:port/db. Empty:
    # the SQLite file at online_path (FTI_ONLINE_PATH), as before the setting existed.
    online_url: str = ""
    # Streaming event log (FTI_EVENT_LOG_URL), the same two forms; empty: events.sqlite in data_dir.
    event_log_url: str = ""

    def __post_init__(self) -> None:
        if not self.online_url:
            object.__setattr__(self, "online_url", sqlite_url(self.online_path))
        if not self.event_log_url:
            object.__setattr__(self, "event_log_url", sqlite_url(self.data_dir / "events.sqlite"))

    @classmethod
    def from_env(cls) -> Settings:
        data_dir = Path(os.environ.get("FTI_DATA_DIR") or PROJECT_ROOT / "data").resolve()
        duckdb_path = Path(os.environ.get("FTI_DUCKDB_PATH") or data_dir / "offline.duckdb")
        online_path = Path(os.environ.get("FTI_ONLINE_PATH") or data_dir / "online.sqlite")
        return cls(
            data_dir,
            duckdb_path.resolve(),
            online_path.resolve(),
            os.environ.get("FTI_ONLINE_URL", ""),
            os.environ.get("FTI_EVENT_LOG_URL", ""),
        )

    @property
    def layout(self) -> DataLayout:
        return DataLayout(self.data_dir)


def partition_dates(settings: Settings | None = None) -> tuple[date, date]:
    """First and last day (inclusive) of the daily partitions.

    ``FTI_START_DATE`` / ``FTI_END_DATE`` win; otherwise the generator's landing manifest tells
    which days exist; otherwise the default demo window.
    """
    settings = settings or Settings.from_env()
    start_env, end_env = os.environ.get("FTI_START_DATE"), os.environ.get("FTI_END_DATE")
    manifest = settings.layout.landing_dir / "_manifest.json"
    if start_env and end_env:
        return date.fromisoformat(start_env), date.fromisoformat(end_env)
    if manifest.exists():
        meta = json.loads(manifest.read_text())
        start, end = date.fromisoformat(meta["start"]), date.fromisoformat(meta["end"])
    else:
        start, end = DEFAULT_START, DEFAULT_START + timedelta(days=DEFAULT_DAYS - 1)
    if start_env:
        start = date.fromisoformat(start_env)
    if end_env:
        end = date.fromisoformat(end_env)
    if end < start:
        raise ValueError(
            f"partition end {end} is before start {start}; check FTI_START_DATE/FTI_END_DATE"
        )
    return start, end
