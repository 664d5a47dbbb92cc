"""The streaming pipeline end to end in process: event log -> window state -> online store.

Runs against both backends (a SQLite online store + SQLite event log, and both on a real
redis-server): the checkpoint lives in the online store, so each backend has its own commit.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import orjson
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from fti_assets.lib.core.store_urls import sqlite_url
from fti_assets.lib.features.groups import CARD_TRANSACTION_FEATURES
from fti_assets.lib.features.windows import build_card_transaction_features
from fti_assets.lib.store.online import (
    OnlineStoreBackend,
    OnlineStoreError,
    StreamFencedError,
    open_online_store,
)
from fti_assets.lib.streaming.bootstrap import bootstrap_transactions
from fti_assets.lib.streaming.event_log import EventLog, open_event_log
from fti_assets.lib.streaming.events import encode_transaction
from fti_assets.lib.streaming.processor import StreamConfig, StreamProcessor
from fti_assets.lib.synthetic.generator import GeneratorConfig, generate

GROUP = CARD_TRANSACTION_FEATURES.name
T0 = datetime(2026, 9, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> pl.DataFrame:
    """Two weeks of a generated world's transactions, in log (time) order."""
    data_dir = tmp_path_factory.mktemp("processor-world")
    generate(GeneratorConfig(cards=150, merchants=20, days=14, start=date(2026, 9, 1)), data_dir)
    files = sorted((data_dir / "landing" / "transactions").glob("*.parquet"))
    return pl.concat([pl.read_parquet(f) for f in files]).sort("transaction_time", "transaction_id")


@pytest.fixture
def log(stream_urls: tuple[str, str]) -> Iterator[EventLog]:
    with open_event_log(stream_urls[1]) as opened:
        yield opened


@pytest.fixture
def store(stream_urls: tuple[str, str]) -> Iterator[OnlineStoreBackend]:
    with open_online_store(stream_urls[0]) as opened:
        yield opened


def payloads(frame: pl.DataFrame) -> list[bytes]:
    return [encode_transaction(row) for row in frame.iter_rows(named=True)]


def latest_batch_rows(frame: pl.DataFrame) -> pl.DataFrame:
    """What the online store must hold: the batch path's newest row per card."""
    rows = build_card_transaction_features(frame)
    return rows.group_by("card_id").last().sort("card_id")


def online_rows(store: OnlineStoreBackend) -> pl.DataFrame:
    return store.latest(GROUP).sort("card_id")


def run_to_end(processor: StreamProcessor) -> None:
    processor.run(lambda: False, until_caught_up=True)


def test_the_online_store_ends_with_the_batch_rows(
    world: pl.DataFrame, log: EventLog, store: OnlineStoreBackend
) -> None:
    log.append(payloads(world))
    processor = StreamProcessor(log, store, StreamConfig(max_batch=500))
    processor.start()

    run_to_end(processor)

    assert_frame_equal(online_rows(store), latest_batch_rows(world))
    checkpoint = store.stream_checkpoint("card_transaction_features")
    assert checkpoint.offset == world.height == log.end_offset()
    assert checkpoint.counters == {
        "events": world.height,
        "applied": world.height,
        "duplicates": 0,
        "late": 0,
        "invalid": 0,
    }
    (group,) = store.groups()
    assert group["row_count"] == world["card_id"].n_unique()
    assert group["max_event_time"] == world["transaction_time"].max()


def event(tx_id: str, card: str, at: datetime, amount: float = 10.0) -> dict:
    return {
        "transaction_id": tx_id,
        "card_id": card,
        "merchant_id": "m1",
        "amount": amount,
        "category": "grocery",
        "channel": "online",
        "transaction_time": at,
        "lat": 1.0,
        "lon": 2.0,
    }


