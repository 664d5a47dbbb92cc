"""Bootstrap: each card's window state from the offline store, so no replay from the beginning.

The streaming pipeline starts from the trailing
:data:`~fti_assets.lib.features.windows.LOOKBACK` (30 days) of ``raw_transactions``, ending at
its newest transaction: everything a window can still reach. Events in the log that are also in
the offline store (same card and transaction id) are then duplicates and change nothing.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import duckdb

from fti_assets.lib.features.windows import CARD_ID, LOOKBACK, TRANSACTION_ID, TRANSACTION_TIME
from fti_assets.lib.store.offline import quote_ident, read_frame
from fti_assets.lib.streaming.events import VALUE_COLUMNS, Transaction

logger = logging.getLogger(__name__)

RAW_TRANSACTIONS = "raw_transactions"


def bootstrap_transactions(
    con: duckdb.DuckDBPyConnection, lookback: timedelta = LOOKBACK
) -> list[Transaction]:
    """The transactions of the last ``lookback`` of ``raw_transactions`` (by card, then time)."""
    if lookback <= timedelta(0):
        raise ValueError(f"lookback {lookback} must be positive")
    table, time = quote_ident(RAW_TRANSACTIONS), quote_ident(TRANSACTION_TIME)
    columns = ", ".join(
        quote_ident(c) for c in (CARD_ID, TRANSACTION_ID, TRANSACTION_TIME, *VALUE_COLUMNS)
    )
    try:
        frame = read_frame(
            con,
            f"select {columns} from {table} where {time} > (select max({time}) from {table}) - ?",
            [lookback],
        )
    except duckdb.CatalogException as exc:
        raise LookupError(
            f"the offline store has no {RAW_TRANSACTIONS} table to bootstrap the card windows "
            "from; materialize it first (make demo) or start without history (--no-bootstrap)"
        ) from exc
    times = frame[TRANSACTION_TIME].dt.epoch("us")
    values = frame.select(VALUE_COLUMNS).rows()
    transactions = [
        Transaction(tx, card, at, row)
        for card, tx, at, row in zip(
            frame[CARD_ID].to_list(),
            frame[TRANSACTION_ID].to_list(),
            times.to_list(),
            values,
            strict=True,
        )
    ]
    if transactions:
        logger.info(
            "bootstrap: %d transactions of %d cards from %s (%s up to %s)",
            len(transactions),
            frame[CARD_ID].n_unique(),
            RAW_TRANSACTIONS,
            lookback,
            frame[TRANSACTION_TIME].max(),
        )
    return transactions
