"""Scoring metrics for a binary classifier of a rare event, per slice, and the plots that go
with them.

Positives are rare (fraud, say), so the headline metrics are rank-based and focused on the
positive class:
PR-AUC (average precision) and recall at a fixed precision. Brier score and a calibration table
say whether the probabilities can be read as probabilities.

A metric that is undefined on the data (PR-AUC or recall with no positives, ROC-AUC with a
single class) is ``None`` rather than a crash or a NaN, so it survives JSON and shows as null in
slice tables.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from numpy.typing import ArrayLike
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

DEFAULT_TARGET_PRECISION = 0.9


def _as_arrays(y: ArrayLike, p: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y_arr = np.asarray(y, dtype=np.float64).ravel()
    p_arr = np.asarray(p, dtype=np.float64).ravel()
    if y_arr.shape != p_arr.shape:
        raise ValueError(f"labels have {y_arr.size} values but scores have {p_arr.size}")
    if not np.isin(y_arr, (0.0, 1.0)).all():
        bad = np.unique(y_arr[~np.isin(y_arr, (0.0, 1.0))])[:5].tolist()
        raise ValueError(f"labels must be 0/1; got {bad}")
    if not np.isfinite(p_arr).all():
        raise ValueError("scores contain NaN or infinite values; expected probabilities")
    return y_arr.astype(np.int8), p_arr


def pr_auc(y: ArrayLike, p: ArrayLike) -> float | None:
    """Average precision; ``None`` when there is no positive."""
    y_arr, p_arr = _as_arrays(y, p)
    if not y_arr.any():
        return None
    return float(average_precision_score(y_arr, p_arr))


def roc_auc(y: ArrayLike, p: ArrayLike) -> float | None:
    """Area under the ROC curve; ``None`` unless both classes are present."""
    y_arr, p_arr = _as_arrays(y, p)
    if not y_arr.any() or y_arr.all():
        return None
    return float(roc_auc_score(y_arr, p_arr))


def threshold_at_precision(
    y: ArrayLike, p: ArrayLike, precision: float = DEFAULT_TARGET_PRECISION
) -> tuple[float | None, float | None]:
    """(threshold, recall) of the highest recall whose precision is at least ``precision``.

    Flagging is ``score >= threshold``. Returns ``(None, 0.0)`` when no threshold reaches the
    precision and ``(None, None)`` when there is no positive.
    """
    if not 0.0 < precision <= 1.0:
        raise ValueError(f"target precision must be in (0, 1]; got {precision}")
    y_arr, p_arr = _as_arrays(y, p)
    if not y_arr.any():
        return None, None
    precisions, recalls, thresholds = precision_recall_curve(y_arr, p_arr)
    # The last (precision=1, recall=0) point has no threshold: it means "flag nothing".
    ok = np.flatnonzero(precisions[:-1] >= precision)
    if ok.size == 0:
        return None, 0.0
    best = ok[np.argmax(recalls[ok])]
    return float(thresholds[best]), float(recalls[best])


def recall_at_precision(
    y: ArrayLike, p: ArrayLike, precision: float = DEFAULT_TARGET_PRECISION
) -> float | None:
    """Max recall with precision ≥ ``precision``; 0 if unreachable, None if no positive."""
    return threshold_at_precision(y, p, precision)[1]


def brier(y: ArrayLike, p: ArrayLike) -> float:
    """Mean squared error of the probabilities (lower is better)."""
    y_arr, p_arr = _as_arrays(y, p)
    if y_arr.size == 0:
        raise ValueError("cannot compute a Brier score on zero rows")
    return float(np.mean((p_arr - y_arr) ** 2))


def log_loss(y: ArrayLike, p: ArrayLike, eps: float = 1e-15) -> float:
    y_arr, p_arr = _as_arrays(y, p)
    if y_arr.size == 0:
        raise ValueError("cannot compute a log loss on zero rows")
    q = np.clip(p_arr, eps, 1 - eps)
    return float(-np.mean(y_arr * np.log(q) + (1 - y_arr) * np.log(1 - q)))


def calibration_table(
    y: ArrayLike, p: ArrayLike, n_bins: int = 10, strategy: str = "uniform"
) -> pl.DataFrame:
    """Predicted vs observed positive rate per score bin (empty bins are left out).

    ``strategy="uniform"`` cuts [0, 1] into equal-width bins; ``"quantile"`` into bins with about
    the same number of rows, which suits scores crowded near zero.
    """
    y_arr, p_arr = _as_arrays(y, p)
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1; got {n_bins}")
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    elif strategy == "quantile":
        edges = np.unique(np.quantile(p_arr, np.linspace(0.0, 1.0, n_bins + 1)))
        edges[0], edges[-1] = min(edges[0], 0.0), max(edges[-1], 1.0)
    else:
        raise ValueError(f"unknown strategy {strategy!r}; expected 'uniform' or 'quantile'")
    # Bin i holds edges[i] <= p < edges[i+1]; the last bin also holds p == 1.
    bins = np.clip(np.searchsorted(edges, p_arr, side="right") - 1, 0, len(edges) - 2)
    counts = np.bincount(bins, minlength=len(edges) - 1)
    sums_p = np.bincount(bins, weights=p_arr, minlength=len(edges) - 1)
    sums_y = np.bincount(bins, weights=y_arr, minlength=len(edges) - 1)
    keep = counts > 0
    return pl.DataFrame(
        {
            "bin": np.flatnonzero(keep).astype(np.int64),
            "lower": edges[:-1][keep],
            "upper": edges[1:][keep],
            "n": counts[keep].astype(np.int64),
            "mean_predicted": sums_p[keep] / counts[keep],
            "observed_rate": sums_y[keep] / counts[keep],
        }
    )


def expected_calibration_error(y: ArrayLike, p: ArrayLike, n_bins: int = 10) -> float:
    """Row-weighted mean |predicted − observed| over uniform bins."""
    table = calibration_table(y, p, n_bins=n_bins)
    gap = (table["mean_predicted"] - table["observed_rate"]).abs()
    return float((gap * table["n"]).sum() / table["n"].sum())


def evaluate(
    y: ArrayLike, p: ArrayLike, precision: float = DEFAULT_TARGET_PRECISION
) -> dict[str, Any]:
    """All headline metrics in one JSON-friendly dict (undefined metrics are ``None``)."""
    y_arr, p_arr = _as_arrays(y, p)
    if y_arr.size == 0:
        raise ValueError("cannot evaluate on zero rows")
    threshold, recall = threshold_at_precision(y_arr, p_arr, precision)
    return {
        "n": int(y_arr.size),
        "positives": int(y_arr.sum()),
        "positive_rate": float(y_arr.mean()),
        "mean_prediction": float(p_arr.mean()),
        "pr_auc": pr_auc(y_arr, p_arr),
        "roc_auc": roc_auc(y_arr, p_arr),
        "target_precision": precision,
        "recall_at_precision": recall,
        "threshold_at_precision": threshold,
        "brier": brier(y_arr, p_arr),
        "log_loss": log_loss(y_arr, p_arr),
        "ece": expected_calibration_error(y_arr, p_arr),
    }


def _rates_at_threshold(
    y: np.ndarray, p: np.ndarray, threshold: float
) -> tuple[float | None, float | None, float | None]:
    """(recall, precision, false-positive rate) of flagging ``p >= threshold``."""
    flagged = p >= threshold
    positives, negatives = int(y.sum()), int(y.size - y.sum())
    true_pos = int((flagged & (y == 1)).sum())
    recall = true_pos / positives if positives else None
    precision = true_pos / int(flagged.sum()) if flagged.any() else None
    fpr = int((flagged & (y == 0)).sum()) / negatives if negatives else None
    return recall, precision, fpr


def slice_metrics(
    frame: pl.DataFrame,
    y_col: str,
    p_col: str,
    slice_cols: list[str],
    *,
    threshold: float | None = None,
    target_precision: float = DEFAULT_TARGET_PRECISION,
) -> pl.DataFrame:
    """Metrics per value of each slice column, at one decision threshold shared by all slices.

    The threshold is the one a deployment would use: given, or else the threshold reaching
    ``target_precision`` on the whole frame (if none does, the maximum score, i.e. flag almost
    nothing). A slice without positives gets null PR-AUC/ROC-AUC/recall rather than an error.
    One row per (slice_column, slice_value); slice values are shown as strings, null stays null.
    """
    missing = [c for c in [y_col, p_col, *slice_cols] if c not in frame.columns]
    if missing:
        raise ValueError(f"frame is missing column(s) {missing}; it has {frame.columns}")
    y_all, p_all = _as_arrays(frame[y_col].to_numpy(), frame[p_col].to_numpy())
    if threshold is None:
        threshold, _ = threshold_at_precision(y_all, p_all, target_precision)
        if threshold is None:
            threshold = float(p_all.max()) if p_all.size else 1.0
    rows: list[dict[str, Any]] = []
    for column in slice_cols:
        groups = (
            frame.select(pl.col(column).cast(pl.String).alias("key"))
            .with_row_index("row")
            .group_by("key")
            .agg(pl.col("row"))
            .sort("key", nulls_last=True)
        )
        for key, row_ids in groups.iter_rows():
            y, p = y_all[row_ids], p_all[row_ids]
            recall, precision, fpr = _rates_at_threshold(y, p, threshold)
            rows.append(
                {
                    "slice_column": column,
                    "slice_value": key,
                    "n": int(y.size),
                    "positives": int(y.sum()),
                    "positive_rate": float(y.mean()),
                    "mean_prediction": float(p.mean()),
                    "pr_auc": pr_auc(y, p),
                    "roc_auc": roc_auc(y, p),
                    "threshold": threshold,
                    "recall": recall,
                    "precision": precision,
                    "false_positive_rate": fpr,
                    "brier": brier(y, p),
                }
            )
    schema = {
        "slice_column": pl.String,
        "slice_value": pl.String,
        "n": pl.Int64,
        "positives": pl.Int64,
        "positive_rate": pl.Float64,
        "mean_prediction": pl.Float64,
        "pr_auc": pl.Float64,
        "roc_auc": pl.Float64,
        "threshold": pl.Float64,
        "recall": pl.Float64,
        "precision": pl.Float64,
        "false_positive_rate": pl.Float64,
        "brier": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema)


def _new_figure(width: float = 6.0, height: float = 5.0) -> Figure:
    # The object-oriented API with an Agg canvas: no pyplot global state, safe in threads.
    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", bbox_inches="tight")
    return path


def plot_pr_curve(
    curves: Mapping[str, tuple[ArrayLike, ArrayLike]], path: Path, title: str = "Precision-recall"
) -> Path:
    """One precision-recall curve per label (e.g. champion vs challenger) in one PNG."""
    figure = _new_figure()
    ax = figure.add_subplot()
    for label, (y, p) in curves.items():
        y_arr, p_arr = _as_arrays(y, p)
        if not y_arr.any():
            continue  # no positive: the curve is undefined
        precisions, recalls, _ = precision_recall_curve(y_arr, p_arr)
        ax.step(recalls, precisions, where="post", label=f"{label} (AP={pr_auc(y_arr, p_arr):.3f})")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if ax.has_data():
        ax.legend(loc="lower left")
    return _save(figure, path)


def plot_calibration(
    curves: Mapping[str, tuple[ArrayLike, ArrayLike]],
    path: Path,
    n_bins: int = 10,
    strategy: str = "quantile",
    title: str = "Calibration",
) -> Path:
    """Reliability diagram: mean predicted vs observed positive rate per bin, one line per label."""
    figure = _new_figure()
    ax = figure.add_subplot()
    ax.plot([0.0, 1.0], [0.0, 1.0], linestyle="--", color="grey", label="perfect")
    upper = 0.0
    for label, (y, p) in curves.items():
        table = calibration_table(y, p, n_bins=n_bins, strategy=strategy)
        ax.plot(table["mean_predicted"], table["observed_rate"], marker="o", label=label)
        upper = max(upper, table["mean_predicted"].max(), table["observed_rate"].max())
    # Fraud scores sit near zero: zoom in on the occupied range instead of the full square.
    limit = min(1.0, max(upper * 1.1, 0.01)) if not math.isnan(upper) else 1.0
    ax.set_xlim(0.0, limit)
    ax.set_ylim(0.0, limit)
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed positive rate")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    return _save(figure, path)
