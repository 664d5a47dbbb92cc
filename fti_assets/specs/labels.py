"""How the models' examples and labels come from raw data (the domain's label logic lives here,
not in lib/): a :class:`~fti_assets.lib.training.datasets.LabelSpec` per model, and the rows each
model scores every day."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import duckdb
import polars as pl

from fti_assets.lib.store.offline import as_utc, read_frame, table_exists
from fti_assets.lib.training.datasets import LabelSpec

TRANSACTIONS = "raw_transactions"
FRAUD_LABELS = "raw_fraud_labels"
REQUEST_FIELDS = ("amount", "category", "channel", "lat", "lon")
TRANSACTION_IDS = ("transaction_id", "card_id", "merchant_id")
RISK_HORIZON = timedelta(days=7)
ACTIVE_WINDOW = timedelta(days=30)

# The latest label of each transaction reported at or before the cutoff (ties: fraud wins).
_LATEST_LABELS = f"""
    select transaction_id, is_fraud, reported_at
    from {FRAUD_LABELS}
    where reported_at <= ?
    qualify row_number() over (
        partition by transaction_id order by reported_at desc, is_fraud desc
    ) = 1
"""


def _require(con: duckdb.DuckDBPyConnection, table: str) -> None:
    if not table_exists(con, table):
        raise ValueError(f"table {table!r} is not in the offline store; ingest it first")


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def first_transaction_day(con: duckdb.DuckDBPyConnection) -> date:
    _require(con, TRANSACTIONS)
    sql = f"select min(timezone('UTC', transaction_time))::date from {TRANSACTIONS}"
    day = con.execute(sql).fetchall()[0][0]
    if day is None:
        raise ValueError(f"{TRANSACTIONS} is empty: there are no transactions to label")
    return day


def landed_cutoff(con: duckdb.DuckDBPyConnection) -> datetime:
    """Midnight UTC after the last landing day for which BOTH transactions and labels landed.

    Taking the earlier of the two last days keeps the promise "labels as known at the cutoff"
    when label ingestion lags behind transactions.
    """
    last_days = []
    for table in (TRANSACTIONS, FRAUD_LABELS):
        _require(con, table)
        day = con.execute(f"select max(landing_date) from {table}").fetchall()[0][0]
        if day is None:
            raise ValueError(
                f"{table} has no landed rows, so there is no default cutoff; pass "
                "DatasetConfig(cutoff=...) explicitly"
            )
        last_days.append(day)
    return _midnight(min(last_days) + timedelta(days=1))


# ------------------------------------------------------------------------------ fraud_model


def transactions_between(
    con: duckdb.DuckDBPyConnection, start: datetime, end: datetime
) -> pl.DataFrame:
    """The accepted transactions with ``start <= transaction_time < end``, as scoring requests
    (ids, time, request fields), in time order: the rows fraud_model scores each day."""
    _require(con, TRANSACTIONS)
    frame = read_frame(
        con,
        f"select {', '.join((*TRANSACTION_IDS, 'transaction_time', *REQUEST_FIELDS))} "
        f"from {TRANSACTIONS} where transaction_time >= ? and transaction_time < ? "
        "order by transaction_time, transaction_id",
        [start, end],
    )
    return frame.with_columns(as_utc("transaction_time"))


def fraud_examples(
    con: duckdb.DuckDBPyConnection, start: datetime, end: datetime, cutoff: datetime
) -> pl.DataFrame:
    """Every accepted transaction of ``[start, end)`` with ``is_fraud`` = its latest label
    reported by ``cutoff`` (0 when none) and ``label__reported_at``."""
    _require(con, FRAUD_LABELS)
    examples = transactions_between(con, start, end)
    labels = read_frame(con, _LATEST_LABELS, [cutoff]).with_columns(as_utc("reported_at"))
    return (
        examples.join(labels, on="transaction_id", how="left")
        .with_columns(
            pl.col("is_fraud").fill_null(0).cast(pl.Int8),
            pl.col("reported_at").alias("label__reported_at"),
        )
        .drop("reported_at")
        .sort("transaction_time", "transaction_id")
    )


FRAUD_LABEL = LabelSpec(
    column="is_fraud",
    time_column="transaction_time",
    id_columns=TRANSACTION_IDS,
    request_columns=REQUEST_FIELDS,
    metadata_columns=("label__reported_at",),
    horizon=timedelta(0),
    rule=(
        "is_fraud = value of the latest label per transaction reported at or before the cutoff "
        "(ties: fraud wins); 0 when no label was reported by then"
    ),
    sources=(TRANSACTIONS, FRAUD_LABELS),
    build=fraud_examples,
    first_day=first_transaction_day,
    default_cutoff=landed_cutoff,
)


# -------------------------------------------------------------------------- card_risk_score


def active_cards_at(con: duckdb.DuckDBPyConnection, start: datetime, end: datetime) -> pl.DataFrame:
    """One row per (card, prediction time) for every midnight UTC in ``[start, end)``: the cards
    with a transaction in the 30 days before it (card_risk_score's examples and daily rows)."""
    _require(con, TRANSACTIONS)
    return read_frame(
        con,
        f"""
        with times as (
            select unnest(generate_series(?::timestamptz, ?::timestamptz - interval 1 microsecond,
                                          interval 1 day)) as prediction_time
        )
        select distinct t.card_id, p.prediction_time
        from times as p
        join {TRANSACTIONS} as t
          on t.transaction_time >= p.prediction_time - interval 30 day
         and t.transaction_time < p.prediction_time
        order by p.prediction_time, t.card_id
        """,
        [start, end],
    ).with_columns(as_utc("prediction_time"))


def _midnights(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """``[start, end)`` widened to whole days: prediction times are midnights."""
    first = _midnight(start.astimezone(UTC).date())
    if first < start:
        first += timedelta(days=1)
    return first, end


def card_risk_examples(
    con: duckdb.DuckDBPyConnection, start: datetime, end: datetime, cutoff: datetime
) -> pl.DataFrame:
    """Each active card at each midnight of ``[start, end)``, labelled 1 when one of its
    transactions in the next 7 days had a fraud label reported by ``cutoff`` (the label window
    starts strictly after the prediction time)."""
    _require(con, FRAUD_LABELS)
    examples = active_cards_at(con, *_midnights(start, end))
    frauds = read_frame(
        con,
        f"""
        with latest as ({_LATEST_LABELS})
        select t.card_id, t.transaction_time, l.reported_at
        from {TRANSACTIONS} as t join latest as l using (transaction_id)
        where l.is_fraud = 1 and t.transaction_time >= ? and t.transaction_time < ?
        """,
        [cutoff, start, end + RISK_HORIZON],
    ).with_columns(as_utc("transaction_time"), as_utc("reported_at"))
    matched = (
        examples.join(frauds, on="card_id", how="inner")
        .filter(
            (pl.col("transaction_time") >= pl.col("prediction_time"))
            & (pl.col("transaction_time") < pl.col("prediction_time") + RISK_HORIZON)
        )
        .group_by("card_id", "prediction_time")
        .agg(pl.col("reported_at").min().alias("label__first_report_at"))
    )
    return (
        examples.join(matched, on=["card_id", "prediction_time"], how="left")
        .with_columns(
            pl.col("label__first_report_at").is_not_null().cast(pl.Int8).alias("fraud_next_7d")
        )
        .sort("prediction_time", "card_id")
    )


CARD_RISK_LABEL = LabelSpec(
    column="fraud_next_7d",
    time_column="prediction_time",
    id_columns=("card_id",),
    request_columns=(),
    metadata_columns=("label__first_report_at",),
    horizon=RISK_HORIZON,
    rule=(
        "fraud_next_7d = 1 when a transaction of the card in [prediction_time, prediction_time "
        "+ 7 days) has, at the cutoff, a latest label that is fraud; examples are the cards with "
        "a transaction in the 30 days before each midnight"
    ),
    sources=(TRANSACTIONS, FRAUD_LABELS),
    build=card_risk_examples,
    first_day=first_transaction_day,
    default_cutoff=landed_cutoff,
)
