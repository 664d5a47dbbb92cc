"""Windowed per-card features, declared once as data.

``card_transaction_features`` has one row per card and transaction time: the state of the card
right after that transaction (``event_time`` = its ``transaction_time``). The trailing windows
are declared in :data:`CARD_WINDOW_FEATURES`, the last-value columns in
:data:`CARD_LAST_VALUE_FEATURES`.
Everything else is derived from these declarations:

- the output columns, dtypes and descriptions (:func:`card_window_feature_columns`), from which the
  feature group spec is built;
- the Polars batch path (:func:`build_card_transaction_features`);
- the per-event streaming update (:class:`CardWindowState`), which is also the slow reference the
  batch path is tested against;
- the incremental per-card state of the streaming pipeline
  (:class:`fti_assets.lib.streaming.state.CardWindows`), checked against the batch path too.

Semantics, shared by every implementation:

- A window ``w`` covers ``(event_time - w, event_time]``: the transaction itself is included, one
  exactly ``w`` earlier is not.
- Several transactions of a card at the same instant give ONE row (``(card_id, event_time)`` is
  unique): the state after all of them. Transactions are applied in ``(transaction_time,
  transaction_id)`` order, so the ``last_*`` columns are those of the largest ``transaction_id``
  and ``prev_tx_gap_seconds`` is 0 for a tie.
- ``prev_tx_gap_seconds`` is null when the card had no other transaction within :data:`LOOKBACK`
  (its first transaction, or one after a dormant spell). Bounding it by the lookback is what makes
  a build from ``start - LOOKBACK`` identical to a full build.
- Nulls in an aggregated column are skipped, as in SQL; ``count`` counts transactions.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise, takewhile
from typing import Any, NamedTuple

import polars as pl

from fti_assets.lib.ingest.domain import TRANSACTION_COLUMNS

logger = logging.getLogger(__name__)

AGGREGATIONS: tuple[str, ...] = ("count", "sum", "mean", "std", "max", "min")

CARD_ID = "card_id"
TRANSACTION_ID = "transaction_id"
TRANSACTION_TIME = "transaction_time"
EVENT_TIME = "event_time"
PREV_TX_GAP_SECONDS = "prev_tx_gap_seconds"

_ONE_MICROSECOND = timedelta(microseconds=1)
_POLARS_DTYPES: dict[str, pl.DataType] = {
    "int64": pl.Int64(),
    "float64": pl.Float64(),
    "string": pl.String(),
}


@dataclass(frozen=True)
class WindowFeature:
    """One trailing-window aggregate of a transaction column, per card."""

    name: str  # output column, e.g. "tx_count_1h"
    column: str  # input column, e.g. "amount" (ignored for count)
    agg: str  # one of AGGREGATIONS
    window: timedelta  # the window is (event_time - window, event_time]
    description: str

    def __post_init__(self) -> None:
        if self.agg not in AGGREGATIONS:
            raise ValueError(
                f"window feature {self.name!r}: agg {self.agg!r} is not one of {AGGREGATIONS}"
            )
        if self.window <= timedelta(0):
            raise ValueError(
                f"window feature {self.name!r}: window {self.window!r} must be positive"
            )
        if self.agg != "count" and TRANSACTION_COLUMNS.get(self.column) != "float64":
            raise ValueError(
                f"window feature {self.name!r}: column {self.column!r} must be a float64 "
                f"transaction column to take its {self.agg}"
            )

    @property
    def dtype(self) -> str:
        return "int64" if self.agg == "count" else "float64"

    @property
    def nullable(self) -> bool:
        # A window always holds its own transaction, and transaction values are never null (the
        # landing contract), so only std, which needs two values, can be missing.
        return self.agg == "std"


@dataclass(frozen=True)
class LastValueFeature:
    """A column of the card's latest transaction, e.g. ``last_amount``."""

    name: str
    column: str
    description: str

    def __post_init__(self) -> None:
        if self.column not in TRANSACTION_COLUMNS or self.column in (CARD_ID, TRANSACTION_TIME):
            raise ValueError(
                f"last-value feature {self.name!r}: column {self.column!r} is not a transaction "
                f"value column; expected one of {sorted(TRANSACTION_COLUMNS)}"
            )

    @property
    def dtype(self) -> str:
        return TRANSACTION_COLUMNS[self.column]


_HOUR = timedelta(hours=1)
_DAY = timedelta(days=1)

