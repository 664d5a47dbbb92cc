"""The streaming window state against the Polars batch output: one definition, two executions.

Replay parity: transactions fed one at a time through :class:`CardStates`, in the order a log
would deliver them, give after every event the row the batch path builds for that card and
instant. Tolerance: none. Every value must be equal, floats to the last bit (same type, same
value; null where the batch has null): both paths sum money as integer cents and turn the sums
into floats with the same operations, so there is no rounding difference to tolerate.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest

from fti_assets.lib.features.windows import LOOKBACK, build_card_transaction_features
from fti_assets.lib.streaming.events import VALUE_COLUMNS, Transaction, to_us
from fti_assets.lib.streaming.state import (
    APPLIED,
    DUPLICATE,
    LATE,
    CardStates,
    CardWindows,
)
from fti_assets.lib.synthetic.generator import GeneratorConfig, generate
from tests.unit.test_windows import random_transactions

T0 = datetime(2026, 9, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


def as_transactions(frame: pl.DataFrame) -> list[Transaction]:
    return [
        Transaction(
            row["transaction_id"],
            row["card_id"],
            to_us(row["transaction_time"]),
            tuple(row[c] for c in VALUE_COLUMNS),
        )
        for row in frame.iter_rows(named=True)
    ]


def log_order(transactions: list[Transaction]) -> list[Transaction]:
    """Time order across cards, as the service would log them (ties by transaction id)."""
    return sorted(transactions, key=lambda t: (t.time_us, t.transaction_id))


def replay(transactions: list[Transaction], lateness: timedelta = timedelta(0)) -> dict:
    """Every row the stream emits: (card, event_time) -> the row after the last event there."""
    states = CardStates(lateness)
    rows = {}
    for tx in transactions:
        outcome, reason = states.apply(tx)
        assert outcome == APPLIED, reason
        row = states.row(tx.card_id)
        rows[(row["card_id"], row["event_time"])] = row
    return rows


def mismatches(batch: pl.DataFrame, streamed: dict) -> list[str]:
    """Every (row, column) where the stream differs from the batch."""
    problems = []
    if len(streamed) != batch.height:
        problems.append(f"{len(streamed)} streamed rows vs {batch.height} batch rows")
    for expected in batch.iter_rows(named=True):
        got = streamed.get((expected["card_id"], expected["event_time"]))
        if got is None:
            problems.append(f"missing row {expected['card_id']} at {expected['event_time']}")
            continue
        for column, want in expected.items():
            if type(got[column]) is not type(want) or got[column] != want:
                problems.append(
                    f"{expected['card_id']} at {expected['event_time']}: {column} "
                    f"streamed {got[column]!r}, batch {want!r}"
                )
    return problems


@pytest.mark.parametrize("seed", range(6))
def test_replay_of_edge_case_histories_matches_the_batch_rows(seed: int) -> None:
    frame = random_transactions(seed, n_cards=8, per_card=120)
    batch = build_card_transaction_features(frame)

    streamed = replay(log_order(as_transactions(frame)))

    assert mismatches(batch, streamed) == []
    assert batch.height > 100


@pytest.fixture(scope="module")
def world_transactions(tmp_path_factory: pytest.TempPathFactory) -> pl.DataFrame:
    """Three weeks of a generated world's transactions (300 cards, fraud bursts included)."""
    data_dir = tmp_path_factory.mktemp("stream-world")
    generate(GeneratorConfig(cards=300, merchants=30, days=21, start=date(2026, 9, 1)), data_dir)
    files = sorted((data_dir / "landing" / "transactions").glob("*.parquet"))
    return pl.concat([pl.read_parquet(f) for f in files])


def test_replay_of_days_of_a_generated_world_matches_the_batch_rows(
    world_transactions: pl.DataFrame,
) -> None:
    batch = build_card_transaction_features(world_transactions)

    streamed = replay(log_order(as_transactions(world_transactions)))

    assert mismatches(batch, streamed) == []
    assert batch.height == world_transactions.height > 5_000
    assert batch["tx_count_1h"].max() > 1  # bursts: the short windows hold several


