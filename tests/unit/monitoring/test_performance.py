"""Performance on labels as they arrive: coverage, provisional vs final, slices, deltas."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import average_precision_score

from fti_assets.lib.monitoring.performance import (
    Columns,
    LabelStatus,
    labels_as_of,
    matured_performance,
    threshold_at_precision,
)

DAY = datetime(2026, 9, 10, tzinfo=UTC)
MATURITY = timedelta(days=30)
COLUMNS = Columns(
    key="transaction_id",
    probability="fraud_probability",
    prediction_time="transaction_time",
    label="is_fraud",
)


def _day(rows: int = 4000, seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame, np.ndarray]:
    """One day's scored rows, the fraud reports 1-29 days later, and every row's true label."""
    rng = np.random.default_rng(seed)
    p = rng.beta(0.6, 12, rows)
    y = (rng.random(rows) < p).astype(np.int8)
    times = [DAY + timedelta(seconds=int(s)) for s in np.sort(rng.integers(0, 86_400, rows))]
    scored = pl.DataFrame(
        {
            "transaction_id": [f"tx_{i}" for i in range(rows)],
            "transaction_time": pl.Series(times, dtype=pl.Datetime("us", "UTC")),
            "fraud_probability": p,
            "channel": rng.choice(["pos", "web", "app"], rows),
        }
    )
    fraud = np.flatnonzero(y)
    delays = rng.uniform(1, 29, fraud.size)
    labels = pl.DataFrame(
        {
            "transaction_id": [f"tx_{i}" for i in fraud],
            "is_fraud": pl.Series(np.ones(fraud.size), dtype=pl.Int8),
            "reported_at": pl.Series(
                [times[i] + timedelta(days=float(d)) for i, d in zip(fraud, delays, strict=True)],
                dtype=pl.Datetime("us", "UTC"),
            ),
        }
    )
    return scored, labels, y


def test_a_day_whose_labels_have_not_arrived_has_coverage_zero_and_no_figures() -> None:
    scored, labels, _ = _day()

    report = matured_performance(
        scored, labels, as_of=DAY + timedelta(hours=23), maturity=MATURITY, columns=COLUMNS
    )

    assert report.status is LabelStatus.NO_LABELS
    assert (report.label_coverage, report.labels_arrived, report.matured_rows) == (0.0, 0, 0)
    assert report.overall is None and report.slices == ()
    assert report.summary()["pr_auc"] is None


def test_a_day_without_scored_rows() -> None:
    scored, labels, _ = _day()

    report = matured_performance(
        scored.head(0),
        labels,
        as_of=DAY + timedelta(days=40),
        maturity=MATURITY,
        columns=COLUMNS,
        reference={"pr_auc": 0.5},
    )

    assert report.status is LabelStatus.NO_ROWS
    assert (report.rows, report.label_coverage, report.overall) == (0, 0.0, None)
    assert report.deltas == {"pr_auc": None}


def test_partial_labels_give_provisional_figures_that_only_count_arrived_labels() -> None:
    scored, labels, y = _day()
    as_of = DAY + timedelta(days=10)
    arrived = labels.filter(pl.col("reported_at") <= as_of)["transaction_id"]
    y_now = scored["transaction_id"].is_in(arrived.implode()).to_numpy().astype(int)

    report = matured_performance(scored, labels, as_of=as_of, maturity=MATURITY, columns=COLUMNS)

    assert report.status is LabelStatus.PROVISIONAL
    assert 0 < report.labels_arrived == arrived.len() < y.sum()
    assert report.label_coverage == pytest.approx(arrived.len() / scored.height)
    assert report.overall is not None
    assert report.overall.positives == arrived.len()
    p = scored["fraud_probability"].to_numpy()
    assert report.overall.pr_auc == pytest.approx(average_precision_score(y_now, p))
    assert report.summary()["final"] is False


def test_once_every_row_has_matured_the_figures_are_final_on_all_labels() -> None:
    scored, labels, y = _day()
    p = scored["fraud_probability"].to_numpy()

    report = matured_performance(
        scored,
        labels,
        as_of=DAY + timedelta(days=31),  # the day's last row matures after DAY + 30 days
        maturity=MATURITY,
        columns=COLUMNS,
        operating_threshold=0.3,
        reference={"pr_auc": 0.4, "brier": 0.05, "roc_auc": 0.9},
    )
    midway = DAY + MATURITY + timedelta(hours=12)
    almost = matured_performance(scored, labels, as_of=midway, maturity=MATURITY, columns=COLUMNS)

    assert report.status is LabelStatus.FINAL
    assert almost.status is LabelStatus.PROVISIONAL  # rows after noon have not matured
    assert 0 < almost.matured_rows < scored.height
    assert report.label_coverage == 1.0
    overall = report.overall
    assert overall is not None
    assert overall.positives == y.sum()
    assert overall.pr_auc == pytest.approx(average_precision_score(y, p))
    assert overall.brier == pytest.approx(np.mean((p - y) ** 2))
    flagged = p >= 0.3
    assert overall.precision_at_threshold == pytest.approx(y[flagged].mean())
    assert overall.recall_at_threshold == pytest.approx(y[flagged].sum() / y.sum())
    threshold, recall = threshold_at_precision(y, p, 0.9)
    assert (overall.threshold_at_precision, overall.recall_at_precision) == (threshold, recall)
    assert report.reference == {"pr_auc": 0.4, "brier": 0.05}  # roc_auc is not a figure here
    assert report.deltas["pr_auc"] == pytest.approx(overall.pr_auc - 0.4)
    assert report.deltas["brier"] == pytest.approx(overall.brier - 0.05)


def test_slices_score_each_value_on_its_own_rows() -> None:
    scored, labels, y = _day()
    report = matured_performance(
        scored,
        labels,
        as_of=DAY + timedelta(days=31),
        maturity=MATURITY,
        columns=COLUMNS,
        operating_threshold=0.3,
        slice_columns=["channel"],
    )
    table = report.slices_frame()

    assert table["value"].to_list() == ["app", "pos", "web"]
    web = (scored["channel"] == "web").to_numpy()
    row = table.filter(pl.col("value") == "web").row(0, named=True)
    p = scored["fraud_probability"].to_numpy()
    assert row["rows"] == web.sum()
    assert row["positives"] == y[web].sum()
    assert row["pr_auc"] == pytest.approx(average_precision_score(y[web], p[web]))
    assert row["label_coverage"] == 1.0


def test_the_latest_label_reported_by_as_of_wins() -> None:
    scored = pl.DataFrame(
        {
            "transaction_id": ["a", "b"],
            "transaction_time": pl.Series([DAY, DAY], dtype=pl.Datetime("us", "UTC")),
            "fraud_probability": [0.9, 0.1],
        }
    )
    at = [DAY + timedelta(days=d) for d in (2, 5, 8)]
    labels = pl.DataFrame(
        {
            "transaction_id": ["a", "a", "b"],
            "is_fraud": pl.Series([1, 0, 1], dtype=pl.Int8),  # a: reported, then cleared
            "reported_at": pl.Series(at, dtype=pl.Datetime("us", "UTC")),
        }
    )

    def label(days: int) -> list[int]:
        rows = labels_as_of(
            scored, labels, as_of=DAY + timedelta(days=days), maturity=MATURITY, columns=COLUMNS
        )
        return rows["label"].to_list()

    assert (label(1), label(3), label(6), label(9)) == ([0, 0], [1, 0], [0, 0], [0, 1])


def test_threshold_at_precision_by_hand() -> None:
    y = np.array([1, 1, 0, 1, 0, 0])
    p = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.1])

    assert threshold_at_precision(y, p, 1.0) == (0.8, pytest.approx(2 / 3))
    assert threshold_at_precision(y, p, 0.75) == (0.6, 1.0)
    assert threshold_at_precision(np.zeros(3, dtype=int), p[:3], 0.9) == (None, None)


def test_bad_input_names_the_problem() -> None:
    scored, labels, _ = _day(50)

    with pytest.raises(ValueError, match="timezone-aware"):
        matured_performance(
            scored, labels, as_of=datetime(2026, 10, 1), maturity=MATURITY, columns=COLUMNS
        )
    with pytest.raises(ValueError, match=r"scored rows lack column\(s\) \['category'\]"):
        matured_performance(
            scored,
            labels,
            as_of=DAY,
            maturity=MATURITY,
            columns=COLUMNS,
            slice_columns=["category"],
        )
    with pytest.raises(ValueError, match=r"labels lack column\(s\) \['reported_at'\]"):
        matured_performance(
            scored, labels.drop("reported_at"), as_of=DAY, maturity=MATURITY, columns=COLUMNS
        )
    bad = scored.with_columns(pl.lit(1.5).alias("fraud_probability"))
    with pytest.raises(ValueError, match="probabilities in"):
        matured_performance(
            bad, labels, as_of=DAY + timedelta(days=40), maturity=MATURITY, columns=COLUMNS
        )
