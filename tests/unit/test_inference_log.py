"""Inference log: records survive the trip to disk and back, per day, across processes."""

from __future__ import annotations

import multiprocessing as mp
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import orjson
import polars as pl
import pytest

from fti_assets.lib.inference.log import (
    RECORD_COLUMNS,
    InferenceLogger,
    LogSchema,
    log_files,
    read_inference_logs,
)
from fti_assets.specs.inference_log import SERVICE_LOG

DAY = date(2026, 9, 1)
UTC_US = pl.Datetime("us", "UTC")


def record(i: int, logged_at: datetime | None = None) -> dict:
    rec = {
        "transaction_id": f"tx{i}",
        "card_id": f"c{i % 3}",
        "merchant_id": "m1",
        "amount": 10.5 + i,
        "category": "grocery",
        "channel": "online",
        "transaction_time": datetime(2026, 9, 1, 9, 0, i % 60, 123456, tzinfo=UTC),
        "lat": 40.0,
        "lon": -74.0,
        "model_name": "fraud_model",
        "model_version": 3,
        "model_sha256": "ab" * 32,
        "probability": 0.001 * i,
        "latency_ms": 0.42,
        "fallback": i % 2 == 0,
        "unknown_entities": ["card_id=c9"] if i % 2 == 0 else [],
        "stale_groups": [],
        "features": {
            "amount": 10.5 + i,
            "card_profile_features__account_open_date": date(2025, 1, 2),
            "card_transaction_features__event_time": datetime(2026, 9, 1, 8, tzinfo=UTC),
            "amount_zscore": 1 / 3,
            "card_daily_features__tx_count_7d": None,
            "hour_of_day": 9,
        },
    }
    if logged_at is not None:
        rec["logged_at"] = logged_at
    return rec


def test_records_round_trip(tmp_path: Path) -> None:
    with InferenceLogger(tmp_path, flush_interval_s=0.05) as log:
        for i in range(5):
            log.log(record(i, datetime(2026, 9, 1, 12, 0, i, tzinfo=UTC)))
    frame = read_inference_logs(tmp_path, SERVICE_LOG)

    assert frame.columns == [*SERVICE_LOG.request, *RECORD_COLUMNS]
    assert frame.schema["logged_at"] == UTC_US and frame.schema["transaction_time"] == UTC_US
    assert frame["transaction_id"].to_list() == [f"tx{i}" for i in range(5)]
    assert frame["probability"].to_list() == [0.001 * i for i in range(5)]
    assert frame["unknown_entities"].to_list()[:2] == [["card_id=c9"], []]
    assert frame["transaction_time"][1] == datetime(2026, 9, 1, 9, 0, 1, 123456, tzinfo=UTC)
    features = orjson.loads(frame["features"][1])
    assert features == {
        "amount": 11.5,
        "card_profile_features__account_open_date": "2025-01-02",
        "card_transaction_features__event_time": "2026-09-01T08:00:00Z",
        "amount_zscore": 1 / 3,  # full float precision
        "card_daily_features__tx_count_7d": None,
        "hour_of_day": 9,
    }


def test_logged_at_is_added_in_utc_and_decides_the_day(tmp_path: Path) -> None:
    before = datetime.now(UTC)
    late = datetime(2026, 9, 1, 23, 59, 59, 999999, tzinfo=UTC)
    with InferenceLogger(tmp_path) as log:
        log.log(record(0))
        log.log(record(1, late))
        log.log(record(2, late + timedelta(microseconds=1)))
    assert {p.parent.name for p in log_files(tmp_path)} == {
        "date=2026-09-01",
        "date=2026-09-02",
        f"date={before.date().isoformat()}",
    }
    assert read_inference_logs(tmp_path, SERVICE_LOG, DAY)["transaction_id"].to_list() == ["tx1"]
    assert read_inference_logs(tmp_path, SERVICE_LOG, date(2026, 9, 2))[
        "transaction_id"
    ].to_list() == ["tx2"]
    now_rows = read_inference_logs(tmp_path, SERVICE_LOG, before.date())
    assert now_rows["transaction_id"].to_list() == ["tx0"]
    assert now_rows["logged_at"][0] >= before


def test_flush_makes_records_readable_without_closing(tmp_path: Path) -> None:
    log = InferenceLogger(tmp_path, flush_interval_s=3600)
    try:
        log.log(record(1, datetime(2026, 9, 1, tzinfo=UTC)))
        assert (
            read_inference_logs(tmp_path, SERVICE_LOG).height == 0
        )  # still queued: the writer sleeps
        log.flush()
        assert read_inference_logs(tmp_path, SERVICE_LOG)["transaction_id"].to_list() == ["tx1"]
    finally:
        log.close()


