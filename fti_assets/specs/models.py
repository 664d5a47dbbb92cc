"""The models of the platform, declared as data.

A :class:`ModelSpec` says what a model is — its name, the features it uses, how its training
data is labelled and split, its training parameters, the gates a new version must pass and how
it is served — and :func:`fti_assets.defs.models.model_definitions` builds every asset of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import duckdb
import polars as pl

from fti_assets.lib.datasets import DEFAULT_FEATURE_GROUPS
from fti_assets.lib.model_eval import GateConfig
from fti_assets.lib.offline_store import read_frame
from fti_assets.lib.train_params import TrainParams

SERVING_MODES = ("online", "batch")


@dataclass(frozen=True)
class DatasetDefaults:
    """How a model's training dataset is cut by default (run config can override each)."""

    label_maturity_days: int = 14
    warmup_days: int = 7
    valid_fraction: float = 0.15
    test_fraction: float = 0.15


@dataclass(frozen=True)
class MonitoringSpec:
    """When monitoring calls for retraining (see the retraining sensor)."""

    drift_share_threshold: float = 0.5  # share of drifted features that counts as a drift day
    drift_days: int = 2  # consecutive drift days that make a breach
    pr_auc_floor: float = 0.3  # matured or estimated PR-AUC below this is a breach
    cooldown_days: int = 7  # no second retraining request within this many days
    sample_rows: int = 5_000  # rows of the Evidently report's sample
    skew_tolerance: float = 0.01  # train/serve skew check: largest mismatch rate allowed
    # A scored day's labels are final this many days after it (no label comes later).
    label_maturity_days: int = 30
    slice_columns: tuple[str, ...] = ()  # performance per value of these columns


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    dataset_name: str  # the training dataset asset and its folder under FTI_DATA_DIR/datasets
    predictions_table: str  # the daily batch predictions asset and its offline-store table
    feature_groups: tuple[str, ...]
    label_sources: tuple[str, ...]  # the assets the labels are read from
    label_column: str
    # The fields of a scoring request (online: the service's request; batch: the day's rows).
    request_columns: tuple[str, ...]
    # (connection, first reported_at, as_of) -> the labels reported in [first, as_of]: one row
    # per report with the example's key, the label and its reported_at (monitoring joins them).
    labels_for_monitoring: Callable[[duckdb.DuckDBPyConnection, datetime, datetime], pl.DataFrame]
    dataset: DatasetDefaults = field(default_factory=DatasetDefaults)
    params: TrainParams = field(default_factory=TrainParams)
    gates: GateConfig = field(default_factory=GateConfig)
    monitoring: MonitoringSpec = field(default_factory=MonitoringSpec)
    serving: tuple[str, ...] = SERVING_MODES
    # A version that passed every gate becomes champion by itself; False leaves that to a
    # person (`fti models promote`).
    auto_promote: bool = True
    owners: tuple[str, ...] = ("team:ml-platform",)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.serving) - set(SERVING_MODES))
        if unknown or not self.serving:
            raise ValueError(
                f"model {self.name!r}: serving {self.serving} must name one or more of "
                f"{SERVING_MODES}"
            )


def fraud_labels_reported(
    con: duckdb.DuckDBPyConnection, first: datetime, as_of: datetime
) -> pl.DataFrame:
    """Fraud labels reported in [first, as_of] (a transaction may have several)."""
    return read_frame(
        con,
        "select transaction_id, is_fraud, reported_at from raw_fraud_labels "
        "where reported_at >= ? and reported_at <= ?",
        [first, as_of],
    )


FRAUD_MODEL = ModelSpec(
    name="fraud_model",
    description=(
        "Probability that a card transaction is fraud, at the moment it happens; served online "
        "by the HTTP service and scored daily in batch."
    ),
    dataset_name="fraud_training_dataset",
    predictions_table="fraud_predictions",
    feature_groups=DEFAULT_FEATURE_GROUPS,
    label_sources=("raw_transactions", "raw_fraud_labels"),
    label_column="is_fraud",
    request_columns=(
        "transaction_id",
        "card_id",
        "merchant_id",
        "amount",
        "category",
        "channel",
        "lat",
        "lon",
        "transaction_time",
    ),  # fmt: skip
    labels_for_monitoring=fraud_labels_reported,
    monitoring=MonitoringSpec(slice_columns=("channel", "category")),
)

MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in (FRAUD_MODEL,)}
