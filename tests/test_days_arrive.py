"""Days keep arriving: a day released into the landing zone becomes a partition, the landing
sensor ingests it, and the automation conditions carry it through dbt, the feature groups and the
online store — evaluated tick by tick against a persistent instance, as the daemon does."""

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from fti_assets.defs.ingest.sensors import DAYS_TAG, landing_sensor
from fti_assets.defs.transform.assets import dbt_resource
from fti_assets.lib.core.settings import Settings
from fti_assets.lib.synthetic.generator import GeneratorConfig, generate
from fti_assets.lib.synthetic.world import advance
from fti_assets.resources import DataDirResource, default_resources

pytestmark = [pytest.mark.slow]

START = date(2026, 9, 1)
WORLD = GeneratorConfig(cards=150, merchants=20, days=4, start=START, seed=11)
DAY = [(START + timedelta(days=i)).isoformat() for i in range(WORLD.days)]
# The feature side of the graph (the model side has automation of its own).
FEATURE_SIDE = dg.AssetSelection.groups("ingest", "transform", "features", "online")
DAILY = ["card_transaction_features", "card_daily_features", "merchant_daily_features"]
INTERMEDIATE = [
    "int_card_daily_activity",
    "int_merchant_daily_activity",
    "int_merchant_fraud_reports",
]
ONLINE = [
    "online_card_daily_features",
    "online_card_transaction_features",
    "online_merchant_daily_features",
    "online_card_profile_features",
    "online_merchant_profile_features",
]
MAX_TICKS = 8


class Platform:
    """The landing sensor and the automation sensor, ticking against one instance; each run
    they request is executed (in-process) before the next tick, as if it had finished."""

    def __init__(self, instance: dg.DagsterInstance, data_dir: Path) -> None:
        from fti_assets.definitions import defs

        self.defs = defs
        self.instance = instance
        self.data_dir = data_dir
        self.resources = {**default_resources(Settings.from_env()), "dbt": dbt_resource()}
        self.sensor_cursor: str | None = None
        self.automation_cursor = None
        self.requested: list[tuple[str, str | None]] = []  # (asset, partition) per request

    def sensor_tick(self, cursor: str | None = None) -> dg.SensorResult | dg.SkipReason:
        context = dg.build_sensor_context(
            instance=self.instance,
            cursor=cursor if cursor is not None else self.sensor_cursor,
            resources={"data_dir": DataDirResource(path=str(self.data_dir))},
        )
        result = landing_sensor(context)
        if isinstance(result, dg.SensorResult) and result.cursor is not None:
            self.sensor_cursor = result.cursor
        return result

    def run(self, selection: list[dg.AssetKey], tags: dict[str, str], day: str | None) -> None:
        result = dg.materialize(
            [*self.defs.assets, *self.defs.asset_checks],
            selection=selection,
            partition_key=day,
            tags=tags,
            instance=self.instance,
            resources=self.resources,
        )
        assert result.success

    def ingest(self) -> dg.RunRequest:
        """One landing-sensor tick that must request a run; the run is executed."""
        result = self.sensor_tick()
        assert isinstance(result, dg.SensorResult) and len(result.run_requests) == 1, result
        request = result.run_requests[0]
        self.run(list(request.asset_selection), dict(request.tags), request.partition_key)
        return request

    def automation_tick(self) -> dict[str, set[str | None]]:
        result = dg.evaluate_automation_conditions(
            defs=self.defs,
            instance=self.instance,
            asset_selection=FEATURE_SIDE,
            cursor=self.automation_cursor,
        )
        self.automation_cursor = result.cursor
        keys = {key for key in self.defs.resolve_asset_graph().get_all_asset_keys()}
        return {
            k.to_user_string(): result.get_requested_partitions(k)
            for k in keys
            if result.get_num_requested(k)
        }

    def settle(self) -> list[dict[str, set[str | None]]]:
        """Tick until nothing is requested, executing what each tick requests (one run per
        partition window, as the daemon's runs and single-run backfills do)."""
        history = []
        for _ in range(MAX_TICKS):
            requested = self.automation_tick()
            if not requested:
                return history
            history.append(requested)
            by_window: dict[tuple[str, str] | None, list[dg.AssetKey]] = {}
            for asset, partitions in requested.items():
                self.requested.extend((asset, p) for p in partitions)
                window = None if partitions == {None} else (min(partitions), max(partitions))
                by_window.setdefault(window, []).append(dg.AssetKey(asset))
            for window, keys in sorted(by_window.items(), key=lambda kv: kv[0] is not None):
                if window is None:
                    self.run(keys, {}, None)
                else:
                    tags = {
                        ASSET_PARTITION_RANGE_START_TAG: window[0],
                        ASSET_PARTITION_RANGE_END_TAG: window[1],
                    }
                    self.run(keys, tags, None)
        raise AssertionError(f"automation still requesting after {MAX_TICKS} ticks: {history}")

    def materialized(self, asset: str) -> set[str]:
        return self.instance.get_materialized_partitions(dg.AssetKey(asset))

    def materializations(self, asset: str) -> int:
        records = self.instance.fetch_materializations(dg.AssetKey(asset), limit=1000)
        return len(records.records)