CARD_WINDOW_FEATURES: tuple[WindowFeature, ...] = (
    WindowFeature("tx_count_1h", "", "count", _HOUR, "Transactions in the trailing hour."),
    WindowFeature("tx_amount_1h", "amount", "sum", _HOUR, "Amount spent in the trailing hour."),
    WindowFeature("tx_count_24h", "", "count", 24 * _HOUR, "Transactions in the trailing 24 h."),
    WindowFeature(
        "tx_amount_24h", "amount", "sum", 24 * _HOUR, "Amount spent in the trailing 24 h."
    ),
    WindowFeature(
        "amount_max_24h", "amount", "max", 24 * _HOUR, "Largest amount in the trailing 24 h."
    ),
    WindowFeature("tx_count_7d", "", "count", 7 * _DAY, "Transactions in the trailing 7 days."),
    WindowFeature("tx_count_30d", "", "count", 30 * _DAY, "Transactions in the trailing 30 days."),
    WindowFeature(
        "amount_mean_30d", "amount", "mean", 30 * _DAY, "Mean amount over the trailing 30 days."
    ),
    WindowFeature(
        "amount_std_30d",
        "amount",
        "std",
        30 * _DAY,
        "Sample standard deviation of the amount over the trailing 30 days (null below 2).",
    ),
)

CARD_LAST_VALUE_FEATURES: tuple[LastValueFeature, ...] = (
    LastValueFeature("last_amount", "amount", "Amount of the card's latest transaction."),
    LastValueFeature("last_lat", "lat", "Latitude of the card's latest transaction."),
    LastValueFeature("last_lon", "lon", "Longitude of the card's latest transaction."),
    LastValueFeature("last_channel", "channel", "Channel of the card's latest transaction."),
    LastValueFeature("last_category", "category", "Category of the card's latest transaction."),
)

# How far back a row looks: a build for [start, end) needs transactions from start - LOOKBACK.
LOOKBACK: timedelta = max(f.window for f in CARD_WINDOW_FEATURES)


def _check_declaration() -> None:
    names = [f.name for f in CARD_WINDOW_FEATURES] + [PREV_TX_GAP_SECONDS]
    names += [f.name for f in CARD_LAST_VALUE_FEATURES]
    clashes = {n for n in names if names.count(n) > 1} | ({CARD_ID, EVENT_TIME} & set(names))
    if clashes:
        raise ValueError(
            f"card window features declare the column(s) {sorted(clashes)} twice or reuse a key"
        )


_check_declaration()


def _duration(value: timedelta) -> str:
    if value % _DAY:
        return str(value)
    return f"{value // _DAY} days"


def card_window_feature_columns() -> list[tuple[str, str, str]]:
    """(name, dtype, description) of every feature column, in output order."""
    return [
        *((f.name, f.dtype, f.description) for f in CARD_WINDOW_FEATURES),
        (
            PREV_TX_GAP_SECONDS,
            "float64",
            "Seconds between this transaction and the card's previous one (0 at the same "
            "instant); null when the card had no other transaction in the trailing "
            f"{_duration(LOOKBACK)}.",
        ),
        *((f.name, f.dtype, f.description) for f in CARD_LAST_VALUE_FEATURES),
    ]


def card_window_nullable_features() -> frozenset[str]:
    """Feature columns that may be null (the others never are for contract-valid input)."""
    return frozenset([f.name for f in CARD_WINDOW_FEATURES if f.nullable] + [PREV_TX_GAP_SECONDS])


def card_transaction_features_schema() -> pl.Schema:
    """Polars schema of the output: card_id, event_time, then the features in declaration order."""
    return pl.Schema(
        [
            (CARD_ID, pl.String()),
            (EVENT_TIME, pl.Datetime("us", "UTC")),
            *((name, _POLARS_DTYPES[dtype]) for name, dtype, _ in card_window_feature_columns()),
        ]
    )


def value_columns() -> list[str]:
    """Transaction columns the features read, besides the card, time and id (in a fixed order)."""
    columns = [f.column for f in CARD_WINDOW_FEATURES if f.agg != "count"]
    return list(dict.fromkeys(columns + [f.column for f in CARD_LAST_VALUE_FEATURES]))


def _input_columns() -> list[str]:
    return [CARD_ID, TRANSACTION_TIME, TRANSACTION_ID, *value_columns()]


# --------------------------------------------------------------------------------------------
# Polars batch path
# --------------------------------------------------------------------------------------------

