"""The event log, on both backends (a SQLite file and a real redis-server): durable, ordered,
numbered 1, 2, 3, ... whoever appends."""

from __future__ import annotations

import multiprocessing as mp
import threading
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from fti_assets.lib.core.store_urls import sqlite_url
from fti_assets.lib.streaming.event_log import (
    EventLog,
    EventLogUnavailableError,
    open_event_log,
)

SPAWN = mp.get_context("spawn")


@pytest.fixture
def log(event_log_url: str) -> EventLog:
    opened = open_event_log(event_log_url)
    yield opened
    opened.close()


def test_offsets_start_at_one_and_events_come_back_in_order(log: EventLog) -> None:
    assert log.end_offset() == 0
    assert log.read(0, 10) == []

    first = log.append([b'{"a": 1}', b"\x00\xffnot json"])
    second = log.append([b"third"])

    assert (first, second) == ([1, 2], [3])
    events = log.read(0, 10)
    assert [(e.offset, e.payload) for e in events] == [
        (1, b'{"a": 1}'),
        (2, b"\x00\xffnot json"),
        (3, b"third"),
    ]
    assert events[0].logged_at_us == events[1].logged_at_us <= events[2].logged_at_us
    assert [e.offset for e in log.read(1, 1)] == [2]
    assert log.read(3, 10) == []
    assert log.end_offset() == 3


def test_a_waiting_reader_gets_the_event_appended_meanwhile(log: EventLog) -> None:
    log.append([b"one"])
    appended = threading.Event()

    def append_soon() -> None:
        appended.wait(10)
        log.append([b"two"])

    writer = threading.Thread(target=append_soon)
    writer.start()
    appended.set()
    events = log.read(1, 10, wait_s=30.0)
    writer.join()

    assert [(e.offset, e.payload) for e in events] == [(2, b"two")]


def test_bad_read_arguments_are_refused(log: EventLog) -> None:
    with pytest.raises(ValueError, match="limit=0"):
        log.read(0, 0)
    with pytest.raises(ValueError, match="after=-1"):
        log.read(-1, 5)


def append_in_child(url: str, worker: int, count: int) -> list[int]:
    with open_event_log(url) as child_log:
        return [child_log.append([f"{worker}:{i}".encode()])[0] for i in range(count)]


def test_appends_from_many_processes_get_unique_ordered_offsets(event_log_url: str) -> None:
    workers, per_worker = 4, 150
    with ProcessPoolExecutor(max_workers=workers, mp_context=SPAWN) as pool:
        futures = [
            pool.submit(append_in_child, event_log_url, w, per_worker) for w in range(workers)
        ]
        offsets = [f.result(timeout=120) for f in futures]

    with open_event_log(event_log_url, readonly=True) as reader:
        events = reader.read(0, 10_000)
    assert sorted(o for worker in offsets for o in worker) == list(range(1, 601))
    assert [e.offset for e in events] == list(range(1, 601))
    for worker, given in enumerate(offsets):
        assert given == sorted(given)  # each appender's events in its own order
        mine = [e.payload for e in events if e.payload.startswith(f"{worker}:".encode())]
        assert mine == [f"{worker}:{i}".encode() for i in range(per_worker)]


def test_a_readonly_log_refuses_appends(event_log_url: str) -> None:
    with open_event_log(event_log_url) as writer:
        writer.append([b"x"])
    with open_event_log(event_log_url, readonly=True) as reader:
        with pytest.raises(PermissionError, match="read-only"):
            reader.append([b"y"])
        assert reader.end_offset() == 1


def test_a_missing_sqlite_log_is_unavailable_to_a_reader(tmp_path: Path) -> None:
    with pytest.raises(EventLogUnavailableError, match="events.sqlite does not exist"):
        open_event_log(sqlite_url(tmp_path / "events.sqlite"), readonly=True)


def test_an_unreachable_redis_log_is_unavailable() -> None:
    with pytest.raises(EventLogUnavailableError, match="127.0.0.1:1"):
        open_event_log("redis://127.0.0.1:1/0")


def test_event_log_urls_are_checked() -> None:
    with pytest.raises(ValueError, match="FTI_EVENT_LOG_URL='kafka://broker'"):
        open_event_log("kafka://broker")
