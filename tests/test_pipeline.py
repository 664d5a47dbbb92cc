"""The whole asset graph materialized in-process on a temporary DuckDB file."""

from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from fti_assets.defs.transform.assets import dbt_resource
from fti_assets.demo import materialize_graph
from fti_assets.lib.feature_groups import FEATURE_GROUPS
from fti_assets.lib.offline_store import connect, read_frame
from fti_assets.lib.settings import Settings
from fti_assets.resources import default_resources
from tests.conftest import TINY_DAYS, TINY_START

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("pipeline")]

TINY_END = TINY_START + timedelta(days=TINY_DAYS - 1)


def _resources() -> dict:
    return {**default_resources(Settings.from_env()), "dbt": dbt_resource()}


def _run(start: date = TINY_START, end: date = TINY_END, selection=None):
    from fti_assets.definitions import defs

    return materialize_graph(
        defs, start=start, end=end, resources=_resources(), selection=selection
    )


def _tables(path: Path) -> dict[str, list[tuple]]:
    """Every feature-group table, sorted, for exact comparisons."""
    con = connect(path, read_only=True)
    try:
        out = {}
        for spec in FEATURE_GROUPS.values():
            cols = ", ".join(spec.columns)
            out[spec.name] = con.execute(f"select {cols} from {spec.table} order by all").fetchall()
        return out
    finally:
        con.close()


def test_whole_graph_materializes_and_rematerializing_is_idempotent(data_layer: Path) -> None:
    result = _run()
    assert result.success
    checks = result.get_asset_check_evaluations()
    assert checks and all(c.passed for c in checks), [
        c.asset_check_key.to_user_string() for c in checks if not c.passed
    ]

    db = data_layer / "offline.duckdb"
    con = connect(db, read_only=True)
    counts = read_frame(
        con,
        "select (select count(*) from raw_transactions) as tx, "
        "(select count(*) from quarantine where source = 'raw_transactions') as q",
    ).row(0, named=True)
    con.close()
    import json

    manifest = json.loads((data_layer / "landing" / "_manifest.json").read_text())
    bad = sum(sum(kinds.values()) for kinds in manifest["bad_rows"].values())
    assert counts["q"] == bad  # every injected bad row is quarantined, nothing else
    assert counts["tx"] == manifest["counts"]["transactions"]
    before = _tables(db)
    assert all(rows for rows in before.values())

    again = _run()
    assert again.success
    assert _tables(db) == before  # same rows, nothing appended twice


def test_incremental_days_equal_a_full_refresh(
    data_layer: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Day by day in three windows (like daily runs and a small backfill)...
    middle = TINY_START + timedelta(days=3)
    for start, end in [
        (TINY_START, TINY_START),
        (TINY_START + timedelta(1), middle),
        (middle + timedelta(1), TINY_END),
    ]:
        assert _run(start, end).success
    incremental = _tables(data_layer / "offline.duckdb")

    # ...gives the same feature groups as one run over every day on a fresh store.
    fresh = tmp_path / "fresh.duckdb"
    monkeypatch.setenv("FTI_DUCKDB_PATH", str(fresh))
    monkeypatch.setenv("FTI_ONLINE_PATH", str(tmp_path / "fresh.sqlite"))
    assert _run().success
    assert _tables(fresh) == incremental


def test_failing_blocking_contract_stops_downstream(data_layer: Path) -> None:
    assert _run(
        selection=["raw_cards", "raw_merchants", "stg_cards", "card_profile_features"]
    ).success
    # Corrupt the feature group: a duplicate (card_id, event_time) row breaks its contract.
    con = duckdb.connect(str(data_layer / "offline.duckdb"))
    con.execute(
        "insert into card_profile_features_v1 select * from card_profile_features_v1 limit 1"
    )
    con.close()
    from fti_assets.definitions import defs

    # The contract check and the online copy downstream of the feature group, in one run.
    selection = dg.AssetSelection.assets("online_card_profile_features") | dg.AssetSelection.checks(
        dg.AssetCheckKey(dg.AssetKey("card_profile_features"), "card_profile_features_contract")
    )
    result = materialize_graph(
        defs,
        start=TINY_START,
        end=TINY_END,
        resources=_resources(),
        selection=selection,
        raise_on_error=False,
    )
    evaluations = {c.asset_check_key.name: c.passed for c in result.get_asset_check_evaluations()}
    assert evaluations.get("card_profile_features_contract") is False
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "online_card_profile_features" not in materialized
    assert not result.success
