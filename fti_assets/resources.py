"""Dagster resources: each piece of the shared data layer behind one configurable resource."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb

from fti_assets.lib.core.settings import DEFAULT_REPORTS_URL, DataLayout, LakeConfig, Settings
from fti_assets.lib.core.store_urls import backend_of, display_url
from fti_assets.lib.registry.model_registry import ModelRegistry
from fti_assets.lib.store.offline import connection
from fti_assets.lib.store.online import OnlineStoreBackend, open_online_store
from fti_assets.lib.streaming.event_log import EventLog, open_event_log


class OfflineStoreResource(dg.ConfigurableResource):
    """The offline store: a DuckLake whose catalog is FTI_LAKE_CATALOG (``sqlite:<file>`` or
    ``postgres:<connection string>``) and whose Parquet files are under FTI_LAKE_DATA_PATH.
    Many processes read and write it at once; each commit is an atomic snapshot."""

    catalog: str
    data_path: str

    @property
    def lake(self) -> LakeConfig:
        return LakeConfig(catalog=self.catalog, data_path=self.data_path)

    @contextmanager
    def connection(
        self, read_only: bool = False, snapshot: int | None = None
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection to the lake; ``snapshot`` pins it (read-only) to that snapshot id."""
        with connection(self.lake, read_only=read_only, snapshot=snapshot) as con:
            yield con


class DataDirResource(dg.ConfigurableResource):
    """The data folder (FTI_DATA_DIR): landing files, datasets, models, reports. Reports are
    linked from the UI through ``reports_url`` (FTI_REPORTS_URL; `make dev` serves the reports
    folder there)."""

    path: str
    reports_url: str = DEFAULT_REPORTS_URL

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
    """The model registry: a SQLite file (FTI_REGISTRY_PATH) plus artifacts under models_dir."""

    path: str
    models_dir: str

    def registry(self) -> ModelRegistry:
        return ModelRegistry(Path(self.path), Path(self.models_dir))


class ModelGatesResource(dg.ConfigurableResource):
    """Overrides of the promotion-gate thresholds for every model (unset: each model spec's own
    thresholds apply)."""

    pr_auc_floor: float | None = None
    champion_tolerance: float | None = None
    max_slice_recall_drop: float | None = None
    min_slice_positives: int | None = None


def _env_or(name: str, value: Path | str) -> str | dg.EnvVar:
    """The env var (shown as such in the UI) when it holds exactly ``value``, else the value."""
    return dg.EnvVar(name) if os.environ.get(name) == str(value) else str(value)


def default_resources(settings: Settings | None = None) -> dict[str, dg.ConfigurableResource]:
    settings = settings or Settings.from_env()
    return {
        "offline_store": OfflineStoreResource(
            catalog=_env_or("FTI_LAKE_CATALOG", settings.lake.catalog),
            data_path=_env_or("FTI_LAKE_DATA_PATH", settings.lake.data_path),
        ),
        "data_dir": DataDirResource(
            path=_env_or("FTI_DATA_DIR", settings.data_dir),
            reports_url=_env_or("FTI_REPORTS_URL", settings.reports_url),
        ),
        "online_store": OnlineStoreResource(url=_env_or("FTI_ONLINE_URL", settings.online_url)),
        "event_log": EventLogResource(url=_env_or("FTI_EVENT_LOG_URL", settings.event_log_url)),
        "model_gates": ModelGatesResource(),
        "model_registry": ModelRegistryResource(
            path=_env_or("FTI_REGISTRY_PATH", settings.registry_path),
            models_dir=str(settings.layout.models_dir),
        ),
    }
