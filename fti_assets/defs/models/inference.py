"""A model's daily batch predictions, built from its spec."""

from datetime import timedelta

import dagster as dg

from fti_assets.defs.automation import daily_condition
from fti_assets.defs.metadata import frame_preview, markdown_table
from fti_assets.lib.inference.batch_scoring import score_day
from fti_assets.lib.registry.model_registry import CHAMPION
from fti_assets.partitions import DAILY_TAGS, daily_partitions, single_run
from fti_assets.resources import ModelRegistryResource, OfflineStoreResource
from fti_assets.specs.feature_views import view_of_model
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
        tags=DAILY_TAGS,
        # A day is scored once its feature groups are in (and their blocking checks passed); a
        # new champion does not rescore history by itself (re-run days to rescore them).
        automation_condition=daily_condition(),
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
        # The features of the version that scores, through the view it was trained on.
        view = view_of_model(registry, model)
        window = context.partition_time_window
        rows_scored, last = 0, None
        with offline_store.connection() as con:
            day = window.start
            while day < window.end:
                end = day + timedelta(days=1)
                rows = spec.scoring_rows(con, day, end)
                predictions, stats = score_day(
                    con, model, predictor, view, rows, day=day.date(),
                    time_column=spec.label.time_column, id_columns=spec.label.id_columns,
                    example_ids=spec.example_id(rows),
                    table=spec.predictions_table,
                )  # fmt: skip
                rows_scored += stats.rows
                last = (predictions, stats) if stats.rows or last is None else last
                day = end
        predictions, stats = last
        context.log.info(f"scored {rows_scored} rows with {spec.name} v{model.version}")
        return dg.MaterializeResult(
            metadata={
                "model_name": spec.name,
                "model_version": model.version,
                "model_sha256": model.sha256,
                "dagster/row_count": rows_scored,
                "feature_view": model.feature_view,
                "mean_probability": stats.mean,
                "lake_snapshot": stats.lake_snapshot,
                "score_quantiles": markdown_table(
                    [{"quantile": k, "probability": f"{v:.5f}"} for k, v in stats.quantiles.items()]
                ),
                "preview": frame_preview(
                    predictions.select(
                        "example_id", "prediction_time", "probability", "model_version"
                    ).sort("probability", descending=True)
                ),
            }
        )

    return _predictions