def test_out_of_order_events_within_the_lateness_give_the_in_order_state(
    world_transactions: pl.DataFrame,
) -> None:
    lateness = timedelta(minutes=30)
    in_order = log_order(as_transactions(world_transactions))
    # Delay about one event in five by up to the lateness: the log no longer has time order.
    rng = random.Random(3)
    lateness_us = lateness // timedelta(microseconds=1)
    shuffled = sorted(
        in_order,
        key=lambda t: t.time_us + (rng.randrange(lateness_us) if rng.random() < 0.2 else 0),
    )
    states = CardStates(lateness)
    outcomes = [states.apply(tx)[0] for tx in shuffled]
    reference = CardStates(lateness)
    for tx in in_order:
        reference.apply(tx)

    assert outcomes.count(APPLIED) == len(shuffled)
    assert shuffled != in_order
    for card in reference.cards:
        assert states.row(card) == reference.row(card), card


def test_a_late_event_is_refused_with_its_reason_and_changes_nothing() -> None:
    states = CardStates(timedelta(minutes=10))
    states.apply(Transaction("t1", "c1", to_us(T0), (10.0, 1.0, 2.0, "online", "gas")))
    before = states.row("c1")

    outcome, reason = states.apply(
        Transaction(
            "t0", "c1", to_us(T0 - timedelta(minutes=11)), (99.0, 1.0, 2.0, "online", "gas")
        )
    )

    assert outcome == LATE
    assert "'t0'" in reason and "0:11:00 older" in reason and "allowed lateness 0:10:00" in reason
    assert states.row("c1") == before
    # Within the lateness it is applied, at its place in time: the row stays at the latest.
    outcome, _ = states.apply(
        Transaction("t2", "c1", to_us(T0 - timedelta(minutes=9)), (5.0, 1.0, 2.0, "online", "gas"))
    )
    assert outcome == APPLIED
    row = states.row("c1")
    assert (row["event_time"], row["tx_count_1h"], row["tx_amount_1h"]) == (T0, 2, 15.0)
    assert row["last_amount"] == 10.0 and row["prev_tx_gap_seconds"] == 540.0


def test_a_duplicate_transaction_id_is_applied_once() -> None:
    states = CardStates(timedelta(minutes=10))
    tx = Transaction("t1", "c1", to_us(T0), (10.0, 1.0, 2.0, "online", "gas"))
    assert states.apply(tx) == (APPLIED, None)
    later = Transaction("t2", "c1", to_us(T0 + HOUR), (20.0, 1.0, 2.0, "online", "gas"))
    states.apply(later)
    before = states.row("c1")

    assert states.apply(tx) == (DUPLICATE, None)
    assert states.apply(later) == (DUPLICATE, None)
    assert states.row("c1") == before
    assert before["tx_count_24h"] == 2


def test_old_entries_are_dropped_and_reported_for_trimming() -> None:
    card = CardWindows("c1")
    trims = []
    for i in range(200):  # one transaction every 12 hours: 100 days
        at = T0 + i * 12 * HOUR
        dropped = card.add(Transaction(f"t{i:03d}", "c1", to_us(at), (1.0, 0.0, 0.0, "a", "b")))
        if dropped is not None:
            trims.append(dropped)

    assert len(card.entries) <= 60 + 16  # the 30-day window holds 60, plus the pruning slack
    assert trims and trims == sorted(trims)
    assert all(
        to_us(T0 + 199 * 12 * HOUR) - t >= LOOKBACK // timedelta(microseconds=1) for t in trims
    )
    assert card.row()["tx_count_30d"] == 60


def test_state_restored_from_entries_continues_like_the_uninterrupted_one(
    world_transactions: pl.DataFrame,
) -> None:
    events = log_order(as_transactions(world_transactions))
    cut = len(events) // 2
    uninterrupted = CardStates(timedelta(minutes=5))
    for tx in events:
        uninterrupted.apply(tx)
    first = CardStates(timedelta(minutes=5))
    for tx in events[:cut]:
        first.apply(tx)
    kept = [
        Transaction(e.transaction_id, card.card_id, e.time_us, e.values)
        for card in first.cards.values()
        for e in card.entries
    ]

    restored = CardStates(timedelta(minutes=5))
    restored.restore(kept)
    outcomes = [restored.apply(tx)[0] for tx in events[cut - 50 :]]

    assert outcomes[:50] == [DUPLICATE] * 50  # the last applied events, delivered again
    assert {c: restored.row(c) for c in uninterrupted.cards} == {
        c: uninterrupted.row(c) for c in uninterrupted.cards
    }


def test_lateness_beyond_the_largest_window_is_refused() -> None:
    with pytest.raises(ValueError, match="lateness 31 days.*30 days"):
        CardStates(timedelta(days=31))
