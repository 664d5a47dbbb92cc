"""Batch inference: score days of examples with a registered model, through the feature view
that model was trained on."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import duckdb
import numpy as np
import polars as pl

from fti_assets.lib.features.vectors import join_features
from fti_assets.lib.features.views import ResolvedView
from fti_assets.lib.registry.model_registry import ModelVersion
from fti_assets.lib.registry.predictor import Predictor
from fti_assets.lib.store.offline import Replacement, replace_partitions

EXAMPLE_ID = "example_id"
PREDICTION_TIME = "prediction_time"
SCORE_DAY = "score_day"
PROBABILITY = "probability"


@dataclass(frozen=True)
class ScoringStats:
    rows: int
    model_version: int
    quantiles: dict[str, float]
    mean: float
    lake_snapshot: int  # the offline-store snapshot of the commit that wrote the predictions


def score_days(
    con: duckdb.DuckDBPyConnection,
    model: ModelVersion,
    predictor: Predictor,
    view: ResolvedView,
    rows: pl.DataFrame,
    *,
    first: date,
    end: date,
    time_column: str,
    id_columns: Sequence[str],
    example_ids: pl.Series,
    table: str,
) -> tuple[pl.DataFrame, ScoringStats]:
    """Score ``rows`` (the examples of the days ``first`` ≤ day < ``end``: ids,
    ``time_column``, request fields, and the ``score_day`` each belongs to) and replace those
    days of the predictions ``table`` in one commit (a day without rows is emptied).

    The features of all the days are read and joined point-in-time in one pass: scoring a
    backfill day by day would read each group once per day. A row whose ``score_day`` is
    outside ``[first, end)`` is refused.

    Each row holds its ``example_id``, ids, ``prediction_time``, the feature vector the model
    scored (monitoring compares it with the training data), the probability, and the model
    name, version and sha256.
    """
    if end <= first:
        raise ValueError(f"no days to score: end {end} must come after first {first}")
    scored_at = datetime.now(UTC)
    if rows.is_empty():
        features, probabilities = rows, np.empty(0)  # days without rows replace none
    else:
        days = rows.get_column(SCORE_DAY)
        if days.min() < first or days.max() >= end:
            raise ValueError(
                f"rows to score have {SCORE_DAY} from {days.min()} to {days.max()}, outside "
                f"the days scored, {first} to {end - timedelta(days=1)}"
            )
        features = join_features(con, rows, view, time_column)
        probabilities = predictor.predict(features)
    ids = list(id_columns)
    inputs = [c for c in predictor.transform.order if c in features.columns and c not in ids]
    predictions = features.select(
        example_ids.alias(EXAMPLE_ID) if rows.height else pl.lit(None, pl.String).alias(EXAMPLE_ID),
        *ids,
        pl.col(time_column).alias(PREDICTION_TIME),
        *[c for c in inputs if c not in (time_column, SCORE_DAY)],
        pl.col(SCORE_DAY).cast(pl.Date),
    ).with_columns(
        pl.Series(PROBABILITY, probabilities, dtype=pl.Float64),
        pl.lit(model.name).alias("model_name"),
        pl.lit(model.version, dtype=pl.Int64).alias("model_version"),
        pl.lit(model.sha256).alias("model_sha256"),
        pl.lit(scored_at, dtype=pl.Datetime("us", "UTC")).alias("scored_at"),
    )
    snapshot = replace_partitions(
        con,
        [
            Replacement(
                table,
                predictions,
                f"{SCORE_DAY} >= ? and {SCORE_DAY} < ?",
                [first, end],
                create_if_missing=not predictions.is_empty(),
            )
        ],
        message=f"score {table} {first}"
        + (f"..{end - timedelta(days=1)}" if end - first > timedelta(days=1) else ""),
    )
    return predictions, summarize(predictions, model.version, snapshot)


def summarize(predictions: pl.DataFrame, model_version: int, snapshot: int) -> ScoringStats:
    """Row count, probability quantiles and mean of scored rows."""
    probabilities = predictions.get_column(PROBABILITY).to_numpy()
    qs = (0.5, 0.9, 0.99, 0.999)
    return ScoringStats(
        rows=predictions.height,
        model_version=model_version,
        quantiles={f"p{q * 100:g}": float(np.quantile(probabilities, q)) for q in qs}
        if probabilities.size
        else {},
        mean=float(probabilities.mean()) if probabilities.size else float("nan"),
        lake_snapshot=snapshot,
    )
