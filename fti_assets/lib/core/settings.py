"""Where runtime state lives, read from environment variables with defaults under ``data/``.

Dagster resources, the dbt profile, the CLI and the HTTP service all resolve paths through
:class:`Settings`, so they agree on one offline store (a DuckLake: :class:`LakeConfig`), one
online store, one event log and one data folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from fti_assets.lib.core.store_urls import sqlite_url

PROJECT_ROOT = Path(__file__).resolve().parents[3]

DEFAULT_START = date(2026, 9, 1)
DEFAULT_DAYS = 60
CATALOG_KINDS = ("sqlite", "postgres")
DEFAULT_REPORTS_URL = "http://127.0.0.1:3001"

# Folders under FTI_DATA_DIR where data arrives (landing/) and where the generator keeps the whole
# world it releases into landing/ day by day (world/), each with a manifest file.
LANDING_DIR = "landing"
WORLD_DIR = "world"
MANIFEST_FILE = "_manifest.json"


@dataclass(frozen=True)
class DataLayout:
    """The folders under FTI_DATA_DIR."""

    data_dir: Path

    @property
    def landing_dir(self) -> Path:
        return self.data_dir / LANDING_DIR

    @property
    def world_dir(self) -> Path:
        """Everything the generator made, released into landing/ day by day
        (lib/synthetic/world)."""
        return self.data_dir / WORLD_DIR

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


class LegacySettingError(ValueError):
    """An environment variable from an older layout of the data layer is set."""


@dataclass(frozen=True)
class LakeConfig:
    """Where the offline store (a DuckLake) lives: its catalog — ``sqlite:<path>`` (embedded
    default) or ``postgres:<libpq connection string>`` (to scale out) — and the folder or
    object-storage prefix of its Parquet data files."""

    catalog: str
    data_path: str

    def __post_init__(self) -> None:
        kind, _, target = self.catalog.partition(":")
        if kind not in CATALOG_KINDS or not target:
            raise ValueError(
                f"lake catalog {self.catalog!r} is not valid; expected 'sqlite:<path>' or "
                "'postgres:<libpq connection string>' (e.g. 'postgres:dbname=lake host=127.0.0.1')"
            )
        if not self.data_path:
            raise ValueError("lake data path is empty; expected a folder or an object-store URL")

    @classmethod
    def under(cls, folder: str | Path) -> LakeConfig:
        """A lake with a SQLite catalog and local data files inside ``folder``."""
        folder = Path(folder).resolve()
        return cls(catalog=f"sqlite:{folder / 'catalog.sqlite'}", data_path=f"{folder / 'data'}/")

    @property
    def kind(self) -> str:
        return self.catalog.split(":", 1)[0]

    @property
    def target(self) -> str:
        """The catalog's location: a file path (sqlite) or a connection string (postgres)."""
        return self.catalog.split(":", 1)[1]

    @property
    def is_local(self) -> bool:
        """Whether the data files are in a local folder (not object storage)."""
        return "://" not in self.data_path

    def exists(self) -> bool:
        """Whether the catalog has been created (always assumed for a Postgres catalog)."""
        return self.kind != "sqlite" or Path(self.target).exists()

    def describe(self) -> str:
        """The catalog and data path, with any password in a connection string masked."""
        catalog = re.sub(r"(password\s*=\s*)\S+", r"\1***", self.catalog, flags=re.IGNORECASE)
        return f"ducklake:{catalog} (data {self.data_path})"


def lake_from_env(data_dir: Path) -> LakeConfig:
    """The lake named by FTI_LAKE_CATALOG / FTI_LAKE_DATA_PATH, defaulting to ``data_dir/lake``.

    A bare path as the catalog means a SQLite catalog file. A catalog named without a data path
    gets a data folder of its own (next to a SQLite catalog file; under ``data_dir/lake`` for a
    Postgres one).
    """
    if os.environ.get("FTI_DUCKDB_PATH"):
        raise LegacySettingError(
            "FTI_DUCKDB_PATH is no longer used: the offline store is a DuckLake now. Unset it "
            "and, to choose where the lake lives, set FTI_LAKE_CATALOG (sqlite:<file> or "
            "postgres:<connection string>) and FTI_LAKE_DATA_PATH (a folder for the Parquet "
            f"files); the default is {data_dir / 'lake'}"
        )
    default = LakeConfig.under(data_dir / "lake")
    catalog = os.environ.get("FTI_LAKE_CATALOG") or default.catalog
    if catalog.partition(":")[0] not in CATALOG_KINDS:
        catalog = f"sqlite:{Path(catalog).resolve()}"
    data_path = os.environ.get("FTI_LAKE_DATA_PATH") or _data_path_for(catalog, default)
    if "://" not in data_path:
        data_path = f"{Path(data_path).resolve()}/"
    return LakeConfig(catalog=catalog, data_path=data_path)


