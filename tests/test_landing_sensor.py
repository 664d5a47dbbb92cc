"""The landing sensor on its own: what it requests, in which order, and what it never repeats.
Runs are not executed here; their outcome is recorded on the instance."""

import os
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pytest

from fti_assets.defs.ingest.sensors import DAYS_TAG, FILES_TAG, TRIGGER_TAG, landing_sensor
from fti_assets.lib.ingest.landing import (
    FileState,
    consecutive_runs,
    landing_changes,
    scan,
    states_from_json,
)
from fti_assets.lib.synthetic.generator import GeneratorConfig, generate
from fti_assets.lib.synthetic.world import advance, day_files
from fti_assets.resources import DataDirResource

START = date(2026, 9, 1)
WORLD = GeneratorConfig(cards=60, merchants=12, days=5, start=START, seed=5)
DAY = [(START + timedelta(days=i)).isoformat() for i in range(WORLD.days)]


class Sensor:
    def __init__(self, instance: dg.DagsterInstance, data_dir: Path) -> None:
        self.instance, self.data_dir, self.cursor = instance, data_dir, None

    def tick(self) -> dg.SensorResult | dg.SkipReason:
        context = dg.build_sensor_context(
            instance=self.instance,
            cursor=self.cursor,
            resources={"data_dir": DataDirResource(path=str(self.data_dir))},
        )
        result = landing_sensor(context)
        if isinstance(result, dg.SensorResult) and result.cursor is not None:
            self.cursor = result.cursor
        return result

    def request(self) -> dg.RunRequest:
        result = self.tick()
        assert isinstance(result, dg.SensorResult) and len(result.run_requests) == 1, result
        return result.run_requests[0]

    def skip(self) -> str:
        result = self.tick()
        if isinstance(result, dg.SkipReason):
            return str(result.skip_message)
        assert not result.run_requests, result.run_requests
        return str(result.skip_reason)

    def ingested(self, *assets: str) -> None:
        for asset in assets:
            self.instance.report_runless_asset_event(dg.AssetMaterialization(asset))


@pytest.fixture
def sensor(tmp_path: Path) -> Iterator[Sensor]:
    generate(WORLD, tmp_path / "data", hold_back=2)
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        yield Sensor(instance, tmp_path / "data")


def test_reference_data_first_then_the_landed_days_as_one_run(sensor: Sensor) -> None:
    reference = sensor.request()
    assert reference.asset_selection == [dg.AssetKey("raw_cards"), dg.AssetKey("raw_merchants")]
    assert reference.tags[FILES_TAG] == "cards.parquet,merchants.parquet"
    # Days wait until the reference data has been ingested.
    assert "raw_cards/raw_merchants were never materialized" in sensor.skip()
    sensor.ingested("raw_cards", "raw_merchants")
    days = sensor.request()
    assert days.asset_selection == [
        dg.AssetKey("raw_transactions"),
        dg.AssetKey("raw_fraud_labels"),
    ]
    assert days.partition_key is None and days.tags[DAYS_TAG] == f"{DAY[0]}..{DAY[2]}"
    assert days.partition_key_range == dg.PartitionKeyRange(DAY[0], DAY[2])
    assert "no new or changed landing files" in sensor.skip()

    advance(sensor.data_dir / "world", sensor.data_dir / "landing")
    one = sensor.request()
    assert one.partition_key == DAY[3] and one.tags[DAYS_TAG] == DAY[3]
    assert one.tags[FILES_TAG] == ",".join(day_files(date.fromisoformat(DAY[3])))
    assert one.tags[TRIGGER_TAG] == "landing_sensor"
    assert len({reference.run_key, days.run_key, one.run_key}) == 3


def test_run_keys_depend_on_day_and_content_only(sensor: Sensor, tmp_path: Path) -> None:
    """A daemon that restarts before its cursor was saved asks for the same run keys again,
    which it never launches twice."""
    (tmp_path / "other").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "other")) as other:
        restarted = Sensor(other, sensor.data_dir)
        assert sensor.request().run_key == restarted.request().run_key
        sensor.ingested("raw_cards", "raw_merchants")
        restarted.ingested("raw_cards", "raw_merchants")
        assert sensor.request().run_key == restarted.request().run_key


