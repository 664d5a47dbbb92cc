"""Inference pipelines: daily batch predictions (and the online service's inference log)."""

from datetime import timedelta

import dagster as dg
import polars as pl

from fti_assets.defs.metadata import OWNERS, frame_preview, markdown_table
from fti_assets.lib.batch_scoring import score_window
from fti_assets.lib.feature_groups import FEATURE_GROUPS
from fti_assets.lib.inference_log import read_inference_logs
from fti_assets.lib.offline_store import Replacement, replace_partitions
from fti_assets.partitions import daily_partitions, log_partitions, single_run
from fti_assets.resources import DataDirResource, ModelRegistryResource, OfflineStoreResource

MODEL_NAME = "fraud_model"


@dg.asset(
    group_name="inference",
    kinds={"lightgbm", "duckdb"},
    owners=OWNERS,
    partitions_def=daily_partitions,
    backfill_policy=single_run,
    deps=[*FEATURE_GROUPS, "raw_transactions", "fraud_model_champion"],
)
def fraud_predictions(
    context: dg.AssetExecutionContext,
    offline_store: OfflineStoreResource,
    model_registry: ModelRegistryResource,
) -> dg.MaterializeResult:
    """Fraud probability of every transaction of the day, scored by the model the registry
    alias ``champion`` points at when the run starts; each row carries model name and version.
    Re-running a day after a promotion rescores it with the new champion."""
    registry = model_registry.registry()
    model = registry.resolve(MODEL_NAME, "champion")
    if model is None:
        raise dg.Failure(
            f"model {MODEL_NAME!r} has no champion yet: materialize fraud_model_champion first"
        )
    predictor = registry.load(MODEL_NAME, model.version)
    window = context.partition_time_window
    with offline_store.connection() as con:
        predictions, stats = score_window(con, model, predictor, window.start, window.end)
    context.log.info(f"scored {stats.rows} transactions with {MODEL_NAME} v{model.version}")
    return dg.MaterializeResult(
        metadata={
            "model_name": MODEL_NAME,
            "model_version": model.version,
            "model_sha256": model.sha256,
            "dagster/row_count": stats.rows,
            "mean_probability": stats.mean,
            "lake_snapshot": stats.lake_snapshot,
            "score_quantiles": markdown_table(
                [{"quantile": k, "probability": f"{v:.5f}"} for k, v in stats.quantiles.items()]
            ),
            "preview": frame_preview(predictions.sort("fraud_probability", descending=True)),
        }
    )


@dg.asset(
    group_name="inference",
    kinds={"duckdb", "json"},
    owners=OWNERS,
    partitions_def=log_partitions,
    backfill_policy=single_run,
)
def inference_log(
    context: dg.AssetExecutionContext,
    offline_store: OfflineStoreResource,
    data_dir: DataDirResource,
) -> dg.MaterializeResult:
    """Every online prediction of the day (request fields, the exact feature vector used as
    JSON, model version, probability, latency), from the service's JSONL log files into the
    offline store, one logged day per partition, replaced atomically. Input to monitoring and
    to the train/serve skew check."""
    window = context.partition_time_window
    day, frames = window.start.date(), []
    while day < window.end.date():
        frames.append(read_inference_logs(data_dir.layout.inference_log_dir, day))
        day = day + timedelta(days=1)
    logs = pl.concat(frames) if frames else read_inference_logs(data_dir.layout.inference_log_dir)
    with offline_store.connection() as con:
        snapshot = replace_partitions(
            con,
            [
                Replacement(
                    "inference_log",
                    logs,
                    "logged_at >= ? and logged_at < ?",
                    [window.start, window.end],
                )
            ],
            message=f"inference_log [{window.start.isoformat()}, {window.end.isoformat()})",
        )
    latency = logs["latency_ms"]
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": logs.height,
            "model_versions": markdown_table(
                logs.group_by("model_version").len().sort("model_version").to_dicts()
            ),
            "fallback_share": float(logs["fallback"].mean()) if logs.height else 0.0,
            "latency_p50_ms": float(latency.quantile(0.5)) if logs.height else 0.0,
            "latency_p99_ms": float(latency.quantile(0.99)) if logs.height else 0.0,
            "lake_snapshot": snapshot,
        }
    )
