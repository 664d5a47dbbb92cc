"""Train/serve skew: the feature vectors a service logged against the same features recomputed
offline (point in time, at each request's time) — per feature, how often and by how much they
differ.

Two values match when both are missing, or both are present and equal (numbers within a
relative tolerance, everything else exactly). A value missing on one side only is a mismatch:
a feature the service could not see (a stale or unknown entity) is skew too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

DEFAULT_RELATIVE_TOLERANCE = 1e-9

SKEW_SCHEMA: dict[str, pl.DataType] = {
    "feature": pl.String(),
    "compared": pl.Int64(),
    "mismatches": pl.Int64(),
    "mismatch_rate": pl.Float64(),
    "max_abs_diff": pl.Float64(),
}


@dataclass(frozen=True)
class FeatureSkew:
    feature: str
    compared: int
    mismatches: int
    max_abs_diff: float | None  # numbers only; None when no numeric pair differs or exists

    @property
    def mismatch_rate(self) -> float | None:
        return self.mismatches / self.compared if self.compared else None


@dataclass(frozen=True)
class SkewResult:
    requests: int
    features: tuple[FeatureSkew, ...]

    @property
    def mismatch_rate(self) -> float | None:
        """Share of all compared (request, feature) values that differ."""
        compared = sum(f.compared for f in self.features)
        return sum(f.mismatches for f in self.features) / compared if compared else None

    @property
    def worst_feature(self) -> str | None:
        worst = max(self.features, key=lambda f: f.mismatch_rate or 0.0, default=None)
        return worst.feature if worst is not None and worst.mismatches else None

    def to_polars(self) -> pl.DataFrame:
        return pl.DataFrame(
            [
                {
                    "feature": f.feature,
                    "compared": f.compared,
                    "mismatches": f.mismatches,
                    "mismatch_rate": f.mismatch_rate,
                    "max_abs_diff": f.max_abs_diff,
                }
                for f in self.features
            ],
            schema=SKEW_SCHEMA,
        )


def compare_vectors(
    served: pl.DataFrame,
    offline: pl.DataFrame,
    features: Sequence[str],
    key: str,
    *,
    relative_tolerance: float = DEFAULT_RELATIVE_TOLERANCE,
) -> SkewResult:
    """Compare ``features`` of the served vectors with the offline ones, row by row on ``key``.

    Every served row must have its offline row (same key): a missing one is an error, since
    the recomputation is expected to cover every logged request.
    """
    if served.is_empty():
        return SkewResult(requests=0, features=())
    for name, frame in (("served", served), ("offline", offline)):
        absent = [c for c in (key, *features) if c not in frame.columns]
        if absent:
            raise ValueError(f"{name} vectors lack column(s) {absent}; they have {frame.columns}")
    uncovered = served.filter(~pl.col(key).is_in(offline.get_column(key).implode()))
    if uncovered.height:
        raise ValueError(
            f"{uncovered.height} served row(s) have no offline row, e.g. {key}="
            f"{uncovered[key][0]!r}"
        )
    joined = served.select(key, *features).join(
        offline.select(key, *features), on=key, how="left", suffix="__offline"
    )
    return SkewResult(
        requests=served.height,
        features=tuple(_feature_skew(joined, f, relative_tolerance) for f in features),
    )


def _feature_skew(joined: pl.DataFrame, feature: str, tolerance: float) -> FeatureSkew:
    served, offline = pl.col(feature), pl.col(f"{feature}__offline")
    schema = joined.schema
    if schema[feature].is_numeric() and schema[f"{feature}__offline"].is_numeric():
        served = served.cast(pl.Float64).fill_nan(None)
        offline = offline.cast(pl.Float64).fill_nan(None)
        diff = (served - offline).abs()
        scale = pl.max_horizontal(served.abs(), offline.abs()).fill_null(0.0) + 1.0
        differ = (diff > scale * tolerance).fill_null(False)
        max_diff = pl.when(differ).then(diff).max()
    else:
        served, offline = served.cast(pl.String), offline.cast(pl.String)
        differ = (served != offline).fill_null(False)
        max_diff = pl.lit(None, dtype=pl.Float64)
    mismatch = differ | (served.is_null() ^ offline.is_null())
    mismatches, largest = joined.select(mismatch.sum().alias("n"), max_diff.alias("max")).row(0)
    largest = float(largest) if largest is not None and math.isfinite(largest) else None
    return FeatureSkew(feature, joined.height, int(mismatches), largest)
