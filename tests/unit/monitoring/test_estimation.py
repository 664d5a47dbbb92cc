"""Performance estimated from calibrated probabilities before labels arrive (CBPE)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from fti_assets.lib.monitoring.estimation import (
    average_precision_of_draws,
    compare_with_realized,
    estimate_performance,
    group_ends,
)

THRESHOLD = 0.3


def _calibrated(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores and labels drawn from them: calibrated by construction."""
    rng = np.random.default_rng(seed)
    p = rng.beta(0.5, 6, rows)
    return p, (rng.random(rows) < p).astype(np.int8)


def test_estimate_is_close_to_the_realized_figures_on_calibrated_scores() -> None:
    p, y = _calibrated(30_000, seed=1)

    check = compare_with_realized(estimate_performance(p, THRESHOLD, seed=2), p, y)

    assert check.estimate.flagged > 1000  # enough flagged rows for precision to be stable
    assert abs(check.pr_auc_error) < 0.02
    assert check.pr_auc_within_interval is True
    assert abs(check.precision_error) < 0.02
    assert abs(check.recall_error) < 0.02
    assert abs(check.brier_error) < 0.002


def test_estimate_is_clearly_off_on_miscalibrated_scores() -> None:
    p, y = _calibrated(30_000, seed=1)
    overconfident = p**0.4  # same ranking, probabilities too high

    check = compare_with_realized(estimate_performance(overconfident, THRESHOLD), overconfident, y)

    assert check.realized_pr_auc == pytest.approx(average_precision_score(y, p))  # same ranking
    assert check.pr_auc_error > 0.1
    assert check.precision_error > 0.1
    assert check.pr_auc_within_interval is False
    assert abs(check.brier_error) > 0.01


def test_sampled_average_precision_is_sklearns_including_ties() -> None:
    rng = np.random.default_rng(0)
    descending = np.sort(np.round(rng.beta(0.4, 6, 2000), 2))[::-1]  # many ties
    labels = rng.random((6, descending.size)) < descending
    labels[5] = False  # a draw without positives

    ap, recall = average_precision_of_draws(labels, group_ends(descending), flagged=300)

    for draw in range(5):
        assert ap[draw] == pytest.approx(average_precision_score(labels[draw], descending))
        assert recall[draw] == pytest.approx(labels[draw, :300].sum() / labels[draw].sum())
    assert np.isnan(ap[5]) and np.isnan(recall[5])


def test_expected_precision_and_brier_are_exact() -> None:
    p = np.array([0.9, 0.6, 0.2, 0.05, 0.0])

    estimate = estimate_performance(p, 0.5, samples=50)

    assert estimate.flagged == 2
    assert estimate.expected_precision == pytest.approx(0.75)
    assert estimate.expected_positives == pytest.approx(1.75)
    assert estimate.expected_brier == pytest.approx(np.mean(p * (1 - p)))


def test_the_estimate_is_seeded_and_json_friendly() -> None:
    p, _ = _calibrated(2000, seed=3)

    first, again = (
        estimate_performance(p, THRESHOLD, seed=4),
        estimate_performance(p, THRESHOLD, seed=4),
    )
    other = estimate_performance(p, THRESHOLD, seed=5)

    assert first == again
    assert first.expected_pr_auc != other.expected_pr_auc
    assert json.loads(json.dumps(first.to_dict()))["pr_auc_interval"] == list(first.pr_auc_interval)


def test_no_rows_and_no_possible_positive_give_no_estimate() -> None:
    empty = estimate_performance(np.array([]), THRESHOLD)
    zeros = estimate_performance(np.zeros(100), THRESHOLD)

    assert (empty.rows, empty.expected_pr_auc, empty.expected_brier) == (0, None, None)
    assert (zeros.expected_pr_auc, zeros.expected_recall, zeros.expected_precision) == (
        None,
        None,
        None,
    )
    check = compare_with_realized(zeros, np.zeros(100), np.zeros(100))
    assert (check.realized_pr_auc, check.pr_auc_error, check.pr_auc_within_interval) == (
        None,
        None,
        None,
    )


def test_bad_input_names_the_problem() -> None:
    p, y = _calibrated(100, seed=0)
    estimate = estimate_performance(p, THRESHOLD)

    with pytest.raises(ValueError, match="threshold must be in"):
        estimate_performance(p, 0.0)
    with pytest.raises(ValueError, match="finite and in"):
        estimate_performance(np.array([0.2, np.nan]), THRESHOLD)
    with pytest.raises(ValueError, match="estimate covers 100 rows"):
        compare_with_realized(estimate, p[:50], y[:50])
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        compare_with_realized(estimate, p, y * 2)


def test_without_a_threshold_pr_auc_and_brier_are_still_estimated() -> None:
    rng = np.random.default_rng(3)
    p = rng.beta(0.5, 10, 5_000)
    estimate = estimate_performance(p, None)
    assert estimate.threshold is None and estimate.flagged == 0
    assert estimate.expected_precision is None and estimate.expected_recall is None
    assert estimate.expected_pr_auc == estimate_performance(p, 0.5).expected_pr_auc
    assert estimate.expected_brier is not None
