"""The service and the streaming pipeline together: a card's next request sees its previous one.

The service appends every scored transaction to the event log before answering; the pipeline
applies it to the card's windows; the card's next request reads the fresh row. Both backends
(SQLite files, and online store + event log on a real redis-server) in process, and the default
backend with the real processes users start (``fti serve``-style uvicorn and ``fti stream``).
"""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import orjson
import polars as pl
import pytest
from fastapi.testclient import TestClient

from fti_assets.lib.core.settings import PROJECT_ROOT, Settings
from fti_assets.lib.core.store_urls import REDIS, SQLITE
from fti_assets.lib.features.groups import CARD_TRANSACTION_FEATURES
from fti_assets.lib.features.windows import build_card_transaction_features
from fti_assets.lib.inference.log import read_inference_logs
from fti_assets.lib.store.online import open_online_store
from fti_assets.lib.streaming.event_log import open_event_log
from fti_assets.lib.streaming.events import VALUE_COLUMNS, Transaction, to_us
from fti_assets.lib.streaming.processor import StreamProcessor
from fti_assets.service.app import create_app
from fti_assets.specs.feature_groups import online_groups
from fti_assets.specs.inference_log import SERVICE_LOG
from tests.processes import fti_env
from tests.test_service import BODY, _free_port, _wait_until_up, copy_data
from tests.test_service import models as models  # noqa: F401 - fixture
from tests.test_service import template as template  # noqa: F401 - fixture
from tests.unit.test_serving import group_tables, history_transactions

GROUP = CARD_TRANSACTION_FEATURES.name
HISTORY = history_transactions()
C1_LAST = HISTORY.filter(pl.col("card_id") == "c1")["transaction_time"].max()
FIRST_AT = C1_LAST + timedelta(hours=2)  # nothing of c1's history in the hour before


def request(tx_id: str, at: datetime, amount: float) -> dict:
    return {**BODY, "transaction_id": tx_id, "card_id": "c1", "amount": amount,
            "transaction_time": at.isoformat()}  # fmt: skip


FIRST = request("live-1", FIRST_AT, 310.0)
SECOND = request("live-2", FIRST_AT + timedelta(seconds=1), 12.5)


@pytest.fixture(params=[SQLITE, REDIS])
def settings(request: pytest.FixtureRequest, tmp_path: Path, template: Path) -> Settings:  # noqa: F811
    data_dir = copy_data(template, tmp_path / "data")
    if request.param == SQLITE:
        return Settings.for_data_dir(data_dir)
    url = request.getfixturevalue("redis_url")
    tables = group_tables()
    with open_online_store(url) as store:
        for spec in online_groups():
            store.write_group(spec, tables[spec.name])
    return dataclasses.replace(
        Settings.for_data_dir(data_dir), online_url_setting=url, event_log_url_setting=url
    )


def history() -> list[Transaction]:
    return [
        Transaction(
            r["transaction_id"], r["card_id"], to_us(r["transaction_time"]),
            tuple(r[c] for c in VALUE_COLUMNS),
        )
        for r in HISTORY.iter_rows(named=True)
    ]  # fmt: skip


def logged_vectors(settings: Settings) -> dict[str, dict]:
    logs = read_inference_logs(settings.layout.inference_log_dir, SERVICE_LOG)
    return {
        tx: orjson.loads(features)
        for tx, features in zip(logs["transaction_id"], logs["features"], strict=True)
    }


def card_features(vector: dict) -> dict:
    prefix = f"{GROUP}__"
    return {k[len(prefix) :]: v for k, v in vector.items() if k.startswith(prefix)}