# Cards are laid end to end on one Int64 key (microseconds), so that a plain ``rolling`` over
# the whole frame computes every card's windows in one pass. On 10M transactions this was 2.7x
# faster than ``rolling_*_by(...).over("card_id")``, 1.6x faster than ``rolling(group_by=...)``
# and 1.4x faster than ``rolling_*_by`` on the same key (benchmarks/bench_windows.py). The key
# stays below this bound; more cards than fit are processed in several chunks.
_MAX_KEY = 2**62
_KEY = "_card_time_key"


# Money columns are aggregated as exact integer cents. A float rolling sum adds and subtracts
# values as the window slides, so its last digits depend on where the computation started: a
# daily incremental build and a full refresh would differ. Integer sums do not.
CENTS_COLUMNS = frozenset({"amount"})


def _cents(column: str) -> str:
    return f"_{column}_cents"


def _window_agg(feature: WindowFeature) -> pl.Expr:
    if feature.agg == "count":
        return pl.len().cast(pl.Int64).alias(feature.name)
    if feature.column in CENTS_COLUMNS and feature.agg in ("sum", "mean", "std"):
        cents = pl.col(_cents(feature.column))
        n = pl.len().cast(pl.Float64)
        total = cents.sum().cast(pl.Float64)
        # Scale by multiplication, never by dividing by a literal (see _prev_gap_expr).
        if feature.agg == "sum":
            return (total * 0.01).alias(feature.name)
        if feature.agg == "mean":
            return (total / n * 0.01).alias(feature.name)
        squares = (cents * cents).sum().cast(pl.Float64)
        variance = (n * squares - total * total) / (n * (n - 1)) * 1e-4
        return pl.when(pl.len() > 1).then(variance.clip(lower_bound=0).sqrt()).alias(feature.name)
    return getattr(pl.col(feature.column), feature.agg)().alias(feature.name)


def _rolling_windows(keyed: pl.DataFrame) -> pl.DataFrame:
    """Window columns of rows whose _KEY is sorted and separates cards by > LOOKBACK."""
    lf = keyed.lazy()
    parts = []
    for window in dict.fromkeys(f.window for f in CARD_WINDOW_FEATURES):
        # closed="right" is the (t - w, t] window; ties at t are all inside it. Without
        # group_by, rolling returns one row per input row, in input order.
        rolling = lf.rolling(index_column=_KEY, period=f"{window // _ONE_MICROSECOND}i")
        aggs = [_window_agg(f) for f in CARD_WINDOW_FEATURES if f.window == window]
        parts.append(rolling.agg(aggs).drop(_KEY))
    names = [f.name for f in CARD_WINDOW_FEATURES]
    return pl.concat(parts, how="horizontal").select(names).collect()


def window_columns(sorted_transactions: pl.DataFrame) -> pl.DataFrame:
    """The window columns (in declaration order) of each row, one output row per input row.

    ``sorted_transactions`` must be sorted by (card_id, transaction_time); ties are not
    collapsed here (every row of a tie gets the values of the whole tie).
    """
    names = [f.name for f in CARD_WINDOW_FEATURES]
    if sorted_transactions.is_empty():
        return pl.DataFrame(schema={n: card_transaction_features_schema()[n] for n in names})
    micros = sorted_transactions[TRANSACTION_TIME].dt.epoch("us")
    since_first = micros - micros.min()
    stride = int(since_first.max()) + LOOKBACK // _ONE_MICROSECOND + 1
    if stride > _MAX_KEY:
        raise ValueError(
            f"transactions span {since_first.max()} microseconds; expected a span under "
            f"{_MAX_KEY - LOOKBACK // _ONE_MICROSECOND - 1}"
        )
    cards_per_chunk = _MAX_KEY // stride
    card = sorted_transactions[CARD_ID]
    rank = (card != card.shift(1)).fill_null(True).cast(pl.Int64).cum_sum() - 1
    value_columns = dict.fromkeys(f.column for f in CARD_WINDOW_FEATURES if f.agg != "count")
    keyed = sorted_transactions.select(
        *value_columns,
        *(
            (pl.col(c) * 100).round().cast(pl.Int64).alias(_cents(c))
            for c in value_columns
            if c in CENTS_COLUMNS
        ),
        ((rank % cards_per_chunk) * stride + since_first).alias(_KEY),
    )
    chunk = rank // cards_per_chunk
    bounds = chunk.search_sorted(pl.Series(range(int(chunk.max()) + 2)), side="left").to_list()
    parts = [_rolling_windows(keyed.slice(lo, hi - lo)) for lo, hi in pairwise(bounds)]
    return pl.concat(parts) if len(parts) > 1 else parts[0]


