"""The streaming pipeline in the Dagster UI: lineage, and the sensor that observes it.

The sensor is evaluated directly (every branch) and by a real ``dagster-daemon`` on a
persistent instance, the way ``make dev`` runs it: its observation and materialization of
``streaming_card_features`` must land in the instance.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from fti_assets.definitions import defs
from fti_assets.defs.streaming.sensors import streaming_pipeline_sensor
from fti_assets.lib.core.settings import PROJECT_ROOT
from fti_assets.lib.core.store_urls import sqlite_url
from fti_assets.lib.store.online import open_online_store
from fti_assets.lib.streaming.event_log import open_event_log
from fti_assets.lib.streaming.events import encode_transaction
from fti_assets.lib.streaming.processor import StreamProcessor
from fti_assets.resources import EventLogResource, OnlineStoreResource
from tests.processes import fti_env
from tests.unit.test_serving import history_transactions

STREAMING = dg.AssetKey("streaming_card_features")
EVENT_LOG = dg.AssetKey("transaction_event_log")


def test_lineage_runs_from_transactions_through_the_stream_to_the_service() -> None:
    graph = defs.resolve_asset_graph()

    def upstream(key: str) -> set[str]:
        return {k.to_user_string() for k in graph.get(dg.AssetKey(key)).parent_keys}

    assert upstream("streaming_card_features") == {"transaction_event_log", "raw_transactions"}
    assert {"streaming_card_features", "online_card_transaction_features"} <= upstream(
        "prediction_service"
    )
    node = graph.get(STREAMING)
    assert node.freshness_policy is not None
    assert not node.is_materializable  # written by `fti stream`, reported by the sensor
    sensor = defs.resolve_sensor_def("streaming_pipeline_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert "lag" in sensor.description


def _data(tmp_path: Path, events: int, applied: int) -> tuple[str, str]:
    """An event log with ``events`` transactions, the first ``applied`` of them streamed."""
    online_url, log_url = (
        sqlite_url(tmp_path / "online.sqlite"),
        sqlite_url(tmp_path / "events.sqlite"),
    )
    in_time_order = history_transactions().sort("transaction_time")
    payloads = [encode_transaction(r) for r in in_time_order.iter_rows(named=True)]
    with open_event_log(log_url) as log, open_online_store(online_url) as store:
        log.append(payloads[:applied])
        processor = StreamProcessor(log, store)
        processor.start()
        processor.run(lambda: False, until_caught_up=True)
        log.append(payloads[applied:events])
    return online_url, log_url


def _evaluate(online_url: str, log_url: str, cursor: str | None = None):
    context = dg.build_sensor_context(
        cursor=cursor,
        resources={
            "online_store": OnlineStoreResource(url=online_url),
            "event_log": EventLogResource(url=log_url),
        },
    )
    return streaming_pipeline_sensor(context)


def _events(result: dg.SensorResult) -> dict[tuple[str, str], dict]:
    return {
        (type(e).__name__, e.asset_key.to_user_string()): {
            k: v.value for k, v in e.metadata.items()
        }
        for e in result.asset_events
    }


def test_the_sensor_reports_lag_rate_offset_and_each_advance(tmp_path: Path) -> None:
    online_url, log_url = _data(tmp_path, events=40, applied=30)

    first = _evaluate(online_url, log_url)

    events = _events(first)
    observed = events[("AssetObservation", "streaming_card_features")]
    assert (observed["last_offset"], observed["log_end_offset"], observed["lag_events"]) == (
        30,
        40,
        10,
    )
    assert observed["lag_seconds"] >= 0 and observed["applied"] == 30
    assert observed["reason"] == "applied events up to offset 30"
    assert ("AssetMaterialization", "streaming_card_features") in events
    assert events[("AssetMaterialization", "transaction_event_log")] == {"end_offset": 40}
    # Nothing new: observed again, but no advance to report.
    second = _events(_evaluate(online_url, log_url, first.cursor))
    assert ("AssetMaterialization", "streaming_card_features") not in second
    assert ("AssetMaterialization", "transaction_event_log") not in second
    assert second[("AssetObservation", "streaming_card_features")]["lag_events"] == 10
    assert json.loads(first.cursor) == {
        "offset": 30,
        "commit_us": json.loads(first.cursor)["commit_us"],
        "log_end": 40,
    }


def test_the_sensor_skips_and_says_why_before_the_first_event(tmp_path: Path) -> None:
    result = _evaluate(
        sqlite_url(tmp_path / "online.sqlite"), sqlite_url(tmp_path / "events.sqlite")
    )

    assert isinstance(result, dg.SkipReason)
    assert "online.sqlite does not exist" in result.skip_message


@pytest.mark.slow
def test_a_real_daemon_records_the_observation_in_the_instance(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    _data(data_dir, events=60, applied=60)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    env = fti_env(DAGSTER_HOME=str(home), FTI_DATA_DIR=str(data_dir))
    # Create the instance's storage before the daemon starts: the daemon and its code server
    # creating a new SQLite storage at once can race on its alembic version table.
    dg.DagsterInstance.from_config(str(home)).dispose()
    # The daemon's log goes to a file: a pipe nobody reads fills up, and the daemon then blocks.
    log_path = tmp_path / "daemon.log"
    with open(log_path, "wb") as log:
        daemon = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", "workspace.yaml"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            deadline = time.monotonic() + 240
            event = None
            while event is None and time.monotonic() < deadline:
                assert daemon.poll() is None, log_path.read_text()[-5000:]
                event = instance.get_latest_materialization_event(STREAMING)
                time.sleep(0.5)
            assert event is not None, f"nothing reported in 240 s:\n{log_path.read_text()[-5000:]}"
            metadata = event.asset_materialization.metadata
            assert metadata["last_offset"].value == 60
            assert metadata["lag_events"].value == 0
            observations = instance.fetch_observations(STREAMING, limit=1).records
            assert observations[0].asset_observation.metadata["applied"].value == 60
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(timeout=60)
