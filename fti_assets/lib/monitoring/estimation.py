"""Performance estimated from calibrated probabilities, before any label arrives (CBPE).

If the model is calibrated, a row scored ``p`` is a positive with probability ``p``, so the
day's labels are (in expectation) Bernoulli draws from its own scores: the confusion matrix at
the operating threshold, and any metric built on it, has an expected value computable today.
This is the idea NannyML calls confidence-based performance estimation; the code is ours.

* **Precision at the threshold** is exact: the flagged count is fixed, so
  E[precision] = E[TP] / flagged = mean ``p`` over flagged rows.
* **Recall at the threshold and PR-AUC (average precision)** divide by the day's number of
  positives, itself random (tens of frauds a day), so a plug-in ratio of expectations is biased
  exactly where it matters, and average precision has no closed-form expectation anyway. They
  are therefore estimated by Monte Carlo: ``samples`` label vectors drawn from the scores
  (seeded), each scored exactly as scikit-learn scores average precision (ties grouped by
  distinct score); the estimate is the mean over draws with at least one positive, and the 5th
  to 95th percentiles give the range a calibrated model's realized PR-AUC should fall in. The
  scores are sorted once; a draw costs one comparison per row and a visit of its positives
  (200 draws: 0.04 s for 20k rows, 1.4 s for 1M on this machine).
* **Brier score** is exact: E[(p - y)^2] = p(1 - p) per row.

Once labels mature, :func:`compare_with_realized` puts each estimate beside the realized figure
with its error (estimate - realized). On miscalibrated scores the estimate is off by the
miscalibration: that gap is itself the signal.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import average_precision_score

DEFAULT_SAMPLES = 200
INTERVAL = (5.0, 95.0)  # percentiles of the sampled PR-AUC
_BATCH_CELLS = 1 << 22  # draws x rows per batch: ~40 MB of random numbers and labels


@dataclass(frozen=True)
class PerformanceEstimate:
    rows: int
    threshold: float | None  # None: no operating threshold (PR-AUC and Brier only)
    flagged: int  # rows with p >= threshold (0 without one)
    expected_positives: float
    expected_precision: float | None  # None when nothing is flagged
    expected_recall: float | None  # None when no draw has a positive
    expected_pr_auc: float | None
    pr_auc_interval: tuple[float, float] | None
    expected_brier: float | None  # None without rows
    samples: int
    seed: int

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["pr_auc_interval"] = list(self.pr_auc_interval) if self.pr_auc_interval else None
        return out


@dataclass(frozen=True)
class EstimateCheck:
    """An estimate beside the realized figures on (matured) labels; errors are est - real."""

    estimate: PerformanceEstimate
    positives: int
    realized_precision: float | None
    realized_recall: float | None
    realized_pr_auc: float | None
    realized_brier: float | None
    precision_error: float | None
    recall_error: float | None
    pr_auc_error: float | None
    brier_error: float | None
    pr_auc_within_interval: bool | None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["estimate"] = self.estimate.to_dict()
        return out


def _probabilities(values: ArrayLike) -> np.ndarray:
    p = np.asarray(values, dtype=np.float64).ravel()
    if not (np.isfinite(p).all() and ((p >= 0) & (p <= 1)).all()):
        raise ValueError("probabilities must be finite and in [0, 1]; got NaN, inf or outside")
    return p


def _check_threshold(threshold: float) -> None:
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1]; got {threshold}")


def group_ends(descending: np.ndarray) -> np.ndarray:
    """For each position of scores sorted descending, the last position with the same score."""
    new_group = descending[1:] != descending[:-1]
    last = np.append(np.flatnonzero(new_group), descending.size - 1)
    return last[np.concatenate(([0], np.cumsum(new_group)))]


def average_precision_of_draws(
    labels: np.ndarray, ends: np.ndarray, flagged: int
) -> tuple[np.ndarray, np.ndarray]:
    """Average precision and recall of the top ``flagged`` rows, for each draw (row) of labels.

    ``labels`` is draws x rows (0/1), columns ordered by descending score; ``ends`` comes from
    :func:`group_ends`. As in scikit-learn, tied scores are flagged together: a positive's
    precision is taken at the end of its tie group. Only the positives are visited: AP is the
    mean over positives of (positives up to its group's end) / (rows up to its group's end).
    NaN for a draw without positives.
    """
    draws, n = labels.shape
    draw, position = np.nonzero(labels)  # row-major: by draw, then position
    positives = np.bincount(draw, minlength=draws)
    first = np.concatenate(([0], np.cumsum(positives)[:-1]))
    keys = draw.astype(np.int64) * n + position
    end = ends[position]
    caught_by_end = np.searchsorted(keys, draw.astype(np.int64) * n + end, side="right")
    precision = (caught_by_end - first[draw]) / (end + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = np.bincount(draw, weights=precision, minlength=draws) / positives
        recall = np.bincount(draw, weights=position < flagged, minlength=draws) / positives
    return ap, recall


def estimate_performance(
    probabilities: ArrayLike,
    threshold: float | None,
    *,
    samples: int = DEFAULT_SAMPLES,
    seed: int = 0,
) -> PerformanceEstimate:
    """Expected precision/recall at ``threshold`` (flag ``p >= threshold``), PR-AUC and Brier.
    Without a threshold (a version whose test split never reached the target precision) the
    PR-AUC and Brier are still estimated; precision and recall are None."""
    if threshold is not None:
        _check_threshold(threshold)
    if samples < 2:
        raise ValueError(f"samples must be at least 2; got {samples}")
    p = _probabilities(probabilities)
    flagged = int((p >= threshold).sum()) if threshold is not None else 0
    empty = PerformanceEstimate(
        rows=p.size,
        threshold=threshold,
        flagged=flagged,
        expected_positives=float(p.sum()),
        expected_precision=float(p[p >= threshold].mean()) if flagged else None,
        expected_recall=None,
        expected_pr_auc=None,
        pr_auc_interval=None,
        expected_brier=float(np.mean(p * (1 - p))) if p.size else None,
        samples=samples,
        seed=seed,
    )
    if p.size == 0:
        return empty
    ap, recall = _sampled(np.sort(p)[::-1], flagged, samples, seed)
    drawn = ~np.isnan(ap)  # draws with at least one positive
    if not drawn.any():
        return empty
    low, high = np.percentile(ap[drawn], INTERVAL)
    return PerformanceEstimate(
        **{
            **asdict(empty),
            "expected_recall": float(recall[drawn].mean()) if threshold is not None else None,
            "expected_pr_auc": float(ap[drawn].mean()),
            "pr_auc_interval": (float(low), float(high)),
        }
    )


def _sampled(
    descending: np.ndarray, flagged: int, samples: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Average precision and recall at the threshold of ``samples`` label draws (NaN: no pos)."""
    rng = np.random.default_rng(seed)
    ends = group_ends(descending)
    batch = max(1, _BATCH_CELLS // descending.size)
    ap, recall = [], []
    for start in range(0, samples, batch):
        labels = rng.random((min(batch, samples - start), descending.size)) < descending
        batch_ap, batch_recall = average_precision_of_draws(labels, ends, flagged)
        ap.append(batch_ap)
        recall.append(batch_recall)
    return np.concatenate(ap), np.concatenate(recall)


def compare_with_realized(
    estimate: PerformanceEstimate, probabilities: ArrayLike, labels: ArrayLike
) -> EstimateCheck:
    """The estimate beside the figures realized on ``labels`` (0/1, same rows and order)."""
    p = _probabilities(probabilities)
    y = np.asarray(labels).ravel()
    if y.size != p.size or p.size != estimate.rows:
        raise ValueError(
            f"estimate covers {estimate.rows} rows but got {p.size} probabilities and "
            f"{y.size} labels; expected the same rows"
        )
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"labels must be 0 or 1; got {np.unique(y)[:5].tolist()}")
    y = y.astype(np.int8)
    flagged = p >= estimate.threshold
    caught = int(y[flagged].sum())
    positives = int(y.sum())
    precision = caught / int(flagged.sum()) if flagged.any() else None
    recall = caught / positives if positives else None
    pr_auc = float(average_precision_score(y, p)) if positives else None
    brier = float(np.mean((p - y) ** 2)) if y.size else None
    interval = estimate.pr_auc_interval
    return EstimateCheck(
        estimate=estimate,
        positives=positives,
        realized_precision=precision,
        realized_recall=recall,
        realized_pr_auc=pr_auc,
        realized_brier=brier,
        precision_error=_error(estimate.expected_precision, precision),
        recall_error=_error(estimate.expected_recall, recall),
        pr_auc_error=_error(estimate.expected_pr_auc, pr_auc),
        brier_error=_error(estimate.expected_brier, brier),
        pr_auc_within_interval=(
            None if interval is None or pr_auc is None else interval[0] <= pr_auc <= interval[1]
        ),
    )


def _error(estimate: float | None, realized: float | None) -> float | None:
    return None if estimate is None or realized is None else estimate - realized
