"""A model's daily batch predictions, built from its spec."""

import dagster as dg

from fti_assets.defs.metadata import frame_preview, markdown_table
from fti_assets.defs.models.automation import scoring_condition
from fti_assets.lib.batch_scoring import score_window
from fti_assets.lib.registry import CHAMPION
from fti_assets.partitions import daily_partitions, single_run
from fti_assets.resources import ModelRegistryResource, OfflineStoreResource
from fti_assets.specs.models import ModelSpec


def build_predictions_asset(spec: ModelSpec) -> dg.AssetsDefinition:
    champion_key = dg.AssetKey(f"{spec.name}_champion")

    @dg.asset(
        key=dg.AssetKey(spec.predictions_table),
        group_name="inference",
        kinds={"lightgbm", "ducklake"},
        owners=list(spec.owners),
        partitions_def=daily_partitions,
        backfill_policy=single_run,
        deps=[*spec.feature_groups, "raw_transactions", champion_key],
        automation_condition=scoring_condition(champion_key),
        description=(
            f"{spec.name}'s score of every example of the day, by the model the registry alias "
            f"{CHAMPION!r} points at when the run starts, with the feature vector it scored; "
            "each row names the model version. Re-running a day after a promotion rescores it "
            "with the new champion."
        ),
    )
    def _predictions(
        context: dg.AssetExecutionContext,
        offline_store: OfflineStoreResource,
        model_registry: ModelRegistryResource,
    ) -> dg.MaterializeResult:
        registry = model_registry.registry()
        model = registry.resolve(spec.name, CHAMPION)
        if model is None:
            raise dg.Failure(
                f"model {spec.name!r} has no champion yet: materialize {champion_key.path[-1]} "
                "first"
            )
        predictor = registry.load(spec.name, model.version)
        window = context.partition_time_window
        with offline_store.connection() as con:
            predictions, stats = score_window(
                con, model, predictor, window.start, window.end, table=spec.predictions_table
            )
        context.log.info(f"scored {stats.rows} rows with {spec.name} v{model.version}")
        return dg.MaterializeResult(
            metadata={
                "model_name": spec.name,
                "model_version": model.version,
                "model_sha256": model.sha256,
                "dagster/row_count": stats.rows,
                "mean_probability": stats.mean,
                "lake_snapshot": stats.lake_snapshot,
                "score_quantiles": markdown_table(
                    [{"quantile": k, "probability": f"{v:.5f}"} for k, v in stats.quantiles.items()]
                ),
                "preview": frame_preview(
                    predictions.select(
                        "transaction_id", "transaction_time", "probability", "model_version"
                    ).sort("probability", descending=True)
                ),
            }
        )

    return _predictions
