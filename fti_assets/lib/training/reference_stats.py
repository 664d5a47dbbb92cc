"""Reference statistics of a training set, and the fast drift statistic computed against them.

:func:`reference_statistics` summarises each feature of a frame (in practice the TRAIN split of a
training dataset) as plain JSON: counts, moments, quantiles and a histogram whose bin edges are
the reference's own quantiles, or the category proportions for a categorical feature. They are
stored in the dataset manifest, so monitoring later needs neither the training data nor a model
to tell how far today's inputs have moved.

:func:`population_stability_index` compares a current column against one feature's reference
statistics, vectorised (one ``searchsorted`` + ``bincount`` per numeric column), so it stays
cheap on millions of rows. Missing values form a bucket of their own: a feature that suddenly
goes null is drift too.

PSI = sum over buckets of ``(cur - ref) * ln(cur / ref)``, with every proportion floored at
:data:`PSI_EPSILON` so an empty bucket on one side gives a large but finite value. Common reading:
below 0.1 stable, 0.1-0.25 moderate shift, above 0.25 significant shift.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import polars as pl

QUANTILES: dict[str, float] = {
    "p01": 0.01,
    "p05": 0.05,
    "p25": 0.25,
    "p50": 0.50,
    "p75": 0.75,
    "p95": 0.95,
    "p99": 0.99,
}
OTHER = "__other__"
PSI_EPSILON = 1e-4
DEFAULT_TOP_N = 20


def reference_statistics(
    frame: pl.DataFrame,
    numeric: list[str],
    categorical: list[str],
    bins: int = 10,
    top_n: int = DEFAULT_TOP_N,
) -> dict[str, Any]:
    """JSON-serialisable statistics of ``numeric`` and ``categorical`` columns of ``frame``.

    Returns ``{"rows": n, "numeric": {col: {...}}, "categorical": {col: {...}}}``; each
    feature's entry carries ``kind`` so :func:`population_stability_index` can take it alone.
    Non-finite numeric values (NaN, ±inf) count as missing. Values are plain floats/ints/str or
    ``None`` (never NaN), so ``json.dumps(..., allow_nan=False)`` accepts the result.
    """
    if bins < 2:
        raise ValueError(f"bins must be at least 2, got {bins}")
    if top_n < 1:
        raise ValueError(f"top_n must be at least 1, got {top_n}")
    overlap = sorted(set(numeric) & set(categorical))
    if overlap:
        raise ValueError(f"column(s) {overlap} are listed as both numeric and categorical")
    missing = [c for c in [*numeric, *categorical] if c not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks column(s) {missing}; it has {frame.columns}")
    return {
        "rows": frame.height,
        "numeric": {c: numeric_statistics(frame.get_column(c), bins) for c in numeric},
        "categorical": {c: categorical_statistics(frame.get_column(c), top_n) for c in categorical},
    }


def _finite_values(series: pl.Series) -> np.ndarray:
    """The non-missing values as float64 (NaN and ±inf are treated as missing)."""
    if not (series.dtype.is_numeric() or series.dtype == pl.Boolean or series.dtype == pl.Null):
        raise TypeError(
            f"numeric feature {series.name!r} has dtype {series.dtype}; expected int, float or bool"
        )
    values = series.cast(pl.Float64).drop_nulls().to_numpy()
    return values[np.isfinite(values)]


def _float_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def numeric_statistics(series: pl.Series, bins: int = 10) -> dict[str, Any]:
    """Counts, moments, quantiles and a quantile-binned histogram of one numeric column."""
    rows = series.len()
    values = _finite_values(series)
    count = int(values.size)
    stats: dict[str, Any] = {
        "kind": "numeric",
        "count": count,
        "null_fraction": (rows - count) / rows if rows else 0.0,
    }
    if count == 0:
        empty = dict.fromkeys(("mean", "std", "min", "max"))
        return {
            **stats,
            **empty,
            "quantiles": dict.fromkeys(QUANTILES),
            "bin_edges": [],
            "bin_proportions": [0.0],
        }
    values = np.sort(values)
    quantiles = dict(zip(QUANTILES, np.quantile(values, list(QUANTILES.values())), strict=True))
    # Bin edges are observed values (the "higher" quantile), not interpolations: a discrete
    # feature gets its own values as edges, and equal edges collapse into one.
    edge_index = np.ceil((count - 1) * np.arange(1, bins) / bins).astype(np.int64)
    edges = np.unique(values[edge_index])
    return {
        **stats,
        "mean": _float_or_none(float(values.mean())),
        "std": _float_or_none(float(values.std(ddof=1))) if count > 1 else None,
        "min": float(values.min()),
        "max": float(values.max()),
        "quantiles": {name: float(q) for name, q in quantiles.items()},
        "bin_edges": [float(e) for e in edges],
        "bin_proportions": [float(p) for p in _bin_counts(values, edges) / count],
    }


def _bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts per bucket ``(-inf, e0), [e0, e1), ..., [e_last, inf)`` (len(edges) + 1 buckets)."""
    index = np.searchsorted(edges, values, side="right")
    return np.bincount(index, minlength=edges.size + 1).astype(np.float64)


