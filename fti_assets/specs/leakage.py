"""Leakage rules of the fraud domain's models (the canary itself is generic:
lib/training/leakage.py).

``merchant_daily_features`` holds two label-derived features on purpose — the merchant's fraud
count and rate over 30 days — built only from fraud reports that had ARRIVED by the end of each
day. Their recount: for a seeded sample of rows, the merchant's fraud transactions of the 30 days
ending on the row's feature date whose first fraud report came before the feature row's event
time; a count (or rate) that includes reports that arrived later is a finding.
"""

from __future__ import annotations

import re
import uuid

import duckdb
import polars as pl

from fti_assets.lib.features.views import col
from fti_assets.lib.store.offline import table_exists
from fti_assets.lib.training.leakage import DEFAULT_SAMPLE_ROWS, LeakageRules, RecountCheck, row_id
from fti_assets.specs.feature_groups import MERCHANT_DAILY_FEATURES

MERCHANT_GROUP = MERCHANT_DAILY_FEATURES.name
KNOWN_FRAUD = col(MERCHANT_GROUP, "known_fraud_30d")
FRAUD_RATE = col(MERCHANT_GROUP, "fraud_rate_30d")
TX_COUNT_30D = col(MERCHANT_GROUP, "tx_count_30d")
FEATURE_DATE = col(MERCHANT_GROUP, "feature_date")
MERCHANT_EVENT_TIME = col(MERCHANT_GROUP, "event_time")
FRAUD_WINDOW_DAYS = 30
_RATE_TOLERANCE = 1e-9
_EXAMPLES = 3
LABEL_LIKE = re.compile(r"fraud|label|reported|chargeback|charge_back|dispute", re.IGNORECASE)


def merchant_fraud_findings(
    con: duckdb.DuckDBPyConnection,
    frame: pl.DataFrame,
    sample_rows: int = DEFAULT_SAMPLE_ROWS,
    seed: int = 0,
) -> tuple[list[str], int]:
    """Recompute the merchant 30-day known-fraud count on a sample; return findings, rows."""
    missing = [c for c in ("merchant_id", MERCHANT_EVENT_TIME) if c not in frame.columns]
    if missing:
        return [
            f"merchant fraud features present but column(s) {missing} are missing, so their "
            "label cut-off cannot be verified"
        ], 0
    for table in ("raw_transactions", "raw_fraud_labels"):
        if not table_exists(con, table):
            return [
                f"table {table!r} is not in the offline store: cannot verify "
                "merchant fraud features"
            ], 0
    sample = _merchant_sample(frame, sample_rows, seed)
    if sample.is_empty():
        return [], 0
    expected = _expected_known_fraud(con, sample)
    checked = sample.join(expected, on="__row", how="left").with_columns(
        pl.col("expected").fill_null(0)
    )
    findings = []
    if KNOWN_FRAUD in checked.columns:
        bad = checked.filter(pl.col(KNOWN_FRAUD).cast(pl.Int64) != pl.col("expected"))
        if not bad.is_empty():
            findings.append(_mismatch_finding(bad, KNOWN_FRAUD, checked.height))
    if FRAUD_RATE in checked.columns and TX_COUNT_30D in checked.columns:
        rates = checked.with_columns(
            pl.when(pl.col(TX_COUNT_30D) > 0)
            .then(pl.col("expected") / pl.col(TX_COUNT_30D))
            .alias("expected")
        )
        got, want = pl.col(FRAUD_RATE).cast(pl.Float64), pl.col("expected")
        differs = ((got - want).abs() > _RATE_TOLERANCE).fill_null(got.is_null() != want.is_null())
        bad = rates.filter(differs)
        if not bad.is_empty():
            findings.append(_mismatch_finding(bad, FRAUD_RATE, checked.height))
    return findings, checked.height


def _merchant_sample(frame: pl.DataFrame, sample_rows: int, seed: int) -> pl.DataFrame:
    present = [c for c in (KNOWN_FRAUD, FRAUD_RATE, TX_COUNT_30D) if c in frame.columns]
    rows = frame.select(
        *(["transaction_id"] if "transaction_id" in frame.columns else []),
        "merchant_id",
        pl.col(MERCHANT_EVENT_TIME).alias("__event_time"),
        _feature_date(frame).alias("__feature_date"),
        *present,
    ).filter(pl.col("__event_time").is_not_null())
    if rows.height > sample_rows:
        rows = rows.sample(n=sample_rows, seed=seed)
    return rows.with_row_index("__row").with_columns(pl.col("__row").cast(pl.Int64))


def _feature_date(frame: pl.DataFrame) -> pl.Expr:
    if FEATURE_DATE in frame.columns:
        return pl.col(FEATURE_DATE)
    # A daily row becomes available at the midnight UTC ending its day.
    return (pl.col(MERCHANT_EVENT_TIME).dt.convert_time_zone("UTC") - pl.duration(days=1)).dt.date()


def _expected_known_fraud(con: duckdb.DuckDBPyConnection, sample: pl.DataFrame) -> pl.DataFrame:
    view = f"__leakage_sample_{uuid.uuid4().hex}"
    con.register(view, sample.select("__row", "merchant_id", "__feature_date", "__event_time"))
    try:
        sql = f"""
            with fraud as (
                select t.merchant_id,
                       t.transaction_id,
                       cast(timezone('UTC', t.transaction_time) as date) as tx_date,
                       min(l.reported_at) as first_reported_at
                from raw_fraud_labels as l
                join raw_transactions as t on t.transaction_id = l.transaction_id
                where l.is_fraud = 1
                group by all
            )
            select s.__row, count(f.transaction_id) as expected
            from {view} as s
            left join fraud as f
                on f.merchant_id = s.merchant_id
                and f.tx_date between s.__feature_date - {FRAUD_WINDOW_DAYS - 1}
                    and s.__feature_date
                and f.first_reported_at < s.__event_time
            group by s.__row
        """
        result = con.sql(sql).pl()
    finally:
        con.unregister(view)
    return result.with_columns(pl.col("__row").cast(pl.Int64), pl.col("expected").cast(pl.Int64))


def _mismatch_finding(bad: pl.DataFrame, column: str, sampled: int) -> str:
    examples = "; ".join(
        f"{row_id(row)} merchant_id={row['merchant_id']} feature_date={row['__feature_date']} "
        f"dataset={row[column]} expected={row['expected']}"
        for row in bad.head(_EXAMPLES).iter_rows(named=True)
    )
    return (
        f"{column!r} disagrees on {bad.height} of {sampled} sampled rows with a recount that "
        "uses only fraud reports that arrived before the feature row's event_time (labels "
        f"reported later are leaking in?): e.g. {examples}"
    )


MERCHANT_FRAUD_RECOUNT = RecountCheck(
    name="merchant_fraud_reports",
    columns=frozenset({KNOWN_FRAUD, FRAUD_RATE}),
    run=merchant_fraud_findings,
)

FRAUD_DOMAIN_RULES = LeakageRules(
    label_like=LABEL_LIKE,
    # Label-derived on purpose, and safe: computed only from fraud reports that had arrived
    # before the feature row's event time (the recount verifies this on a sample).
    allowed=frozenset({KNOWN_FRAUD, FRAUD_RATE}),
    recounts=(MERCHANT_FRAUD_RECOUNT,),
)