def test_the_second_of_two_quick_requests_counts_the_first(settings: Settings) -> None:
    app = create_app(settings, alias_check_interval_s=0, log_flush_interval_s=0.05)
    with (
        TestClient(app) as client,
        open_event_log(settings.event_log_url) as log,
        open_online_store(settings.online_url) as store,
    ):
        processor = StreamProcessor(log, store)
        processor.start(history())
        first = client.post("/predict", json=FIRST)
        applied = processor.step(0.0)
        second = client.post("/predict", json=SECOND)
        logged = [orjson.loads(e.payload)["transaction_id"] for e in log.read(0, 10)]

    assert first.status_code == second.status_code == 200, (first.text, second.text)
    assert applied.counts["applied"] == 1
    assert logged == ["live-1", "live-2"]  # appended before each answer
    # The first request read the batch row (c1's previous transaction); the second the row the
    # pipeline wrote right after the first.
    assert datetime.fromisoformat(first.json()["features_event_time"][GROUP]) == C1_LAST
    assert datetime.fromisoformat(second.json()["features_event_time"][GROUP]) == FIRST_AT
    vectors = logged_vectors(settings)
    served = card_features(vectors["live-2"])
    assert served["tx_count_1h"] == 1 and served["tx_amount_1h"] == 310.0
    # Exactly the row the batch path builds from the history plus the first transaction: what
    # a training row for the second request holds (point in time), so no train/serve skew.
    with_first = pl.concat(
        [HISTORY, pl.DataFrame([{**FIRST, "transaction_time": FIRST_AT}], schema=HISTORY.schema)]
    )
    rows = build_card_transaction_features(with_first).filter(pl.col("card_id") == "c1")
    expected = rows.row(-1, named=True)
    assert {k: v for k, v in served.items() if k != "event_time"} == {
        k: v for k, v in expected.items() if k not in ("card_id", "event_time")
    }
    assert datetime.fromisoformat(served["event_time"]) == expected["event_time"] == FIRST_AT


def test_without_an_event_log_the_service_answers_503(settings: Settings) -> None:
    broken = dataclasses.replace(settings, event_log_url_setting="redis://127.0.0.1:1/0")
    with TestClient(create_app(broken, alias_check_interval_s=0)) as client:
        response = client.post("/predict", json=FIRST)
        ready = client.get("/ready")

    assert response.status_code == 503
    assert "event log redis://127.0.0.1:1/0 cannot be opened" in response.json()["detail"]
    assert ready.status_code == 503
    assert any("event log" in reason for reason in ready.json()["reasons"])


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, *args],
        env=env,
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


@pytest.fixture
def processes(tmp_path: Path, template: Path) -> Iterator[tuple[Settings, str]]:  # noqa: F811
    """A uvicorn service and ``fti stream`` on one data folder (the default SQLite backend)."""
    data_dir = copy_data(template, tmp_path / "data")
    settings = Settings.for_data_dir(data_dir)
    env = fti_env(FTI_DATA_DIR=str(data_dir))
    port = _free_port()
    server = _start(["-m", "fti_assets.service.server", "--port", str(port)], env)
    # No offline raw_transactions in this folder: the windows start from the log alone.
    stream = _start(["-m", "fti_assets.cli", "stream", "--no-bootstrap"], env)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, server)
        yield settings, url
    finally:
        for process in (server, stream):
            process.send_signal(signal.SIGTERM)
        outputs = [process.communicate(timeout=60)[0].decode() for process in (server, stream)]
        assert stream.returncode == 0, outputs[1]
        assert "stream card_transaction_features:" in outputs[1]


def _wait_for_row(settings: Settings, at: datetime, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with open_online_store(settings.online_url, readonly=True) as store:
            if store.get(GROUP, "c1").event_time == at:
                return
        time.sleep(0.01)
    raise AssertionError(f"the stream did not write c1's row at {at} within {timeout_s} s")


@pytest.mark.slow
def test_real_service_and_stream_processes_keep_velocity_fresh(
    processes: tuple[Settings, str],
) -> None:
    settings, url = processes
    first = httpx.post(f"{url}/predict", json=FIRST)
    _wait_for_row(settings, FIRST_AT)  # the stream applies it (no timing asserted)
    second = httpx.post(f"{url}/predict", json=SECOND)

    assert first.status_code == second.status_code == 200, (first.text, second.text)
    assert datetime.fromisoformat(second.json()["features_event_time"][GROUP]) == FIRST_AT
    ready = httpx.get(f"{url}/ready").json()
    assert ready["event_log"]["end_offset"] == 2
