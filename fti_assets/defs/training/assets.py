"""Training pipeline: point-in-time-correct datasets, the model, its evaluation and promotion."""

import json
import tempfile
from datetime import datetime
from pathlib import Path

import dagster as dg
import polars as pl

from fti_assets.defs.metadata import OWNERS, latest_metadata, markdown_table
from fti_assets.lib.datasets import (
    DEFAULT_FEATURE_GROUPS,
    DEFAULT_NAME,
    DatasetConfig,
    build_training_frame,
    load_dataset,
    model_feature_columns,
    write_dataset,
)
from fti_assets.lib.feature_groups import FEATURE_GROUPS
from fti_assets.lib.offline_store import current_snapshot
from fti_assets.lib.train_params import TrainParams
from fti_assets.resources import DataDirResource, ModelRegistryResource, OfflineStoreResource


class TrainingDatasetConfig(dg.Config):
    """How labels are chosen and split (time-based, never random)."""

    label_maturity_days: int = 14
    warmup_days: int = 7
    valid_fraction: float = 0.15
    test_fraction: float = 0.15
    feature_groups: list[str] = list(DEFAULT_FEATURE_GROUPS)
    cutoff: str | None = None  # ISO timestamp with offset; default: end of the last landed day


@dg.asset(
    group_name="training",
    kinds={"duckdb", "polars", "parquet"},
    owners=OWNERS,
    deps=[*FEATURE_GROUPS, "raw_fraud_labels"],
)
def fraud_training_dataset(
    context: dg.AssetExecutionContext,
    config: TrainingDatasetConfig,
    offline_store: OfflineStoreResource,
    data_dir: DataDirResource,
) -> dg.MaterializeResult:
    """Immutable, versioned training dataset: every mature transaction with its fraud label as
    known at the cutoff, joined point-in-time (ASOF, strictly earlier event_time) with the
    feature groups, plus on-demand features; time-based train/valid/test split; Parquet +
    JSON manifest (sources, versions, split boundaries, hashes, reference statistics)."""
    dataset_config = DatasetConfig(
        cutoff=datetime.fromisoformat(config.cutoff) if config.cutoff else None,
        label_maturity_days=config.label_maturity_days,
        warmup_days=config.warmup_days,
        valid_fraction=config.valid_fraction,
        test_fraction=config.test_fraction,
        feature_groups=tuple(config.feature_groups),
    )
    groups = [FEATURE_GROUPS[name] for name in dataset_config.feature_groups]
    # Every table is read at ONE lake snapshot, recorded in the manifest: the dataset can be
    # rebuilt from exactly these rows later, whatever backfills change in between.
    with offline_store.connection(read_only=True) as con:
        snapshot = current_snapshot(con)
    with offline_store.connection(snapshot=snapshot) as con:
        frame, info = build_training_frame(con, groups, dataset_config)
    feature_columns, categorical = model_feature_columns(groups)
    version = write_dataset(
        frame,
        info,
        data_dir.layout.datasets_dir,
        feature_columns=feature_columns,
        categorical_columns=categorical,
    )
    manifest = version.manifest
    context.log.info(f"wrote {version.name} {version.version} to {version.path}")
    return dg.MaterializeResult(
        metadata={
            "dataset_version": version.version,
            "path": dg.MetadataValue.path(str(version.path)),
            "dagster/row_count": manifest["rows"]["total"],
            "rows_per_split": markdown_table(
                [
                    {"split": s, "rows": manifest["rows"][s], "fraud": manifest["positives"][s]}
                    for s in ("train", "valid", "test")
                ]
            ),
            "split_boundaries": markdown_table(
                [{"boundary": k, "time": v} for k, v in manifest["split"]["boundaries"].items()]
            ),
            "label_cutoff": manifest["label"]["cutoff"],
            "feature_groups": markdown_table(
                [
                    {"group": name, "version": g["version"], "keys": ", ".join(g["entity_keys"])}
                    for name, g in manifest["feature_groups"].items()
                ]
            ),
            "content_hash": manifest["content_hash"]["frame_sha256"],
            "feature_count": len(feature_columns),
            "lake_snapshot": snapshot,
        }
    )


MODEL_NAME = "fraud_model"


_DEFAULT_PARAMS = TrainParams()