@pytest.fixture
def platform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Platform]:
    data_dir = tmp_path / "data"
    generate(WORLD, data_dir, hold_back=1)  # three days landed, the fourth still in the world
    monkeypatch.setenv("FTI_DATA_DIR", str(data_dir))
    for name in ("FTI_LAKE_CATALOG", "FTI_LAKE_DATA_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FTI_ONLINE_PATH", str(data_dir / "online.sqlite"))
    monkeypatch.setenv("FTI_REGISTRY_PATH", str(data_dir / "registry.sqlite"))
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        yield Platform(instance, data_dir)


def test_a_landed_day_becomes_a_partition_and_flows_through_automation(
    platform: Platform,
) -> None:
    # The daemon starts: automation's first tick finds nothing to do (no data yet).
    assert platform.automation_tick() == {}

    # The landing sensor: reference data first; automation builds what it can (the staging views
    # over the daily tables wait for a day), as the daemon does before the days are ingested.
    reference = platform.ingest()
    assert set(reference.asset_selection) == {
        dg.AssetKey("raw_cards"),
        dg.AssetKey("raw_merchants"),
    }
    platform.settle()
    assert platform.materializations("card_profile_features") == 1
    assert platform.materializations("stg_transactions") == 0
    # Then the three landed days, as one run.
    days = platform.ingest()
    assert days.tags[DAYS_TAG] == f"{DAY[0]}..{DAY[2]}"
    assert platform.materialized("raw_transactions") == set(DAY[:3])
    quiet = platform.sensor_tick()  # nothing new since
    assert isinstance(quiet, dg.SensorResult) and not quiet.run_requests
    assert "no new or changed landing files" in str(quiet.skip_reason)
    platform.settle()
    for asset in DAILY:
        assert platform.materialized(asset) == set(DAY[:3]), asset
    for asset in ONLINE:
        assert platform.materializations(asset) == 1, asset

    # A new day arrives: `fti simulate advance`.
    stg_runs = platform.materializations("stg_transactions")
    platform.requested.clear()
    assert advance(platform.data_dir / "world", platform.data_dir / "landing") == [
        date.fromisoformat(DAY[3])
    ]
    new_day = platform.ingest()
    assert new_day.partition_key == DAY[3]
    assert new_day.tags[DAYS_TAG] == DAY[3]
    ticks = platform.settle()
    # Two ticks: the day's dbt models and feature groups (one run), then the online store.
    assert [sorted(tick) for tick in ticks] == [sorted([*DAILY, *INTERMEDIATE]), ONLINE[:3]]

    # Every daily asset has the new day, and only the new day was requested (no stampede).
    for asset in DAILY:
        assert platform.materialized(asset) == set(DAY), asset
    assert {p for _, p in platform.requested if p is not None} == {DAY[3]}
    # The online store followed, once; the staging view over raw_transactions did not re-run.
    for asset in ONLINE[:3]:
        assert platform.materializations(asset) == 2, asset
    assert platform.materializations("stg_transactions") == stg_runs
    # Settled: another tick requests nothing.
    assert platform.automation_tick() == {}

    # The sensor after a restart (same cursor) requests nothing again; with its cursor lost, it
    # adopts the files ingested since they were written and requests nothing either.
    again = platform.sensor_tick()
    assert isinstance(again, dg.SensorResult) and not again.run_requests
    assert again.skip_reason is not None
    lost = platform.sensor_tick(cursor="")
    assert isinstance(lost, dg.SensorResult) and not lost.run_requests
    assert lost.cursor == again.cursor