def test_close_writes_everything_queued_and_later_records_are_dropped(tmp_path: Path) -> None:
    log = InferenceLogger(tmp_path, flush_interval_s=3600, max_batch=10_000)
    for i in range(2500):
        log.log(record(i, datetime(2026, 9, 1, tzinfo=UTC)))
    log.close()
    log.log(record(9999, datetime(2026, 9, 1, tzinfo=UTC)))
    assert (log.written, log.dropped) == (2500, 1)
    assert read_inference_logs(tmp_path, SERVICE_LOG).height == 2500


def test_a_full_queue_drops_instead_of_blocking(tmp_path: Path) -> None:
    log = InferenceLogger(tmp_path, flush_interval_s=3600, max_batch=10_000, max_queue=3)
    for i in range(5):
        log.log(record(i, datetime(2026, 9, 1, tzinfo=UTC)))
    log.close()
    assert (log.written, log.dropped) == (3, 2)


def test_files_rotate_and_all_are_read(tmp_path: Path) -> None:
    with InferenceLogger(tmp_path, flush_interval_s=0.01, max_batch=10, max_file_bytes=4096) as log:
        for i in range(200):
            log.log(record(i, datetime(2026, 9, 1, 10, tzinfo=UTC) + timedelta(seconds=i)))
    assert len(log_files(tmp_path, DAY)) > 5
    assert read_inference_logs(tmp_path, SERVICE_LOG, DAY)["transaction_id"].to_list() == [
        f"tx{i}" for i in range(200)
    ]


def test_a_partial_last_line_is_skipped(tmp_path: Path) -> None:
    with InferenceLogger(tmp_path) as log:
        for i in range(3):
            log.log(record(i, datetime(2026, 9, 1, 10, i, tzinfo=UTC)))
    (path,) = log_files(tmp_path)
    with path.open("ab") as handle:  # a writer killed in the middle of a line
        handle.write(b'{"transaction_id": "tx3", "amo')
    frame = read_inference_logs(tmp_path, SERVICE_LOG)
    assert frame["transaction_id"].to_list() == ["tx0", "tx1", "tx2"]
    assert orjson.loads(frame["features"][0])["hour_of_day"] == 9


def test_no_logs_give_an_empty_frame_with_the_schema(tmp_path: Path) -> None:
    frame = read_inference_logs(tmp_path / "missing", SERVICE_LOG)
    assert frame.height == 0
    assert frame.schema["logged_at"] == UTC_US and frame.schema["features"] == pl.String


def _write_from_process(directory: str, offset: int) -> None:
    with InferenceLogger(Path(directory), flush_interval_s=0.01, max_batch=7) as log:
        for i in range(offset, offset + 100):
            log.log(record(i, datetime(2026, 9, 1, 10, tzinfo=UTC) + timedelta(seconds=i)))


def test_several_processes_write_their_own_files(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    workers = [ctx.Process(target=_write_from_process, args=(str(tmp_path), k)) for k in (0, 100)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(60)
        assert p.exitcode == 0
    files = log_files(tmp_path, DAY)
    assert len({f.name.split("-")[1] for f in files}) == 2  # one pid per process
    frame = read_inference_logs(tmp_path, SERVICE_LOG, DAY)
    assert sorted(frame["transaction_id"].to_list()) == sorted(f"tx{i}" for i in range(200))


def test_bad_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="flush_interval_s"):
        InferenceLogger(tmp_path, flush_interval_s=0)


def test_a_column_older_files_hold_under_its_old_name_is_read_as_the_new_one(
    tmp_path: Path,
) -> None:
    old, new = record(1, datetime(2026, 9, 1, 12, tzinfo=UTC)), record(2)
    old["fraud_probability"] = old.pop("probability")  # as the service logged it before
    with InferenceLogger(tmp_path, flush_interval_s=0.01) as log:
        log.log(old)
        log.log({**new, "logged_at": datetime(2026, 9, 1, 13, tzinfo=UTC)})
    frame = read_inference_logs(tmp_path, SERVICE_LOG, DAY)
    assert "fraud_probability" not in frame.columns
    assert frame["probability"].to_list() == [old["fraud_probability"], new["probability"]]
    # The tolerant reader (a partial last line) renames too.
    path = log_files(tmp_path, DAY)[0]
    path.write_bytes(path.read_bytes() + b'{"transaction_id": "tx3", "fraud_prob')
    assert read_inference_logs(tmp_path, SERVICE_LOG, DAY)["probability"].to_list() == [
        old["fraud_probability"],
        new["probability"],
    ]


def test_a_log_schema_whose_request_fields_clash_with_the_record_is_refused() -> None:
    with pytest.raises(
        ValueError, match=r"request fields \['probability'\] clash with the record's columns"
    ):
        LogSchema(request={"probability": pl.Float64()})
    with pytest.raises(ValueError, match=r"request_times \['when'\] are not request fields"):
        LogSchema(request={"id": pl.String()}, request_times=("when",))
