"""Exactly once across crashes: ``fti stream`` killed with SIGKILL mid-stream, many times.

The log holds tens of thousands of events with out-of-order ones (within the lateness), late
ones, duplicates and invalid payloads. ``fti stream`` runs as users start it, is killed with
SIGKILL at a random moment once it has committed progress (possibly inside a commit), and is
restarted, again and again; a last ``fti stream --once`` finishes the log. The online store must
then hold exactly what one uninterrupted run produces: the same rows, counters, dead letters and
offset. Runs on both backends (SQLite files; online store + event log on a real redis-server).
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from polars.testing import assert_frame_equal

from fti_assets.lib.core.settings import PROJECT_ROOT
from fti_assets.lib.core.store_urls import sqlite_url
from fti_assets.lib.features.groups import CARD_TRANSACTION_FEATURES
from fti_assets.lib.store.online import OnlineStoreBackend, open_online_store
from fti_assets.lib.streaming.event_log import open_event_log
from fti_assets.lib.streaming.processor import StreamConfig, StreamProcessor
from tests.processes import fti_env

pytestmark = [pytest.mark.slow]

CONSUMER = "card_transaction_features"
EVENTS = 40_000
KILLS = 12
BATCH = 50
LATENESS = timedelta(minutes=10)
T0 = datetime(2026, 9, 1, tzinfo=UTC)


def event_payloads(seed: int = 5) -> list[bytes]:
    """Transactions of 500 cards in roughly time order, with every kind of awkward event."""
    rng = random.Random(seed)
    keyed: list[tuple[float, bytes]] = []
    for i in range(EVENTS):
        at = T0 + timedelta(seconds=i * 20 + rng.randrange(20))
        position = at.timestamp()
        roll = rng.random()
        if roll < 0.05:
            position += rng.uniform(0, 0.9 * LATENESS.total_seconds())  # out of order, in time
        elif roll < 0.06:
            position += 2 * LATENESS.total_seconds()  # late: dead letter
        payload = orjson.dumps(
            {
                "transaction_id": f"tx{i:06d}",
                "card_id": f"c{rng.randrange(500):03d}",
                "merchant_id": "m1",
                "amount": round(rng.lognormvariate(3.5, 1.0), 2),
                "category": rng.choice(["grocery", "travel", "gas"]),
                "channel": rng.choice(["online", "in_store"]),
                "transaction_time": at.isoformat(),
                "lat": rng.uniform(-60, 60),
                "lon": rng.uniform(-170, 170),
            }
        )
        keyed.append((position, payload))
        if rng.random() < 0.01:
            keyed.append((position + rng.uniform(1, 300), payload))  # delivered twice
        if rng.random() < 0.002:
            keyed.append((position, b'{"transaction_id": "broken"'))
    keyed.sort(key=lambda pair: pair[0])
    return [payload for _, payload in keyed]


def state_of(store: OnlineStoreBackend) -> tuple:
    checkpoint = store.stream_checkpoint(CONSUMER)
    letters = [
        (d.offset, d.entity, d.event_id, d.reason, d.payload) for d in store.dead_letters(CONSUMER)
    ]
    rows = store.latest(CARD_TRANSACTION_FEATURES.name).sort("card_id")
    return rows, checkpoint.offset, checkpoint.counters, letters


def _offset(online_url: str) -> int:
    with open_online_store(online_url) as store:
        checkpoint = store.stream_checkpoint(CONSUMER)
    return 0 if checkpoint is None else checkpoint.offset


def _stream(env: dict[str, str], *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "fti_assets.cli", "stream", "--no-bootstrap"]
    command += ["--batch-size", str(BATCH), "--lateness-s", str(LATENESS.total_seconds())]
    return subprocess.Popen(
        [*command, *extra],
        env=env,
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _wait_for_progress(process: subprocess.Popen, online_url: str, after: int) -> int:
    """Until the process has committed past ``after`` (or finished the log); the new offset."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        offset = _offset(online_url)
        if offset > after:
            return offset
        if process.poll() is not None:
            raise AssertionError(f"fti stream exited with {process.returncode}: {process.stderr}")
        time.sleep(0.005)
    raise AssertionError(f"fti stream made no progress past offset {after} in 120 s")


def test_sigkill_mid_stream_many_times_ends_in_the_uninterrupted_state(
    stream_urls: tuple[str, str], tmp_path: Path
) -> None:
    online_url, log_url = stream_urls
    payloads = event_payloads()
    with open_event_log(log_url) as log:
        log.append(payloads)
    config = StreamConfig(max_batch=BATCH, lateness=LATENESS)
    with (
        open_event_log(log_url) as log,
        open_online_store(sqlite_url(tmp_path / "reference.sqlite")) as reference,
    ):
        uninterrupted = StreamProcessor(log, reference, config)
        uninterrupted.start()
        uninterrupted.run(lambda: False, until_caught_up=True)
        expected = state_of(reference)
    env = fti_env(
        FTI_DATA_DIR=str(tmp_path / "data"), FTI_ONLINE_URL=online_url, FTI_EVENT_LOG_URL=log_url
    )
    rng = random.Random(11)
    offset, killed_at = 0, []
    # Each run is killed once it has committed past a random number of further events (at most
    # a third of an even share), after a random pause of up to 20 ms: kills land anywhere, inside
    # a commit too, and the log lasts for every kill however fast the pipeline is (a kill at a
    # random time of up to 0.4 s let a faster pipeline finish the log after 6 of 12 kills).
    step = len(payloads) // (3 * KILLS)
    while len(killed_at) < KILLS and offset < len(payloads):
        process = _stream(env)
        _wait_for_progress(
            process, online_url, min(offset + rng.randrange(step), len(payloads) - 1)
        )
        time.sleep(rng.uniform(0, 0.02))
        process.send_signal(signal.SIGKILL)
        process.wait()
        offset = _offset(online_url)
        killed_at.append(offset)
    finisher = _stream(env, "--once")
    _, errors = finisher.communicate(timeout=300)
    assert finisher.returncode == 0, errors.decode()
    with open_online_store(online_url) as store:
        got = state_of(store)

    mid_stream = [o for o in killed_at if 0 < o < len(payloads)]
    assert len(mid_stream) >= KILLS // 2, killed_at  # really killed in the middle, many times
    assert_frame_equal(got[0], expected[0])
    assert got[1:] == expected[1:]
    counters = expected[2]
    assert counters["events"] == len(payloads) == got[1]
    assert min(counters["duplicates"], counters["late"], counters["invalid"]) > 0