def test_one_ingest_run_in_flight_at_a_time(sensor: Sensor) -> None:
    sensor.request()
    sensor.ingested("raw_cards", "raw_merchants")
    sensor.instance.add_run(
        dg.DagsterRun(
            job_name="__ASSET_JOB",
            run_id="11111111-2222-3333-4444-555555555555",
            status=dg.DagsterRunStatus.STARTED,
            tags={TRIGGER_TAG: "landing_sensor"},
        )
    )
    assert "ingest run 11111111-2222-3333-4444-555555555555 is started" in sensor.skip()
    # The run finishes (here: fails); the next days may go.
    sensor.instance.report_run_failed(
        sensor.instance.get_run_by_id("11111111-2222-3333-4444-555555555555")
    )
    assert sensor.request().tags[DAYS_TAG] == f"{DAY[0]}..{DAY[2]}"


def test_same_bytes_rewritten_is_no_change_new_bytes_is(sensor: Sensor) -> None:
    sensor.request()
    sensor.ingested("raw_cards", "raw_merchants")
    sensor.request()
    landing = sensor.data_dir / "landing"
    day_file = landing / day_files(START)[1]
    # Touched and rewritten with the same bytes (a regenerated world, same seed): nothing.
    day_file.write_bytes(day_file.read_bytes())
    os.utime(day_file, ns=(1, 1))
    assert "no new or changed landing files" in sensor.skip()
    # New bytes for an old day: that day alone is ingested again, under a new run key.
    generate(replace(WORLD, seed=6), sensor.data_dir / "other")
    (landing / day_files(START)[1]).write_bytes(
        (sensor.data_dir / "other" / "world" / day_files(START)[1]).read_bytes()
    )
    again = sensor.request()
    assert again.partition_key == DAY[0]


def test_files_ingested_before_the_sensor_saw_them_are_adopted(sensor: Sensor) -> None:
    """After `fti demo` ingested everything, turning the sensor on ingests nothing again."""
    sensor.ingested("raw_cards", "raw_merchants")
    for day in DAY[:3]:
        for asset in ("raw_transactions", "raw_fraud_labels"):
            sensor.instance.report_runless_asset_event(
                dg.AssetMaterialization(asset, partition=day)
            )
    assert "no new or changed landing files" in sensor.skip()
    # A file written after its day was ingested is not adopted: it is ingested.
    advance(sensor.data_dir / "world", sensor.data_dir / "landing")
    (sensor.data_dir / "landing" / day_files(START)[0]).write_bytes(b"corrected labels")
    assert sensor.request().partition_key == DAY[0]
    assert sensor.request().partition_key == DAY[3]


def test_days_not_yet_partitions_wait(tmp_path: Path) -> None:
    late = GeneratorConfig(cards=60, merchants=12, days=2, start=date(2026, 10, 30), seed=5)
    generate(late, tmp_path / "data")  # the tests' partitions end on 2026-10-30
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        sensor = Sensor(instance, tmp_path / "data")
        sensor.request()
        sensor.ingested("raw_cards", "raw_merchants")
        assert sensor.request().partition_key == "2026-10-30"
        assert "not partitions yet (in the future): 2026-10-31" in sensor.skip()


def test_no_landing_zone_says_how_to_make_one(tmp_path: Path) -> None:
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        assert "run `fti generate`" in Sensor(instance, tmp_path / "none").skip()


def test_scan_hashes_only_files_whose_size_or_mtime_moved(tmp_path: Path) -> None:
    generate(WORLD, tmp_path)
    landing = tmp_path / "landing"
    first = scan(landing, {})
    assert len(first) == 2 + 2 * WORLD.days
    stale = {name: FileState(s.size, s.mtime_ns, "not-rehashed") for name, s in first.items()}
    assert scan(landing, stale) == stale  # unchanged stat: the remembered hash is kept
    (landing / "cards.parquet").write_bytes(b"new bytes")
    assert scan(landing, stale)["cards.parquet"].sha256 != "not-rehashed"


def test_a_day_with_one_of_its_files_is_incomplete(tmp_path: Path) -> None:
    generate(WORLD, tmp_path)
    landing = tmp_path / "landing"
    (landing / day_files(START)[1]).unlink()  # the first day's transactions
    changes = landing_changes(scan(landing, {}), {})
    assert changes.incomplete == (START,)
    assert sorted(changes.days) == [date.fromisoformat(d) for d in DAY[1:]]
    assert changes.reference == ("cards.parquet", "merchants.parquet")


def test_consecutive_runs_and_a_foreign_cursor() -> None:
    d = [START + timedelta(days=i) for i in (0, 1, 2, 4, 6, 7)]
    assert consecutive_runs(list(reversed(d))) == [d[:3], [d[3]], d[4:]]
    with pytest.raises(ValueError, match="is not what this sensor writes"):
        states_from_json('{"cards.parquet": 3}')
