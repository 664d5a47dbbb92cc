"""Batch inference: score a window of transactions with a registered model."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb
import numpy as np
import polars as pl

from fti_assets.lib.datasets import join_features
from fti_assets.lib.feature_groups import FEATURE_GROUPS, FeatureGroupSpec
from fti_assets.lib.offline_store import Replacement, read_frame, replace_partitions
from fti_assets.lib.predictor import Predictor
from fti_assets.lib.registry import ModelVersion


@dataclass(frozen=True)
class ScoringStats:
    rows: int
    model_version: int
    quantiles: dict[str, float]
    mean: float
    lake_snapshot: int  # the offline-store snapshot of the commit that wrote the predictions


def groups_for(model: ModelVersion) -> list[FeatureGroupSpec]:
    """The feature group specs a model was trained on, at the versions it recorded."""
    specs = []
    for name, version in model.feature_group_versions.items():
        spec = FEATURE_GROUPS.get(name)
        if spec is None or spec.version != version:
            have = None if spec is None else spec.version
            raise ValueError(
                f"model {model.name} v{model.version} was trained on {name} v{version}, but the "
                f"code defines {name} v{have}; retrain the model or keep that group version"
            )
        specs.append(spec)
    return specs


def score_window(
    con: duckdb.DuckDBPyConnection,
    model: ModelVersion,
    predictor: Predictor,
    start: datetime,
    end: datetime,
    *,
    table: str,
) -> tuple[pl.DataFrame, ScoringStats]:
    """Score every accepted transaction with start <= transaction_time < end and replace that
    window of the predictions ``table`` in one commit. Each row names the model version and
    holds the feature vector the model scored (monitoring compares it with the training data).
    """
    transactions = read_frame(
        con,
        "select transaction_id, card_id, merchant_id, amount, category, channel, "
        "transaction_time, lat, lon from raw_transactions "
        "where transaction_time >= ? and transaction_time < ? order by transaction_time, "
        "transaction_id",
        [start, end],
    )
    scored_at = datetime.now(UTC)
    if transactions.is_empty():
        features, probabilities = transactions, np.empty(0)  # a day without rows replaces none
    else:
        features = join_features(con, transactions, groups_for(model))
        probabilities = predictor.predict(features)
    ids = ["transaction_id", "card_id", "merchant_id", "transaction_time"]
    inputs = [c for c in predictor.transform.order if c in features.columns and c not in ids]
    predictions = features.select(*ids, *inputs).with_columns(
        pl.Series("probability", probabilities, dtype=pl.Float64),
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
                "transaction_time >= ? and transaction_time < ?",
                [start, end],
                create_if_missing=not predictions.is_empty(),
            )
        ],
        message=f"score {table} [{start.isoformat()}, {end.isoformat()})",
    )
    qs = (0.5, 0.9, 0.99, 0.999)
    stats = ScoringStats(
        rows=predictions.height,
        model_version=model.version,
        quantiles={f"p{q * 100:g}": float(np.quantile(probabilities, q)) for q in qs}
        if probabilities.size
        else {},
        mean=float(probabilities.mean()) if probabilities.size else float("nan"),
        lake_snapshot=snapshot,
    )
    return predictions, stats