def test_duplicate_late_and_invalid_events_are_counted_and_never_dropped_silently(
    log: EventLog, store: OnlineStoreBackend
) -> None:
    good = [
        event("t1", "c1", T0, 10.0),
        event("t2", "c1", T0 + timedelta(minutes=30), 20.0),
    ]
    log.append([encode_transaction(e) for e in good])
    log.append(
        [
            encode_transaction(good[0]),  # a duplicate
            encode_transaction(event("t0", "c1", T0 - timedelta(hours=2), 99.0)),  # late
            encode_transaction(event("t3", "c1", T0 + timedelta(minutes=25), 5.0)),  # in time
            b"{not json",
            orjson.dumps({**event("t4", "c2", T0), "transaction_time": "2026-09-01T10:00:00"}),
        ]
    )
    processor = StreamProcessor(log, store, StreamConfig(lateness=timedelta(hours=1)))
    processor.start()

    run_to_end(processor)

    assert processor.counters == {
        "events": 7,
        "applied": 3,
        "duplicates": 1,
        "late": 1,
        "invalid": 2,
    }
    letters = store.dead_letters("card_transaction_features")
    assert [(d.offset, d.entity, d.event_id) for d in letters] == [
        (4, "c1", "t0"),
        (6, None, None),
        (7, "c2", "t4"),
    ]
    assert letters[0].reason.startswith("late: transaction 't0'")
    assert "payload is not JSON" in letters[1].reason and letters[1].payload == b"{not json"
    assert "transaction_time='2026-09-01T10:00:00'" in letters[2].reason
    row = store.get(GROUP, "c1")
    assert (row.event_time, row.features["tx_count_1h"], row.features["tx_amount_1h"]) == (
        T0 + timedelta(minutes=30),
        3,
        35.0,
    )


