"""The leakage canary passes a clean dataset and catches deliberately leaky ones."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest

from fti_assets.lib.store.offline import connect
from fti_assets.lib.training.datasets import BuildInfo
from fti_assets.lib.training.leakage import LeakageReport
from fti_assets.lib.training.leakage import check_leakage as _check_leakage
from fti_assets.specs.feature_groups import MERCHANT_DAILY_FEATURES
from fti_assets.specs.leakage import FRAUD_DOMAIN_RULES
from tests.unit.test_datasets import (
    CARD_TX,
    LABEL_REPORTED_AT,
    VIEW,
    build,
    make_store,
    small_config,
)

FEATURES, CATEGORICAL = VIEW.input_columns()


def manifest_like(info: BuildInfo, extra_features: tuple[str, ...] = ()) -> dict[str, object]:
    return {
        "feature_columns": [*FEATURES, *extra_features],
        "feature_groups": info.feature_groups,
        "label_column": "is_fraud",
        "label": {"time_column": "transaction_time"},
    }


def check_leakage(
    con: duckdb.DuckDBPyConnection, frame: pl.DataFrame, manifest, **kw
) -> LeakageReport:
    """The canary with the fraud domain's rules (the merchant fraud recount)."""
    return _check_leakage(con, frame, manifest, FRAUD_DOMAIN_RULES, **kw)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    con = connect(make_store(tmp_path / "lake"), read_only=True)
    yield con
    con.close()


@pytest.fixture
def clean(store: duckdb.DuckDBPyConnection) -> tuple[pl.DataFrame, BuildInfo]:
    return build(store, small_config())


def test_a_clean_dataset_passes(
    store: duckdb.DuckDBPyConnection, clean: tuple[pl.DataFrame, BuildInfo]
) -> None:
    frame, info = clean
    report = check_leakage(store, frame, manifest_like(info))

    assert report.passed, report.findings
    assert report.rows_checked == 8
    # Every row's merchant fraud count was recounted from the raw tables, and matched.
    assert report.rows_recounted == 8
    assert report.to_metadata()["passed"] is True


def _group_table(con: duckdb.DuckDBPyConnection, group: str, table: str) -> pl.DataFrame:
    """A feature table with the dataset's column names (features prefixed, event time copied)."""
    frame = con.sql(f'select * from "{table}"').pl()
    keys = {"card_id", "merchant_id", "event_time"}
    renamed = frame.rename({c: f"{group}__{c}" for c in frame.columns if c not in keys})
    return renamed.with_columns(pl.col("event_time").alias(f"{group}__event_time"))


def test_catches_the_feature_row_of_the_transaction_itself(
    store: duckdb.DuckDBPyConnection, clean: tuple[pl.DataFrame, BuildInfo]
) -> None:
    frame, info = clean
    # The bug: joining the card state on the transaction's own time (bypassing the PIT join),
    # i.e. the state AFTER the transaction being predicted.
    table = _group_table(store, CARD_TX.name, CARD_TX.table)
    stripped = frame.drop([c for c in frame.columns if c.startswith(f"{CARD_TX.name}__")])
    joined = stripped.join(
        table, left_on=["card_id", "transaction_time"], right_on=["card_id", "event_time"]
    )
    leaky = joined.select(frame.columns)

    report = check_leakage(store, leaky, manifest_like(info))

    assert not report.passed
    assert len(report.findings) == 1
    assert "'card_transaction_features'" in report.findings[0]
    assert "8 of 8 rows" in report.findings[0]


def test_catches_a_daily_aggregate_joined_on_the_same_day(
    store: duckdb.DuckDBPyConnection, clean: tuple[pl.DataFrame, BuildInfo]
) -> None:
    frame, info = clean
    group = MERCHANT_DAILY_FEATURES.name
    # The bug: a plain join on date, so the day's aggregate (true only at the day's end, its
    # event_time) is used for transactions during that day.
    table = _group_table(store, group, MERCHANT_DAILY_FEATURES.table).drop("event_time")
    stripped = frame.drop([c for c in frame.columns if c.startswith(f"{group}__")])
    joined = stripped.with_columns(
        pl.col("transaction_time").dt.date().alias(f"{group}__feature_date")
    ).join(table, on=["merchant_id", f"{group}__feature_date"])
    leaky = joined.select(frame.columns)

    report = check_leakage(store, leaky, manifest_like(info))

    assert any("'merchant_daily_features'" in f and "8 of 8 rows" in f for f in report.findings)


