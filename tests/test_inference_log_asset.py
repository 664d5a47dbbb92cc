"""The inference_log asset loads the service's log files into the offline store, per day."""

from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from fti_assets.lib.core.settings import Settings
from fti_assets.lib.inference.log import InferenceLogger
from fti_assets.lib.store.offline import connect, read_frame
from fti_assets.resources import default_resources


def _record(i: int, now: datetime) -> dict:
    return {
        "transaction_id": f"t{i}",
        "card_id": "c0000001",
        "merchant_id": "m00001",
        "amount": 10.0 + i,
        "category": "grocery",
        "channel": "online",
        "transaction_time": now.isoformat(),
        "lat": 40.0,
        "lon": -73.0,
        "model_name": "fraud_model",
        "model_version": 1,
        "model_sha256": "ab",
        "probability": 0.01 * i,
        "latency_ms": 1.5,
        "fallback": False,
        "unknown_entities": [],
        "stale_groups": [],
        "features": {"amount": 10.0 + i},
        "logged_at": now.isoformat(),
    }


def test_inference_log_partition_is_loaded_and_replaced(data_layer: Path) -> None:
    from fti_assets.definitions import defs

    now = datetime.now(UTC)
    logger = InferenceLogger(Settings.from_env().layout.inference_log_dir)
    for i in range(5):
        logger.log(_record(i, now))
    logger.close()
    inference_log = defs.get_assets_def("inference_log")
    resources = default_resources(Settings.from_env())
    for _ in range(2):  # materializing twice replaces the day, never appends it twice
        result = dg.materialize(
            [inference_log], resources=resources, partition_key=now.date().isoformat()
        )
        assert result.success
    con = connect(Settings.from_env().lake, read_only=True)
    rows = read_frame(con, "select transaction_id, model_version, features from inference_log")
    con.close()
    assert sorted(rows["transaction_id"].to_list()) == [f"t{i}" for i in range(5)]
    assert rows["model_version"].unique().to_list() == [1]
    assert all('"amount"' in f for f in rows["features"].to_list())
