"""Dagster resources: each piece of the shared data layer behind one configurable resource."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb

from fti_assets.lib.offline_store import connect
from fti_assets.lib.online_store import OnlineStoreBackend, open_online_store
from fti_assets.lib.registry import ModelRegistry
from fti_assets.lib.settings import DataLayout, Settings
from fti_assets.lib.store_urls import backend_of, display_url
from fti_assets.lib.streaming.event_log import EventLog, open_event_log


class OfflineStoreResource(dg.ConfigurableResource):
    """The DuckDB offline store (FTI_DUCKDB_PATH). Writers run in the ``offline_store`` pool."""

    path: str

    @contextmanager
    def connection(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        con = connect(self.path, read_only=read_only)
        try:
            yield con
        finally:
            con.close()


class DataDirResource(dg.ConfigurableResource):
    """The data folder (FTI_DATA_DIR): landing files, datasets, models, reports."""

    path: str

    @property
    def layout(self) -> DataLayout:
        return DataLayout(Path(self.path))


def online_store_kind() -> str:
    """The online store's backend ("sqlite" or "redis") as configured, for asset kinds."""
    return backend_of(Settings.from_env().online_url, "FTI_ONLINE_URL")


def event_log_kind() -> str:
    """The event log's backend ("sqlite" or "redis") as configured, for asset kinds."""
    return backend_of(Settings.from_env().event_log_url, "FTI_EVENT_LOG_URL")


class OnlineStoreResource(dg.ConfigurableResource):
    """The online store (FTI_ONLINE_URL: sqlite:///abs/path, the default, or redis://host/db)."""

    url: str

    def open(self, *, readonly: bool = False) -> OnlineStoreBackend:
        return open_online_store(self.url, readonly=readonly)

    @property
    def display_url(self) -> str:
        """The URL without its password, for metadata."""
        return display_url(self.url)


class EventLogResource(dg.ConfigurableResource):
    """The streaming event log (FTI_EVENT_LOG_URL: sqlite:///abs/path, the default, or redis://)."""

    url: str

    def open(self, *, readonly: bool = False) -> EventLog:
        return open_event_log(self.url, readonly=readonly)

    @property
    def display_url(self) -> str:
        """The URL without its password, for metadata."""
        return display_url(self.url)


class ModelRegistryResource(dg.ConfigurableResource):
    """The model registry: tables in the offline store plus artifacts under FTI_DATA_DIR/models."""

    duckdb_path: str
    models_dir: str

    def registry(self) -> ModelRegistry:
        return ModelRegistry(Path(self.duckdb_path), Path(self.models_dir))


class ModelGatesResource(dg.ConfigurableResource):
    """Thresholds of the blocking promotion gates on fraud_model_evaluation."""

    pr_auc_floor: float = 0.25
    champion_tolerance: float = 0.02
    max_slice_recall_drop: float = 0.15
    min_slice_positives: int = 15


def _env_or(name: str, default: Path | str) -> str | dg.EnvVar:
    """Read from the env var (shown as such in the UI) when set, else the default value."""
    return dg.EnvVar(name) if os.environ.get(name) else str(default)


def default_resources(settings: Settings | None = None) -> dict[str, dg.ConfigurableResource]:
    settings = settings or Settings.from_env()
    return {
        "offline_store": OfflineStoreResource(
            path=_env_or("FTI_DUCKDB_PATH", settings.duckdb_path)
        ),
        "data_dir": DataDirResource(path=_env_or("FTI_DATA_DIR", settings.data_dir)),
        "online_store": OnlineStoreResource(url=_env_or("FTI_ONLINE_URL", settings.online_url)),
        "event_log": EventLogResource(url=_env_or("FTI_EVENT_LOG_URL", settings.event_log_url)),
        "model_gates": ModelGatesResource(),
        "model_registry": ModelRegistryResource(
            duckdb_path=_env_or("FTI_DUCKDB_PATH", settings.duckdb_path),
            models_dir=str(settings.layout.models_dir),
        ),
    }