def _prev_gap_expr() -> pl.Expr:
    time, card = pl.col(TRANSACTION_TIME), pl.col(CARD_ID)
    # Rows are sorted by card, so the previous row is the card's previous transaction unless the
    # card changes there.
    gap = pl.when(card == card.shift(1)).then(time - time.shift(1))
    # Multiply, never divide by a literal: Polars divides a whole column by a scalar through its
    # reciprocal but folds a one-row frame to a true division, so "/ 1e6" could differ in the
    # last digit between a daily build and a full refresh. Multiplication is the same on both.
    seconds = gap.dt.total_microseconds().cast(pl.Float64) * 1e-6
    return pl.when(gap < LOOKBACK).then(seconds).alias(PREV_TX_GAP_SECONDS)


def _is_last_of_instant() -> pl.Expr:
    """True on the last row of each (card_id, transaction_time) in sorted order."""
    card, time = pl.col(CARD_ID), pl.col(TRANSACTION_TIME)
    return ((card != card.shift(-1)) | (time != time.shift(-1))).fill_null(True)


def _check_input_schema(schema: pl.Schema) -> None:
    missing = [c for c in _input_columns() if c not in schema]
    if missing:
        raise ValueError(
            f"transactions lack the column(s) {missing} needed for card window features; "
            f"got {list(schema)}"
        )
    dtype = schema[TRANSACTION_TIME]
    if not isinstance(dtype, pl.Datetime) or dtype.time_zone != "UTC":
        raise ValueError(
            f"transactions.{TRANSACTION_TIME} is {dtype}; expected a UTC Datetime "
            '(pl.Datetime("us", "UTC"))'
        )


def _check_bound(name: str, value: datetime | None) -> None:
    if value is not None and value.utcoffset() is None:
        raise ValueError(f"{name}={value!r} is naive; expected a timezone-aware (UTC) datetime")


def build_card_transaction_features(
    transactions: pl.LazyFrame | pl.DataFrame,
    start: datetime | None = None,
    end: datetime | None = None,
) -> pl.DataFrame:
    """The ``card_transaction_features`` rows with ``start <= event_time < end``.

    ``transactions`` must hold every transaction from ``start - LOOKBACK`` on (more history is
    allowed and ignored). The result is sorted by (card_id, event_time), one row per pair, with
    the columns of :func:`card_transaction_features_schema`.
    """
    _check_bound("start", start)
    _check_bound("end", end)
    if start is not None and end is not None and start >= end:
        raise ValueError(f"start={start} is not before end={end}")
    lf = transactions.lazy()
    _check_input_schema(lf.collect_schema())
    time = pl.col(TRANSACTION_TIME)
    # Window edges are exact in microseconds, the unit of the landing files and of Python.
    lf = lf.select(_input_columns()).with_columns(time.cast(pl.Datetime("us", "UTC")))
    # Rows older than start - LOOKBACK cannot reach a window, nor the bounded gap: prune them
    # before the sort (this also pushes down into a Parquet scan).
    if start is not None:
        lf = lf.filter(time > start - LOOKBACK)
    if end is not None:
        lf = lf.filter(time < end)
    rows = lf.sort(CARD_ID, TRANSACTION_TIME, TRANSACTION_ID).collect()
    out = (
        pl.concat([rows, window_columns(rows)], how="horizontal")
        .lazy()
        .with_columns(
            _prev_gap_expr(),
            *(pl.col(f.column).alias(f.name) for f in CARD_LAST_VALUE_FEATURES),
        )
        # The last row of a tie has seen all of it and is the largest transaction_id.
        .filter(_is_last_of_instant())
        .rename({TRANSACTION_TIME: EVENT_TIME})
    )
    if start is not None:
        out = out.filter(pl.col(EVENT_TIME) >= start)
    schema = card_transaction_features_schema()
    result = out.select(schema.names()).cast(dict(schema)).collect()
    logger.info("built %d card_transaction_features rows", result.height)
    return result


# --------------------------------------------------------------------------------------------
# Streaming: one transaction at a time (also the slow reference for the batch path)
# --------------------------------------------------------------------------------------------


class _Entry(NamedTuple):
    time: datetime
    transaction_id: str
    values: dict[str, Any]


