"""Model performance on labels as they arrive: coverage, provisional and final figures, slices.

Labels arrive late (a fraud is reported 1 to 30 days after the transaction), so a scored day is
judged ``as_of`` some moment. A row's label at that moment is the latest label reported at or
before ``as_of``; a row without one counts as negative (the rule training datasets use). That
label is *known* once it has arrived, or once the row's maturity window has passed
(``as_of >= prediction_time + maturity``: no report by then means none will come).

* ``label_coverage`` = share of rows whose label is known.
* Status ``no_rows`` (nothing scored) or ``no_labels`` (coverage 0: no label arrived and no row
  matured) has no figures (``None``); ``provisional`` while some rows are still within their
  window (late frauds still count as negatives, so recall and PR-AUC can only be revised
  upwards); ``final`` once every row of the day has matured.

Figures: PR-AUC (average precision), the highest recall whose precision reaches
``target_precision`` and the threshold giving it (flag ``p >= threshold``), Brier score, and,
at the deployed ``operating_threshold``, the precision and recall it realised; per value of each
slice column too, and as deltas against reference figures (the champion's test metrics).
An undefined figure (no positive, nothing flagged) is ``None``, never NaN.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import numpy as np
import polars as pl
from sklearn.metrics import average_precision_score, precision_recall_curve

DEFAULT_TARGET_PRECISION = 0.9
LABEL = "label"
LABEL_ARRIVED = "label_arrived"
MATURED = "matured"
LABEL_KNOWN = "label_known"


@dataclass(frozen=True)
class Columns:
    """Column names of the scored rows and of the labels (each model's spec names its own)."""

    key: str
    probability: str
    prediction_time: str
    label: str
    reported_at: str = "reported_at"


class LabelStatus(StrEnum):
    NO_ROWS = "no_rows"
    NO_LABELS = "no_labels"
    PROVISIONAL = "provisional"
    FINAL = "final"


@dataclass(frozen=True)
class Metrics:
    rows: int
    positives: int
    pr_auc: float | None
    recall_at_precision: float | None
    threshold_at_precision: float | None
    brier: float
    precision_at_threshold: float | None  # at the operating threshold, if one was given
    recall_at_threshold: float | None


@dataclass(frozen=True)
class SliceMetrics:
    column: str
    value: str | None
    label_coverage: float
    metrics: Metrics


@dataclass(frozen=True)
class PerformanceReport:
    as_of: datetime
    maturity: timedelta
    status: LabelStatus
    rows: int
    labels_arrived: int
    matured_rows: int
    label_coverage: float
    target_precision: float
    operating_threshold: float | None
    overall: Metrics | None  # None for no_rows / no_labels
    slices: tuple[SliceMetrics, ...]
    reference: dict[str, float]
    deltas: dict[str, float | None]  # overall - reference, per figure in both

    def summary(self) -> dict[str, Any]:
        """JSON-friendly figures for asset metadata."""
        return {
            "as_of": self.as_of.isoformat(),
            "maturity_days": self.maturity / timedelta(days=1),
            "status": self.status.value,
            "final": self.status is LabelStatus.FINAL,
            "rows": self.rows,
            "labels_arrived": self.labels_arrived,
            "matured_rows": self.matured_rows,
            "label_coverage": self.label_coverage,
            "target_precision": self.target_precision,
            "operating_threshold": self.operating_threshold,
            **{
                name: (getattr(self.overall, name) if self.overall else None)
                for name in Metrics.__dataclass_fields__
                if name != "rows"
            },
            "reference": self.reference,
            "deltas": self.deltas,
        }

    def slices_frame(self) -> pl.DataFrame:
        """One row per (slice column, value) with its coverage and figures."""
        rows = [
            {"column": s.column, "value": s.value, "label_coverage": s.label_coverage}
            | asdict(s.metrics)
            for s in self.slices
        ]
        return pl.DataFrame(rows, schema=SLICE_SCHEMA)


# The figures a reference can hold (e.g. the champion's test metrics; other keys are ignored).
FIGURES = tuple(f for f in Metrics.__dataclass_fields__ if f not in ("rows", "positives"))

SLICE_SCHEMA: dict[str, pl.DataType] = {
    "column": pl.String(),
    "value": pl.String(),
    "label_coverage": pl.Float64(),
    "rows": pl.Int64(),
    "positives": pl.Int64(),
    "pr_auc": pl.Float64(),
    "recall_at_precision": pl.Float64(),
    "threshold_at_precision": pl.Float64(),
    "brier": pl.Float64(),
    "precision_at_threshold": pl.Float64(),
    "recall_at_threshold": pl.Float64(),
}


def _require(frame: pl.DataFrame, columns: Sequence[str], what: str) -> None:
    absent = [c for c in columns if c not in frame.columns]
    if absent:
        raise ValueError(f"{what} lack column(s) {absent}; they have {frame.columns}")


def labels_as_of(
    scored: pl.DataFrame,
    labels: pl.DataFrame,
    *,
    as_of: datetime,
    maturity: timedelta,
    columns: Columns,
) -> pl.DataFrame:
    """The scored rows with their label as known ``as_of``.

    Adds ``label`` (Int8: the latest label reported at or before ``as_of``, ties to 1, else 0),
    ``label_arrived``, ``matured`` and ``label_known`` (arrived or matured). Labels reported
    after ``as_of`` are ignored: the result is what a run at ``as_of`` could see.
    """
    c = columns
    _require(scored, [c.key, c.probability, c.prediction_time], "scored rows")
    _require(labels, [c.key, c.label, c.reported_at], "labels")
    if as_of.tzinfo is None:
        raise ValueError(f"as_of must be timezone-aware (UTC); got naive {as_of}")
    if maturity <= timedelta(0):
        raise ValueError(f"maturity must be positive; got {maturity}")
    known = (
        labels.filter(pl.col(c.reported_at) <= as_of)
        .sort([c.reported_at, c.label], descending=True)
        .unique(subset=c.key, keep="first", maintain_order=True)
        .select(c.key, pl.col(c.label).cast(pl.Int8).alias(LABEL))
    )
    bad = known.filter(~pl.col(LABEL).is_in([0, 1]))
    if bad.height:
        raise ValueError(f"labels must be 0 or 1; got {bad[LABEL].unique().to_list()[:5]}")
    if LABEL in scored.columns:
        raise ValueError(f"scored rows already have a {LABEL!r} column; rename it")
    return (
        scored.join(known, on=c.key, how="left")
        .with_columns(
            pl.col(LABEL).is_not_null().alias(LABEL_ARRIVED),
            (pl.col(c.prediction_time) + maturity <= as_of).alias(MATURED),
        )
        .with_columns(
            pl.col(LABEL).fill_null(0),
            (pl.col(LABEL_ARRIVED) | pl.col(MATURED)).alias(LABEL_KNOWN),
        )
    )


def threshold_at_precision(
    y: np.ndarray, p: np.ndarray, precision: float
) -> tuple[float | None, float | None]:
    """(threshold, recall) of the highest recall with precision >= ``precision``.

    ``(None, 0.0)`` when no threshold reaches it, ``(None, None)`` without any positive.
    """
    if not y.any():
        return None, None
    precisions, recalls, thresholds = precision_recall_curve(y, p)
    # The last point (precision 1, recall 0) has no threshold: it means "flag nothing".
    ok = np.flatnonzero(precisions[:-1] >= precision)
    if ok.size == 0:
        return None, 0.0
    best = ok[np.argmax(recalls[ok])]
    return float(thresholds[best]), float(recalls[best])


def metrics(
    y: np.ndarray, p: np.ndarray, target_precision: float, operating_threshold: float | None
) -> Metrics:
    """Every figure of one set of rows (``y`` 0/1, ``p`` probabilities; at least one row)."""
    if y.size == 0:
        raise ValueError("cannot compute performance on zero rows")
    threshold, recall = threshold_at_precision(y, p, target_precision)
    precision_at = recall_at = None
    if operating_threshold is not None:
        flagged = p >= operating_threshold
        true_pos = int((flagged & (y == 1)).sum())
        precision_at = true_pos / int(flagged.sum()) if flagged.any() else None
        recall_at = true_pos / int(y.sum()) if y.any() else None
    return Metrics(
        rows=int(y.size),
        positives=int(y.sum()),
        pr_auc=float(average_precision_score(y, p)) if y.any() else None,
        recall_at_precision=recall,
        threshold_at_precision=threshold,
        brier=float(np.mean((p - y) ** 2)),
        precision_at_threshold=precision_at,
        recall_at_threshold=recall_at,
    )


def _arrays(frame: pl.DataFrame, probability: str) -> tuple[np.ndarray, np.ndarray]:
    p = frame.get_column(probability).cast(pl.Float64).to_numpy()
    if not (np.isfinite(p).all() and ((p >= 0) & (p <= 1)).all()):
        raise ValueError(f"column {probability!r} must hold probabilities in [0, 1], no NaN/null")
    return frame.get_column(LABEL).to_numpy().astype(np.int8), p


def matured_performance(
    scored: pl.DataFrame,
    labels: pl.DataFrame,
    *,
    as_of: datetime,
    maturity: timedelta,
    target_precision: float = DEFAULT_TARGET_PRECISION,
    operating_threshold: float | None = None,
    slice_columns: Sequence[str] = (),
    reference: Mapping[str, float | None] | None = None,
    columns: Columns,
) -> PerformanceReport:
    """Performance of one day's scored rows on the labels known ``as_of``.

    ``reference`` holds figures to compare with (e.g. the champion's test metrics: its
    ``pr_auc``, ``recall_at_precision``, ``brier``...; keys that are not one of :data:`FIGURES`
    are ignored); ``deltas`` are this day's figures minus those.
    """
    if not 0.0 < target_precision <= 1.0:
        raise ValueError(f"target_precision must be in (0, 1]; got {target_precision}")
    _require(scored, list(slice_columns), "scored rows")
    rows = labels_as_of(scored, labels, as_of=as_of, maturity=maturity, columns=columns)
    coverage = float(rows[LABEL_KNOWN].mean()) if rows.height else 0.0
    status = _status(rows, coverage)
    overall = slices = None
    if status in (LabelStatus.PROVISIONAL, LabelStatus.FINAL):
        y, p = _arrays(rows, columns.probability)
        overall = metrics(y, p, target_precision, operating_threshold)
        slices = tuple(
            _slices(rows, columns.probability, slice_columns, target_precision, operating_threshold)
        )
    ref = {k: float(v) for k, v in (reference or {}).items() if k in FIGURES and v is not None}
    return PerformanceReport(
        as_of=as_of,
        maturity=maturity,
        status=status,
        rows=rows.height,
        labels_arrived=int(rows[LABEL_ARRIVED].sum()),
        matured_rows=int(rows[MATURED].sum()),
        label_coverage=coverage,
        target_precision=target_precision,
        operating_threshold=operating_threshold,
        overall=overall,
        slices=slices or (),
        reference=ref,
        deltas=_deltas(overall, ref),
    )


def _status(rows: pl.DataFrame, coverage: float) -> LabelStatus:
    if rows.height == 0:
        return LabelStatus.NO_ROWS
    if coverage == 0.0:
        return LabelStatus.NO_LABELS
    return LabelStatus.FINAL if bool(rows[MATURED].all()) else LabelStatus.PROVISIONAL


def _slices(
    rows: pl.DataFrame,
    probability: str,
    slice_columns: Sequence[str],
    target_precision: float,
    operating_threshold: float | None,
) -> list[SliceMetrics]:
    out = []
    for column in slice_columns:
        keyed = rows.with_columns(pl.col(column).cast(pl.String).alias("__slice"))
        for (value,), part in keyed.group_by("__slice", maintain_order=True):
            y, p = _arrays(part, probability)
            out.append(
                SliceMetrics(
                    column=column,
                    value=value,
                    label_coverage=float(part[LABEL_KNOWN].mean()),
                    metrics=metrics(y, p, target_precision, operating_threshold),
                )
            )
    return sorted(out, key=lambda s: (s.column, s.value is None, s.value or ""))


def _deltas(overall: Metrics | None, reference: Mapping[str, float]) -> dict[str, float | None]:
    deltas: dict[str, float | None] = {}
    for name, ref in reference.items():
        value = getattr(overall, name) if overall else None
        deltas[name] = None if value is None else value - ref
    return deltas
