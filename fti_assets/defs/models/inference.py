"""A model's daily batch predictions, built from its spec."""

from datetime import datetime, timedelta

import dagster as dg
import duckdb
import polars as pl

from fti_assets.defs.automation import daily_condition
from fti_assets.defs.metadata import frame_preview, markdown_table
from fti_assets.lib.inference.batch_scoring import (
    EXAMPLE_ID,
    PREDICTION_TIME,
    PROBABILITY,
    SCORE_DAY,
    score_days,
    summarize,
)
from fti_assets.lib.registry.model_registry import CHAMPION
from fti_assets.partitions import DAILY_TAGS, daily_partitions, single_run
from fti_assets.resources import ModelRegistryResource, OfflineStoreResource
from fti_assets.specs.feature_views import view_of_model
from fti_assets.specs.models import ModelSpec

# Rows a backfill scores in one chunk (the features of a chunk are joined in memory at once).
MAX_ROWS_PER_CHUNK = 1_000_000
MAX_DAYS_PER_CHUNK = 31
PREVIEW_COLUMNS = [EXAMPLE_ID, PREDICTION_TIME, PROBABILITY, "model_version"]


def _examples(
    con: duckdb.DuckDBPyConnection, spec: ModelSpec, start: datetime, end: datetime
) -> tuple[pl.DataFrame, pl.Series]:
    """The examples of each day in [start, end) (the spec's scoring rows), with the day each
    belongs to, and their example ids."""
    days, ids = [], []
    day = start
    while day < end:
        rows = spec.scoring_rows(con, day, day + timedelta(days=1))
        ids.append(spec.example_id(rows))
        days.append(rows.with_columns(pl.lit(day.date(), dtype=pl.Date).alias(SCORE_DAY)))
        day += timedelta(days=1)
    return pl.concat(days, how="vertical_relaxed"), pl.concat(ids)


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
        scored: list[pl.DataFrame] = []
        snapshot = 0
        with offline_store.connection() as con:
            # A backfill is scored in chunks of days (one feature read and PIT join per chunk,
            # one commit each); a chunk holds about MAX_ROWS_PER_CHUNK rows, sized from the
            # rows per day seen so far.
            day, per_day = window.start, 0
            while day < window.end:
                span = (
                    max(1, min(MAX_DAYS_PER_CHUNK, MAX_ROWS_PER_CHUNK // per_day)) if per_day else 1
                )
                end = min(window.end, day + timedelta(days=span))
                rows, example_ids = _examples(con, spec, day, end)
                predictions, stats = score_days(
                    con, model, predictor, view, rows, first=day.date(), end=end.date(),
                    time_column=spec.label.time_column, id_columns=spec.label.id_columns,
                    example_ids=example_ids, table=spec.predictions_table,
                )  # fmt: skip
                scored.append(predictions.select(PREVIEW_COLUMNS))
                snapshot = stats.lake_snapshot
                per_day = max(1, -(-rows.height // (end - day).days))
                day = end
        predictions = pl.concat(scored, how="vertical_relaxed")
        stats = summarize(predictions, model.version, snapshot)
        rows_scored = stats.rows
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
                "preview": frame_preview(predictions.sort(PROBABILITY, descending=True)),
            }
        )

    return _predictions