def _data_path_for(catalog: str, default: LakeConfig) -> str:
    """A data folder of its own for a catalog named without FTI_LAKE_DATA_PATH: two lakes must
    never share one, or each one's orphan-file cleanup would delete the other's files."""
    if catalog == default.catalog:
        return default.data_path
    kind, _, target = catalog.partition(":")
    if kind == "sqlite":
        path = Path(target)
        return f"{path.with_name(path.stem + '_data')}/"
    digest = hashlib.sha256(catalog.encode()).hexdigest()[:12]
    return f"{Path(default.data_path).parent / f'{kind}-{digest}'}/"


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    lake: LakeConfig
    online_path: Path
    registry_path: Path
    # FTI_ONLINE_URL as set (sqlite:///abs/path or redis://host:port/db); empty: the SQLite
    # file at online_path (FTI_ONLINE_PATH). Read it through `online_url`.
    online_url_setting: str = ""
    # FTI_EVENT_LOG_URL as set (the same two forms); empty: events.sqlite in data_dir.
    event_log_url_setting: str = ""
    # FTI_ADMIN_TOKEN: the bearer token the service's /admin endpoints require; empty: those
    # endpoints are disabled. A secret: only ever read from the environment, never printed
    # (left out of the repr) nor recorded in metadata.
    admin_token: str = field(default="", repr=False)

    @property
    def online_url(self) -> str:
        """The online store's backend URL (FTI_ONLINE_URL, else the SQLite file online_path)."""
        return self.online_url_setting or sqlite_url(self.online_path)

    @property
    def event_log_url(self) -> str:
        """The streaming event log's URL (FTI_EVENT_LOG_URL, else data_dir/events.sqlite)."""
        return self.event_log_url_setting or sqlite_url(self.data_dir / "events.sqlite")

    @classmethod
    def from_env(cls) -> Settings:
        data_dir = Path(os.environ.get("FTI_DATA_DIR") or PROJECT_ROOT / "data").resolve()
        online_path = Path(os.environ.get("FTI_ONLINE_PATH") or data_dir / "online.sqlite")
        registry_path = Path(os.environ.get("FTI_REGISTRY_PATH") or data_dir / "registry.sqlite")
        return cls(
            data_dir,
            lake_from_env(data_dir),
            online_path.resolve(),
            registry_path.resolve(),
            os.environ.get("FTI_ONLINE_URL", ""),
            os.environ.get("FTI_EVENT_LOG_URL", ""),
            os.environ.get("FTI_ADMIN_TOKEN", "").strip(),
        )

    @classmethod
    def for_data_dir(cls, data_dir: Path) -> Settings:
        """The default layout under ``data_dir``, whatever the environment says (so no admin
        token: the service's /admin endpoints are disabled)."""
        data_dir = Path(data_dir).resolve()
        return cls(
            data_dir,
            LakeConfig.under(data_dir / "lake"),
            data_dir / "online.sqlite",
            data_dir / "registry.sqlite",
        )

    @property
    def layout(self) -> DataLayout:
        return DataLayout(self.data_dir)

    @property
    def reports_url(self) -> str:
        """Where the reports folder is served over HTTP (`make dev`, `fti reports serve`)."""
        return os.environ.get("FTI_REPORTS_URL") or DEFAULT_REPORTS_URL


def last_complete_day(now: datetime | None = None) -> date:
    """The latest UTC day that has ended: yesterday (UTC) at ``now`` (default: the clock)."""
    now = now or datetime.now(UTC)
    return now.astimezone(UTC).date() - timedelta(days=1)


def _env_date(name: str) -> date | None:
    raw = os.environ.get(name)
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError as exc:
        raise ValueError(f"{name}={raw!r} is not a date; expected YYYY-MM-DD") from exc


def partition_start(settings: Settings | None = None) -> date:
    """First day of the daily partitions.

    ``FTI_START_DATE`` wins; otherwise the generated world's first day (its manifest in
    ``world/``, or in ``landing/`` for a landing zone filled some other way); otherwise
    :data:`DEFAULT_START`.
    """
    start = _env_date("FTI_START_DATE")
    if start is not None:
        return start
    layout = (settings or Settings.from_env()).layout
    for manifest in (layout.world_dir / MANIFEST_FILE, layout.landing_dir / MANIFEST_FILE):
        if manifest.exists():
            return date.fromisoformat(json.loads(manifest.read_text())["start"])
    return DEFAULT_START


def partition_end_cap(start: date) -> date | None:
    """``FTI_END_DATE``: the last daily partition however far the clock goes, or None (the
    partitions then end with the last complete UTC day, and grow as days pass)."""
    end = _env_date("FTI_END_DATE")
    if end is not None and end < start:
        raise ValueError(
            f"FTI_END_DATE={end} is before the first partition {start}; expected a day on or "
            "after it (check FTI_START_DATE / FTI_END_DATE)"
        )
    return end
