"""The automation conditions (defs/automation.py) on a small graph shaped like the feature side:
reference data, a daily raw table with a blocking check, a staging view, a daily feature group and
an online copy. Evaluated tick by tick against a persistent instance, materializing in between."""

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from fti_assets.defs.automation import daily_condition, latest_condition, reference_condition
from fti_assets.partitions import DAILY_TAGS

DAYS = dg.DailyPartitionsDefinition(start_date="2026-09-01", end_date="2026-09-11", timezone="UTC")
CHECK_PASSES: dict[str, bool] = {}  # partition -> outcome of raw's blocking check (default: pass)


@dg.asset
def ref() -> None:
    """Reference data (unpartitioned, ingested by hand or by a sensor)."""


@dg.asset(partitions_def=DAYS, tags=DAILY_TAGS, deps=[ref])
def raw() -> None:
    """A daily raw table (ingested by a sensor)."""


@dg.asset_check(asset=raw, blocking=True, partitions_def=DAYS)
def raw_ok(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=CHECK_PASSES.get(context.partition_key, True))


@dg.asset(deps=[raw, ref], automation_condition=reference_condition())
def view() -> None:
    """A staging view over raw and ref."""


@dg.asset(
    partitions_def=DAYS,
    tags=DAILY_TAGS,
    deps=[raw, view],
    automation_condition=daily_condition(),
)
def feat() -> None:
    """A daily feature group."""


@dg.asset(deps=[feat], automation_condition=latest_condition())
def online() -> None:
    """The online copy of the newest rows."""


ASSETS = [ref, raw, raw_ok, view, feat, online]


class Ticks:
    """The automation sensor's ticks: evaluate, remember the cursor, return what was requested."""

    def __init__(self, instance: dg.DagsterInstance) -> None:
        self.instance = instance
        self.cursor = None

    def __call__(self) -> dict[str, set[str | None]]:
        result = dg.evaluate_automation_conditions(
            defs=ASSETS, instance=self.instance, cursor=self.cursor
        )
        self.cursor = result.cursor
        return {
            key: result.get_requested_partitions(dg.AssetKey(key))
            for key in ("view", "feat", "online")
            if result.get_num_requested(dg.AssetKey(key))
        }

    def run(self, *assets: str, day: str | None = None) -> None:
        dg.materialize(ASSETS, selection=list(assets), partition_key=day, instance=self.instance)


@pytest.fixture
def ticks(tmp_path: Path) -> Iterator[Ticks]:
    CHECK_PASSES.clear()
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        yield Ticks(instance)


def _history(ticks: Ticks, days: list[str]) -> None:
    ticks.run("ref")
    for day in days:
        ticks.run("raw", day=day)


def test_turning_automation_on_over_history_does_not_stampede(ticks: Ticks) -> None:
    _history(ticks, ["2026-09-01", "2026-09-02", "2026-09-03"])
    # First evaluation: the missing view is built once; no past day of feat is requested.
    assert ticks() == {"view": {None}}
    ticks.run("view")
    assert ticks() == {}  # the view updated: still no past day of feat
    assert ticks() == {}


def test_a_new_day_flows_through_and_nothing_repeats(ticks: Ticks) -> None:
    _history(ticks, ["2026-09-01"])
    assert ticks() == {"view": {None}}
    ticks.run("view")
    assert ticks() == {}

    ticks.run("raw", day="2026-09-02")
    assert ticks() == {"feat": {"2026-09-02"}}  # only its day; online waits for it
    ticks.run("feat", day="2026-09-02")
    assert ticks() == {"online": {None}}
    ticks.run("online")
    assert ticks() == {}
    assert ticks() == {}


def test_a_new_day_waits_for_a_reference_upstream_requested_on_the_same_tick(
    ticks: Ticks,
) -> None:
    ticks.run("ref")
    assert ticks() == {}  # the view waits for raw to have data; the trigger is kept
    ticks.run("raw", day="2026-09-01")
    # The missing view runs first (in a run of its own); the day follows on the next tick.
    assert ticks() == {"view": {None}}
    ticks.run("view")
    assert ticks() == {"feat": {"2026-09-01"}}


def test_reference_data_updates_rebuild_the_view_but_not_the_past_days(ticks: Ticks) -> None:
    _history(ticks, ["2026-09-01", "2026-09-02"])
    assert ticks() == {"view": {None}}
    ticks.run("view")
    ticks.run("raw", day="2026-09-03")
    assert ticks() == {"feat": {"2026-09-03"}}
    ticks.run("feat", day="2026-09-03")
    assert ticks() == {"online": {None}}
    ticks.run("online")

    ticks.run("ref")  # new reference data
    assert ticks() == {"view": {None}}
    ticks.run("view")
    assert ticks() == {}  # days are not recomputed because reference data changed


def test_a_failed_blocking_check_stops_that_day(ticks: Ticks) -> None:
    _history(ticks, ["2026-09-01"])
    assert ticks() == {"view": {None}}
    ticks.run("view")
    CHECK_PASSES["2026-09-02"] = False
    dg.materialize(
        ASSETS,
        selection=["raw"],
        partition_key="2026-09-02",
        instance=ticks.instance,
        raise_on_error=False,
    )
    assert ticks() == {}  # raw's check failed for 2026-09-02: its features wait
    CHECK_PASSES["2026-09-02"] = True
    ticks.run("raw", day="2026-09-02")  # fixed and re-ingested
    assert ticks() == {"feat": {"2026-09-02"}}


def test_a_day_in_progress_upstream_holds_the_online_copy(ticks: Ticks) -> None:
    _history(ticks, ["2026-09-01"])
    assert ticks() == {"view": {None}}
    ticks.run("view")
    ticks.run("raw", day="2026-09-02")
    assert ticks() == {"feat": {"2026-09-02"}}
    # Until the day's run has finished, the online copy keeps waiting.
    assert ticks() == {}
    ticks.run("feat", day="2026-09-02")
    assert ticks() == {"online": {None}}
