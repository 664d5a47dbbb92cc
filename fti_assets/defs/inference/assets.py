"""Inference pipelines: daily batch predictions (and the online service's inference log)."""

import dagster as dg

from fti_assets.defs.metadata import OWNERS, frame_preview, markdown_table
from fti_assets.lib.batch_scoring import score_window
from fti_assets.lib.feature_groups import FEATURE_GROUPS
from fti_assets.partitions import daily_partitions, single_run
from fti_assets.resources import ModelRegistryResource, OfflineStoreResource

MODEL_NAME = "fraud_model"


@dg.asset(
    group_name="inference",
    kinds={"lightgbm", "duckdb"},
    owners=OWNERS,
    pool="offline_store",
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
            "score_quantiles": markdown_table(
                [{"quantile": k, "probability": f"{v:.5f}"} for k, v in stats.quantiles.items()]
            ),
            "preview": frame_preview(predictions.sort("fraud_probability", descending=True)),
        }
    )