def test_catches_a_copy_of_the_label(
    store: duckdb.DuckDBPyConnection, clean: tuple[pl.DataFrame, BuildInfo]
) -> None:
    frame, info = clean
    leaky = frame.with_columns(pl.col("is_fraud").cast(pl.Float64).alias("risk_score"))

    report = check_leakage(store, leaky, manifest_like(info, ("risk_score",)))

    assert not report.passed
    assert report.findings == [
        "feature column 'risk_score' equals the label 'is_fraud' on 100.00% of rows "
        "(threshold 99.9%)"
    ]


@pytest.mark.parametrize("column", ["is_fraud", LABEL_REPORTED_AT, "chargeback_count_7d"])
def test_catches_label_like_feature_names(
    store: duckdb.DuckDBPyConnection, clean: tuple[pl.DataFrame, BuildInfo], column: str
) -> None:
    frame, info = clean
    if column not in frame.columns:
        frame = frame.with_columns(pl.lit(0).alias(column))

    report = check_leakage(store, frame, manifest_like(info, (column,)))

    assert any(f"feature column {column!r} is named like the label" in f for f in report.findings)


def test_catches_a_perfect_separator_but_not_a_merely_useful_feature() -> None:
    rng = np.random.default_rng(7)
    label = (rng.random(400) < 0.2).astype(np.int8)
    noise = rng.random(400)
    frame = pl.DataFrame(
        {
            "transaction_time": pl.datetime_range(
                pl.datetime(2026, 9, 1, time_zone="UTC"),
                pl.datetime(2026, 9, 1, time_zone="UTC") + pl.duration(minutes=399),
                "1m",
                eager=True,
            ),
            "is_fraud": label,
            "useful": label + 2 * noise,  # shifted up for fraud, but the classes overlap
            "leaky": label * 10 + noise,  # every fraud above every non-fraud
            # Only filled in once fraud was confirmed: the null pattern is the label.
            "case_amount": np.where(label == 1, noise, np.nan),
        }
    )
    with duckdb.connect() as con:
        report = check_leakage(
            con,
            frame,
            {
                "feature_columns": ["useful", "leaky", "case_amount"],
                "label_column": "is_fraud",
                "label": {"time_column": "transaction_time"},
            },
        )

    flagged = sorted(f.split("'")[1] for f in report.findings)
    assert flagged == ["case_amount", "leaky"]
    assert all("separates the classes" in f for f in report.findings)


def test_catches_merchant_fraud_counted_with_labels_reported_later(tmp_path: Path) -> None:
    lake = make_store(tmp_path / "leaky", leaky_merchant_fraud=True)
    con = connect(lake, read_only=True)
    try:
        frame, info = build(con, small_config())
        report = check_leakage(con, frame, manifest_like(info))
    finally:
        con.close()

    assert not report.passed
    known, rate = report.findings
    assert known.startswith("'merchant_daily_features__known_fraud_30d' disagrees on")
    # t02 (09-02) sees m1's 09-01 row: t01 was fraud, but reported only on 09-02.
    assert "transaction_id=t02 merchant_id=m1 feature_date=2026-09-01 dataset=1 expected=0" in known
    assert rate.startswith("'merchant_daily_features__fraud_rate_30d' disagrees on")


def test_a_listed_group_without_its_event_time_column_is_a_finding(
    store: duckdb.DuckDBPyConnection, clean: tuple[pl.DataFrame, BuildInfo]
) -> None:
    frame, info = clean
    report = check_leakage(
        store, frame.drop("card_profile_features__event_time"), manifest_like(info)
    )

    assert report.findings == [
        "feature group 'card_profile_features': column 'card_profile_features__event_time' is "
        "missing, so which feature row each label used cannot be verified"
    ]