class TrainConfig(dg.Config):
    """LightGBM hyperparameters (deterministic: fixed seeds and one thread). The defaults are
    :class:`~fti_assets.lib.train_params.TrainParams`' (chosen on the validation split of the
    default demo data, never on the test split)."""

    dataset_version: str | None = None  # default: the version fraud_training_dataset last wrote
    num_leaves: int = _DEFAULT_PARAMS.num_leaves
    learning_rate: float = _DEFAULT_PARAMS.learning_rate
    n_estimators: int = _DEFAULT_PARAMS.n_estimators
    min_child_samples: int = _DEFAULT_PARAMS.min_child_samples
    feature_fraction: float = _DEFAULT_PARAMS.feature_fraction
    bagging_fraction: float = _DEFAULT_PARAMS.bagging_fraction
    lambda_l2: float = _DEFAULT_PARAMS.lambda_l2
    early_stopping_rounds: int = _DEFAULT_PARAMS.early_stopping_rounds or 0  # 0 = no stopping
    seed: int = _DEFAULT_PARAMS.seed
    class_weight: str = _DEFAULT_PARAMS.class_weight  # "balanced" distorts probabilities


def train_params(config: TrainConfig) -> TrainParams:
    fields = config.model_dump(exclude={"dataset_version"})
    fields["early_stopping_rounds"] = fields["early_stopping_rounds"] or None  # 0 = no stopping
    return TrainParams(**fields)


@dg.asset(
    group_name="training",
    kinds={"lightgbm"},
    owners=OWNERS,
    deps=[fraud_training_dataset],
)
def fraud_model(
    context: dg.AssetExecutionContext,
    config: TrainConfig,
    data_dir: DataDirResource,
    model_registry: ModelRegistryResource,
) -> dg.MaterializeResult:
    """LightGBM fraud classifier trained on one training dataset version, with its
    model-dependent transforms (feature order, category codes) saved beside it; registered in
    the model registry as a candidate and aliased ``challenger``."""
    from fti_assets.lib.training import train_from_dataset  # lightgbm: only when training

    version = config.dataset_version or latest_metadata(
        context.instance, "fraud_training_dataset", "dataset_version"
    )
    frame, manifest = load_dataset(data_dir.layout.datasets_dir, DEFAULT_NAME, version)
    params = train_params(config)
    with tempfile.TemporaryDirectory() as tmp:
        result = train_from_dataset(frame, manifest, params, Path(tmp) / "artifact")
        registry = model_registry.registry()
        registered = registry.register(
            MODEL_NAME,
            result.artifact_dir,
            training_dataset_version=manifest["version"],
            feature_group_versions={
                name: int(g["version"]) for name, g in manifest["feature_groups"].items()
            },
            params=result.params,
            metrics={f"valid_{k}": v for k, v in result.metrics.items()},
            tags={"dataset_frame_sha256": manifest["content_hash"]["frame_sha256"]},
            idempotency_key=context.run_id,  # a retried step returns the version it registered
        )
    registry.promote(MODEL_NAME, registered.version, alias="challenger")
    valid = result.metrics
    return dg.MaterializeResult(
        metadata={
            "model_name": MODEL_NAME,
            "model_version": registered.version,
            "model_sha256": registered.sha256,
            "dataset_version": manifest["version"],
            "feature_group_versions": markdown_table(
                [{"group": k, "version": v} for k, v in registered.feature_group_versions.items()]
            ),
            "code_version": registered.code_version,
            "best_iteration": result.best_iteration,
            "valid_pr_auc": valid["pr_auc"],
            "valid_roc_auc": valid["roc_auc"],
            "valid_brier": valid["brier"],
            "train_rows": result.n_train,
            "valid_rows": result.n_valid,
            "features": len(result.feature_names),
            "artifact": dg.MetadataValue.path(str(registered.artifact_path)),
            "params": dg.MetadataValue.json(params.to_dict()),
        }
    )