def categorical_statistics(series: pl.Series, top_n: int = DEFAULT_TOP_N) -> dict[str, Any]:
    """Null fraction and the proportions of the ``top_n`` most frequent values (+ ``__other__``)."""
    rows = series.len()
    values = series.cast(pl.String).drop_nulls().alias("value")
    count = values.len()
    counts = values.value_counts(name="n").sort(["n", "value"], descending=[True, False]).rows()
    top = counts[:top_n]
    rest = sum(n for _, n in counts[top_n:])
    proportions = {str(value): n / count for value, n in top}
    if rest:
        proportions[OTHER] = rest / count
    return {
        "kind": "categorical",
        "count": count,
        "null_fraction": (rows - count) / rows if rows else 0.0,
        "distinct": len(counts),
        "proportions": proportions,
    }


def _psi(reference: np.ndarray, current: np.ndarray) -> float:
    ref = np.maximum(reference, PSI_EPSILON)
    cur = np.maximum(current, PSI_EPSILON)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def population_stability_index(
    reference_stats_for_feature: Mapping[str, Any], current_values: pl.Series
) -> float:
    """PSI between one feature's reference statistics and the current values of that feature.

    Numeric features use the reference's quantile bins plus a missing-value bucket; categorical
    features use the reference's top categories, ``__other__`` for everything else, and a
    missing-value bucket. 0 means the same distribution.
    """
    rows = current_values.len()
    if rows == 0:
        raise ValueError(
            f"cannot compute PSI of {current_values.name!r}: the current series is empty"
        )
    kind = reference_stats_for_feature.get("kind")
    ref_null = float(reference_stats_for_feature["null_fraction"])
    if kind == "numeric":
        ref_bins = np.asarray(reference_stats_for_feature["bin_proportions"], dtype=np.float64)
        edges = np.asarray(reference_stats_for_feature["bin_edges"], dtype=np.float64)
        values = _finite_values(current_values)
        cur_bins = _bin_counts(values, edges) / rows
        cur_null = (rows - values.size) / rows
    elif kind == "categorical":
        known = [c for c in reference_stats_for_feature["proportions"] if c != OTHER]
        ref_bins = np.asarray(
            [reference_stats_for_feature["proportions"].get(c, 0.0) for c in [*known, OTHER]]
        )
        cur_bins, cur_null = _category_shares(current_values, known, rows)
    else:
        raise ValueError(
            f"reference statistics have kind {kind!r}; expected 'numeric' or 'categorical' "
            "(an entry of reference_statistics()['numeric'|'categorical'])"
        )
    reference = np.append(ref_bins * (1.0 - ref_null), ref_null)
    current = np.append(cur_bins, cur_null)
    return _psi(reference, current)


def _category_shares(series: pl.Series, known: list[str], rows: int) -> tuple[np.ndarray, float]:
    """Shares of all rows per known category, then ``__other__``; and the missing share."""
    values = series.cast(pl.String)
    nulls = values.null_count()
    counts = dict(values.drop_nulls().value_counts(name="n").rows())
    shares = [counts.pop(c, 0) / rows for c in known]
    shares.append(sum(counts.values()) / rows)
    return np.asarray(shares, dtype=np.float64), nulls / rows