def test_a_crash_before_a_commit_applies_no_event_twice(
    world: pl.DataFrame,
    stream_urls: tuple[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    online_url, log_url = stream_urls
    with open_event_log(log_url) as log:
        log.append(payloads(world))
    config = StreamConfig(max_batch=300, lateness=timedelta(minutes=5))
    with open_event_log(log_url) as log, open_online_store(online_url) as store:
        first = StreamProcessor(log, store, config)
        first.start()
        for _ in range(5):
            first.step(0.0)
        calls = []

        def fail_on_second_call(commit: object) -> None:
            calls.append(commit)
            if len(calls) == 2:
                raise OnlineStoreError("disk full (injected)")
            type(store).commit_stream(store, commit)

        monkeypatch.setattr(store, "commit_stream", fail_on_second_call)
        first.step(0.0)
        with pytest.raises(OnlineStoreError, match="injected"):
            first.step(0.0)
        with pytest.raises(RuntimeError, match="restart the pipeline"):
            first.step(0.0)
    with open_event_log(log_url) as log, open_online_store(online_url) as store:
        second = StreamProcessor(log, store, config)
        assert second.start().offset == 6 * 300
        run_to_end(second)
        resumed = (online_rows(store), store.stream_checkpoint(config.consumer).counters)
    # The same log, uninterrupted, into a fresh SQLite store.
    with (
        open_event_log(log_url) as log,
        open_online_store(sqlite_url(tmp_path / "fresh.sqlite")) as fresh,
    ):
        uninterrupted = StreamProcessor(log, fresh, config)
        uninterrupted.start()
        run_to_end(uninterrupted)
        expected = (online_rows(fresh), fresh.stream_checkpoint(config.consumer).counters)

    assert_frame_equal(resumed[0], expected[0])
    assert resumed[1] == expected[1]
    assert expected[1]["applied"] == world.height


def test_a_second_instance_of_the_same_consumer_is_fenced(
    world: pl.DataFrame, log: EventLog, store: OnlineStoreBackend
) -> None:
    log.append(payloads(world.head(100)))
    a, b = StreamProcessor(log, store), StreamProcessor(log, store)
    a.start()
    b.start()
    a.step(0.0)

    with pytest.raises(StreamFencedError, match="another consumer with the same name"):
        b.step(0.0)
    assert store.stream_checkpoint("card_transaction_features").counters["applied"] == 100
    other = StreamProcessor(log, store, StreamConfig(consumer="other"))
    other.start()
    assert other.step(0.0).counts["applied"] == 100  # another name: its own checkpoint


def test_bootstrap_from_the_offline_store_continues_the_windows(
    world: pl.DataFrame, log: EventLog, store: OnlineStoreBackend, tmp_path: Path
) -> None:
    cut = T0 + timedelta(days=10)
    offline, live = (
        world.filter(pl.col("transaction_time") < cut),
        world.filter(pl.col("transaction_time") >= cut - timedelta(hours=1)),
    )
    con = duckdb.connect(str(tmp_path / "offline.duckdb"))
    con.execute("set TimeZone = 'UTC'")
    arrow = offline.to_arrow()  # noqa: F841 - read by name in the SQL below
    con.execute("create table raw_transactions as select * from arrow")
    history = bootstrap_transactions(con)
    last_3_days = bootstrap_transactions(con, timedelta(days=3))
    con.close()
    log.append(payloads(live))  # the last hour before the cut is in both
    processor = StreamProcessor(log, store, StreamConfig(lateness=timedelta(0)))
    processor.start(history)

    run_to_end(processor)

    overlap = live.filter(pl.col("transaction_time") < cut).height
    assert processor.counters["duplicates"] == overlap > 0
    assert processor.counters["applied"] == live.height - overlap
    # With the offline history, the streamed rows are those of a batch build over everything.
    expected = latest_batch_rows(world).filter(pl.col("card_id").is_in(live["card_id"].implode()))
    assert_frame_equal(online_rows(store), expected)
    assert len(history) == offline.height
    newest = offline["transaction_time"].max()
    assert sorted(t.transaction_id for t in last_3_days) == sorted(
        offline.filter(pl.col("transaction_time") > newest - timedelta(days=3))["transaction_id"]
    )


def test_bootstrap_without_raw_transactions_says_what_to_do(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "empty.duckdb"))
    with pytest.raises(LookupError, match="no raw_transactions table.*make demo.*--no-bootstrap"):
        bootstrap_transactions(con)
    con.close()


def test_batch_and_streaming_writes_never_move_a_row_back_in_time(
    log: EventLog, store: OnlineStoreBackend
) -> None:
    log.append([encode_transaction(event("t1", "c1", T0 + timedelta(hours=5), 50.0))])
    processor = StreamProcessor(log, store)
    processor.start()
    run_to_end(processor)
    older = build_card_transaction_features(
        pl.DataFrame([event("t0", "c1", T0, 1.0), event("t0", "c2", T0, 2.0)]).with_columns(
            pl.col("transaction_time").cast(pl.Datetime("us", "UTC"))
        )
    )

    result = store.write_group(CARD_TRANSACTION_FEATURES, older)

    assert (result.entities_written, result.entities_skipped_older) == (1, 1)
    assert store.get(GROUP, "c1").features["last_amount"] == 50.0  # the streamed row stays
    assert store.get(GROUP, "c2").features["last_amount"] == 2.0
    # A stream row older than what the batch wrote is not written either.
    newer = older.with_columns(pl.col("event_time") + timedelta(days=1))
    store.write_group(CARD_TRANSACTION_FEATURES, newer.filter(pl.col("card_id") == "c1"))
    log.append([encode_transaction(event("t2", "c1", T0 + timedelta(hours=6), 70.0))])
    run_to_end(processor)
    assert store.get(GROUP, "c1").event_time == T0 + timedelta(days=1)
    assert processor.counters["applied"] == 2


def test_an_idle_pipeline_records_that_it_lives(log: EventLog, store: OnlineStoreBackend) -> None:
    processor = StreamProcessor(log, store, StreamConfig(heartbeat_s=1e-6))
    processor.start()
    assert processor.checkpoint() is None

    assert processor.step(0.0) is None

    checkpoint = processor.checkpoint()
    assert (checkpoint.offset, checkpoint.counters["events"]) == (0, 0)
    assert checkpoint.updated_at > datetime.now(UTC) - timedelta(minutes=1)
