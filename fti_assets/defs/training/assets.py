"""Training pipeline: point-in-time-correct training datasets (and, later, models)."""

from datetime import datetime

import dagster as dg

from fti_assets.defs.metadata import OWNERS, markdown_table
from fti_assets.lib.datasets import (
    DEFAULT_FEATURE_GROUPS,
    DatasetConfig,
    build_training_frame,
    model_feature_columns,
    write_dataset,
)
from fti_assets.lib.feature_groups import FEATURE_GROUPS
from fti_assets.resources import DataDirResource, OfflineStoreResource


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
    pool="offline_store",
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
    with offline_store.connection() as con:
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
        }
    )
