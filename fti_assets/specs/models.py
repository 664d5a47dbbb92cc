"""The models of the platform, declared as data.

A :class:`ModelSpec` says what a model is — its name, the features it uses, how its training
data is labelled and split, its training parameters, the gates a new version must pass and how
it is served — and :func:`fti_assets.defs.models.model_definitions` builds every asset of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fti_assets.lib.datasets import DEFAULT_FEATURE_GROUPS
from fti_assets.lib.model_eval import GateConfig
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


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    dataset_name: str  # the training dataset asset and its folder under FTI_DATA_DIR/datasets
    predictions_table: str  # the daily batch predictions asset and its offline-store table
    feature_groups: tuple[str, ...]
    label_sources: tuple[str, ...]  # the assets the labels are read from
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
)

MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in (FRAUD_MODEL,)}