def aggregate(agg: str, values: list[float]) -> float | None:
    """``agg`` of non-null ``values``, exactly (``math.fsum``); None where it is undefined."""
    if agg == "sum":
        return math.fsum(values)
    if not values:
        return None
    if agg == "max":
        return max(values)
    if agg == "min":
        return min(values)
    mean = math.fsum(values) / len(values)
    if agg == "mean":
        return mean
    if len(values) < 2:  # std: sample standard deviation
        return None
    return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))


class CardWindowState:
    """The window state of one card, updated one transaction at a time.

    Keeps the card's transactions of the last :data:`LOOKBACK` in a deque and computes each row
    from them exactly (``math.fsum``), so it serves both the per-event update of the online store
    and the reference the batch path is checked against.
    """

    def __init__(self, card_id: str) -> None:
        self.card_id = card_id
        self._entries: deque[_Entry] = deque()

    def update(self, transaction: Mapping[str, Any]) -> dict[str, Any]:
        """Apply one transaction; return the card's row (card_id, event_time, features) after it.

        Transactions must come in time order; at equal times any order is fine (the row is the
        same once the whole tie has been applied).
        """
        entry = _Entry(
            transaction[TRANSACTION_TIME],
            transaction[TRANSACTION_ID],
            {c: transaction[c] for c in value_columns()},
        )
        if entry.time.utcoffset() is None:
            raise ValueError(
                f"transaction {entry.transaction_id!r} has a naive time {entry.time!r}; "
                "expected a timezone-aware (UTC) datetime"
            )
        if transaction[CARD_ID] != self.card_id:
            raise ValueError(
                f"transaction {entry.transaction_id!r} is for card {transaction[CARD_ID]!r}, "
                f"not {self.card_id!r}"
            )
        if self._entries and entry.time < self._entries[-1].time:
            raise ValueError(
                f"transaction {entry.transaction_id!r} at {entry.time} is older than the card's "
                f"latest at {self._entries[-1].time}; expected time order"
            )
        self._insert(entry)
        return self.row()

    def _insert(self, entry: _Entry) -> None:
        # Keep (time, transaction_id) order inside a tie, so the last entry is the latest.
        tie: list[_Entry] = []
        while self._entries and (
            self._entries[-1].time == entry.time
            and self._entries[-1].transaction_id > entry.transaction_id
        ):
            tie.append(self._entries.pop())
        self._entries.append(entry)
        self._entries.extend(reversed(tie))
        horizon = entry.time - LOOKBACK
        while self._entries[0].time <= horizon:
            self._entries.popleft()

    def _since(self, horizon: datetime) -> list[_Entry]:
        """Entries later than ``horizon``, latest first."""
        return list(takewhile(lambda e: e.time > horizon, reversed(self._entries)))

    def row(self) -> dict[str, Any]:
        """The card's current feature row."""
        if not self._entries:
            raise ValueError(f"card {self.card_id!r} has no transaction yet")
        latest = self._entries[-1]
        row: dict[str, Any] = {CARD_ID: self.card_id, EVENT_TIME: latest.time}
        for feature in CARD_WINDOW_FEATURES:
            in_window = self._since(latest.time - feature.window)
            if feature.agg == "count":
                row[feature.name] = len(in_window)
            else:
                values = [e.values[feature.column] for e in in_window]
                row[feature.name] = aggregate(feature.agg, [v for v in values if v is not None])
        previous = self._entries[-2].time if len(self._entries) > 1 else None
        row[PREV_TX_GAP_SECONDS] = (
            None if previous is None else (latest.time - previous) / timedelta(seconds=1)
        )
        for feature in CARD_LAST_VALUE_FEATURES:
            row[feature.name] = latest.values[feature.column]
        return row


def stream_card_transaction_features(transactions: Iterable[Mapping[str, Any]]) -> pl.DataFrame:
    """Replay transactions through one :class:`CardWindowState` per card (slow, exact).

    Returns the same frame as :func:`build_card_transaction_features` without bounds: the row
    emitted after the last transaction of each (card_id, instant).
    """
    ordered = sorted(
        transactions, key=lambda t: (t[CARD_ID], t[TRANSACTION_TIME], t[TRANSACTION_ID])
    )
    states: dict[str, CardWindowState] = {}
    rows: dict[tuple[str, datetime], dict[str, Any]] = {}
    for transaction in ordered:
        card = transaction[CARD_ID]
        state = states.get(card)
        if state is None:
            state = states[card] = CardWindowState(card)
        row = state.update(transaction)
        rows[(card, row[EVENT_TIME])] = row
    return pl.DataFrame(list(rows.values()), schema=card_transaction_features_schema())