@dg.asset(
    group_name="training",
    kinds={"lightgbm", "matplotlib"},
    owners=OWNERS,
    deps=[fraud_model],
)
def fraud_model_evaluation(
    context: dg.AssetExecutionContext,
    data_dir: DataDirResource,
    model_registry: ModelRegistryResource,
) -> dg.MaterializeResult:
    """Test-split evaluation of the latest candidate: PR-AUC, ROC-AUC, recall at 90% precision,
    Brier and calibration, per-slice metrics, the current champion on the same rows, and the
    oracle's PR-AUC (the Bayes limit). PR curve and calibration plots are linked."""
    from fti_assets.lib.model_eval import evaluate_candidate  # sklearn, matplotlib: lazily

    version = int(latest_metadata(context.instance, "fraud_model", "model_version"))
    registry = model_registry.registry()
    candidate_meta = registry.get(MODEL_NAME, version)
    candidate = registry.load(MODEL_NAME, version)
    frame, _ = load_dataset(
        data_dir.layout.datasets_dir, DEFAULT_NAME, candidate_meta.training_dataset_version
    )
    champion_meta = registry.resolve(MODEL_NAME, "champion")
    champion = None
    if champion_meta is not None and champion_meta.version != version:
        champion = registry.load(MODEL_NAME, champion_meta.version)
    oracle_path = data_dir.layout.oracle_dir / "transactions_oracle.parquet"
    oracle = pl.read_parquet(oracle_path) if oracle_path.exists() else None
    report_dir = data_dir.layout.reports_dir / MODEL_NAME / f"v{version}"
    report = evaluate_candidate(
        candidate,
        frame.filter(pl.col("split") == "test"),
        champion=champion,
        champion_version=champion_meta.version if champion is not None else None,
        oracle=oracle,
        plots_dir=report_dir,
    )
    report["model_version"] = version
    report["dataset_version"] = candidate_meta.training_dataset_version
    report_path = report_dir / "evaluation.json"
    report_path.write_text(json.dumps(report, indent=2, default=str))
    metrics = report["metrics"]
    oracle_info = report.get("oracle") or {}
    champion_info = report.get("champion") or {}
    return dg.MaterializeResult(
        metadata={
            "model_version": version,
            "report": dg.MetadataValue.path(str(report_path)),
            "test_pr_auc": metrics["pr_auc"],
            "test_roc_auc": metrics["roc_auc"],
            "test_recall_at_precision_90": metrics["recall_at_precision"],
            "test_brier": metrics["brier"],
            "oracle_pr_auc": oracle_info.get("pr_auc"),
            "model_to_oracle_pr_auc": oracle_info.get("model_to_oracle_pr_auc"),
            "champion_version": champion_info.get("version"),
            "champion_pr_auc": (champion_info.get("metrics") or {}).get("pr_auc"),
            "slices": markdown_table(
                [
                    {
                        "slice": f"{s['slice_column']}={s['slice_value']}",
                        "n": s["n"],
                        "fraud": s["positives"],
                        "pr_auc": _fmt(s["pr_auc"]),
                        "recall": _fmt(s["recall"]),
                    }
                    for s in report["slices"]
                ],
                limit=40,
            ),
            "pr_curve": dg.MetadataValue.md(f"![PR curve]({report['plots']['pr_curve']})"),
            "pr_curve_path": dg.MetadataValue.path(report["plots"]["pr_curve"]),
            "calibration_path": dg.MetadataValue.path(report["plots"]["calibration"]),
        }
    )


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


@dg.asset(
    group_name="training",
    kinds={"lightgbm"},
    owners=OWNERS,
    deps=[fraud_model_evaluation],
)
def fraud_model_champion(
    context: dg.AssetExecutionContext, model_registry: ModelRegistryResource
) -> dg.MaterializeResult:
    """The registry alias ``champion`` of fraud_model: moved to the evaluated candidate only when
    every blocking gate on fraud_model_evaluation passed (otherwise this never runs)."""
    version = int(latest_metadata(context.instance, "fraud_model_evaluation", "model_version"))
    registry = model_registry.registry()
    previous = registry.resolve(MODEL_NAME, "champion")
    if previous is not None and previous.version == version:
        changed = f"v{version} already champion"
    else:
        registry.set_status(MODEL_NAME, version, "validated", "passed every promotion gate")
        registry.promote(MODEL_NAME, version, alias="champion", reason="passed every gate")
        changed = f"v{previous.version if previous else '—'} → v{version}"
    context.log.info(f"champion of {MODEL_NAME}: {changed}")
    return dg.MaterializeResult(
        metadata={
            "model_name": MODEL_NAME,
            "champion_version": version,
            "previous_champion_version": previous.version if previous else None,
            "alias_change": changed,
        }
    )
