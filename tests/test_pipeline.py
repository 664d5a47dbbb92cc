"""The whole asset graph materialized in-process on a temporary DuckDB file."""

import json
import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from fti_assets.defs.transform.assets import dbt_resource
from fti_assets.demo import materialize_graph
from fti_assets.lib.core.settings import LakeConfig, Settings
from fti_assets.lib.registry.model_registry import ModelRegistry
from fti_assets.lib.store.offline import connect, connection, read_frame
from fti_assets.lib.training.reproduce import reproduce
from fti_assets.resources import ModelGatesResource, default_resources
from fti_assets.specs.feature_groups import FEATURE_GROUPS
from fti_assets.specs.feature_views import view_of_model
from fti_assets.specs.labels import FRAUD_LABEL
from fti_assets.specs.models import model_spec
from tests.conftest import TINY_DAYS, TINY_START

pytestmark = [pytest.mark.slow]

TINY_END = TINY_START + timedelta(days=TINY_DAYS - 1)
# The tiny data set has 24 days: shorter warm-up and label maturity than the defaults, and a
# small model, so that the training stage has rows and runs in seconds.
TRAINING_CONFIG = {
    "fraud_training_dataset": {"config": {"warmup_days": 3, "label_maturity_days": 5}},
    "fraud_model": {"config": {"n_estimators": 80, "min_child_samples": 20}},
    "card_risk_training_dataset": {"config": {"warmup_days": 3, "label_maturity_days": 3}},
    "card_risk_score": {"config": {"n_estimators": 60, "min_child_samples": 20}},
}
# A model that cannot learn: one shallow tree on a tiny learning rate.
BAD_MODEL_CONFIG = {
    "fraud_model": {
        "config": {
            "n_estimators": 1,
            "num_leaves": 2,
            "learning_rate": 0.001,
            "early_stopping_rounds": 0,
            "min_child_samples": 20,
        }
    }
}
FEATURE_PIPELINES = [
    "raw_cards",
    "raw_merchants",
    "raw_transactions",
    "raw_fraud_labels",
    "stg_cards",
    "stg_merchants",
    "stg_transactions",
    "stg_fraud_labels",
    "int_card_daily_activity",
    "int_merchant_daily_activity",
    "int_merchant_fraud_reports",
    *FEATURE_GROUPS,
]


def _resources() -> dict:
    # The tiny test split holds a few dozen fraud cases: a floor of 0.1 still rejects a model
    # that learned nothing (PR-AUC ~ the 1% base rate), without flaking on a good one.
    return {
        **default_resources(Settings.from_env()),
        "dbt": dbt_resource(),
        "model_gates": ModelGatesResource(pr_auc_floor=0.1),
    }


def _run(
    start: date = TINY_START,
    end: date = TINY_END,
    selection=None,
    run_config: dict | None = None,
    instance: dg.DagsterInstance | None = None,
    raise_on_error: bool = True,
):
    from fti_assets.definitions import defs

    if run_config and isinstance(selection, list):  # config only for the selected assets
        run_config = {k: v for k, v in run_config.items() if k in selection}
    return materialize_graph(
        defs,
        start=start,
        end=end,
        resources=_resources(),
        selection=selection,
        run_config={"ops": run_config} if run_config else None,
        instance=instance,
        raise_on_error=raise_on_error,
    )


def _lake() -> LakeConfig:
    return Settings.from_env().lake


def _tables(lake: LakeConfig) -> dict[str, list[tuple]]:
    """Every feature-group table, sorted, for exact comparisons."""
    con = connect(lake, read_only=True)
    try:
        out = {}
        for spec in FEATURE_GROUPS.values():
            cols = ", ".join(spec.columns)
            out[spec.name] = con.execute(f"select {cols} from {spec.table} order by all").fetchall()
        return out
    finally:
        con.close()


def _checks(result) -> dict[str, bool]:
    return {
        c.asset_check_key.to_user_string(): c.passed for c in result.get_asset_check_evaluations()
    }


def _materialized(result, asset: str) -> dict:
    events = [
        e.event_specific_data.materialization
        for e in result.get_asset_materialization_events()
        if e.asset_key.to_user_string() == asset
    ]
    assert events, f"{asset} was not materialized"
    return {k: v.value for k, v in events[0].metadata.items()}


def _materialize_process(
    selection: list[str], ops_config: dict, home: Path, data_layer: Path
) -> subprocess.Popen:
    """A `dagster asset materialize` process (multiprocess executor, its own instance)."""
    home.mkdir()
    ops_config = {k: v for k, v in ops_config.items() if k in selection}
    return subprocess.Popen(
        [
            str(Path(sys.executable).with_name("dagster")), "asset", "materialize",
            "-m", "fti_assets.definitions", "--select", ",".join(selection),
            "--config-json", json.dumps({"ops": ops_config}),
        ],
        env={**os.environ, "DAGSTER_HOME": str(home)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def test_whole_graph_then_gates_and_rescoring(data_layer: Path, tmp_path: Path) -> None:
    with dg.instance_for_test() as instance:
        result = _run(run_config=TRAINING_CONFIG, instance=instance)
        assert result.success
        # Every check with ERROR severity passes (a WARN, e.g. drift of the 30-day windows
        # filling up over a 24-day world, is reported, not a failure).
        failed = [
            c.asset_check_key.to_user_string()
            for c in result.get_asset_check_evaluations()
            if not c.passed and c.severity == dg.AssetCheckSeverity.ERROR
        ]
        assert not failed, failed

        con = connect(_lake(), read_only=True)
        counts = read_frame(
            con,
            "select (select count(*) from raw_transactions) as tx, "
            "(select count(*) from quarantine where source = 'raw_transactions') as q, "
            "(select count(*) from fraud_predictions) as predicted",
        ).row(0, named=True)
        con.close()
        manifest = json.loads((data_layer / "landing" / "_manifest.json").read_text())
        bad = sum(sum(kinds.values()) for kinds in manifest["bad_rows"].values())
        assert counts["q"] == bad  # every injected bad row is quarantined, nothing else
        assert counts["tx"] == manifest["counts"]["transactions"]
        assert counts["predicted"] == counts["tx"]  # every accepted transaction is scored

        settings = Settings.from_env()
        registry = ModelRegistry(settings.registry_path, settings.layout.models_dir)
        assert registry.resolve("fraud_model", "champion").version == 1  # first model passes
        evaluation = _materialized(result, "fraud_model_evaluation")
        assert evaluation["test_pr_auc"] > 0 and evaluation["oracle_pr_auc"] > 0
        assert _materialized(result, "fraud_predictions")["model_version"] == 1
        # The backfill scored its days in chunks (one feature read and PIT join per chunk): a
        # day scored alone gives every example the same probability.
        middle = TINY_START + timedelta(days=TINY_DAYS // 2)
        backfilled = _scores(middle)
        assert _run(middle, middle, selection=["fraud_predictions"], instance=instance).success
        assert backfilled.height > 0 and _scores(middle).equals(backfilled)
        _assert_monitoring(result, data_layer, instance)

        # `fti models reproduce`: rebuilding the dataset version and retraining gives the same
        # dataset content hash and a byte-identical model.
        model = registry.get("fraud_model", 1)
        report = reproduce(
            registry, _lake(), data_layer / "datasets", name="fraud_model", version=1,
            dataset_name="fraud_training_dataset", view=view_of_model(registry, model),
            label=FRAUD_LABEL,
        )  # fmt: skip
        assert report.dataset_matches and report.model_matches

        # A worse challenger is stopped by the gate, marked rejected, never champion.
        training = [
            "fraud_training_dataset",
            "fraud_model",
            "fraud_model_evaluation",
            "fraud_model_champion",
        ]
        bad_run = _run(
            selection=training,
            run_config={**TRAINING_CONFIG, **BAD_MODEL_CONFIG},
            instance=instance,
            raise_on_error=False,
        )
        assert _checks(bad_run)["fraud_model_evaluation:beats_champion"] is False
        assert not any(
            e.asset_key.to_user_string() == "fraud_model_champion"
            for e in bad_run.get_asset_materialization_events()
        )
        assert registry.get("fraud_model", 2).status == "rejected"
        assert registry.resolve("fraud_model", "champion").version == 1

        # The champion asset materialized alone (the UI allows it) takes the challenger alias
        # (v2, rejected): it refuses, and neither the alias nor the status moves.
        assert registry.resolve("fraud_model", "challenger").version == 2
        alone = _run(selection=["fraud_model_champion"], instance=instance, raise_on_error=False)
        assert not alone.success
        assert registry.resolve("fraud_model", "champion").version == 1
        assert registry.get("fraud_model", 2).status == "rejected"

        # Two training runs at once (two processes, as two users or a sensor and a user would
        # launch them) keep their own versions: each evaluates and gates the model it
        # registered itself, not the other run's (versions pass within a run).
        runs = [
            _materialize_process(training[:-1], config, tmp_path / f"home{i}", data_layer)
            for i, config in enumerate([TRAINING_CONFIG, {**TRAINING_CONFIG, **BAD_MODEL_CONFIG}])
        ]
        outputs = [run.communicate(timeout=600)[0] for run in runs]
        assert [run.returncode for run in runs] == [0, 1], outputs  # the bad one fails a gate
        by_run = {}
        for version in (3, 4):
            model = registry.get("fraud_model", version)
            by_run[model.tags["dagster_run_id"]] = model
        evaluated = [
            json.loads(
                (data_layer / "reports" / "fraud_model" / f"v{v}" / "evaluation.json").read_text()
            )
            for v in (3, 4)
        ]
        for report in evaluated:  # each run evaluated the version it trained
            assert by_run[report["run_id"]].version == report["model_version"]
        assert sorted(m.status for m in by_run.values()) == ["rejected", "validated"]

        # A good retrain passes, is promoted, and re-scoring a day uses the new champion.
        assert _run(selection=training, run_config=TRAINING_CONFIG, instance=instance).success
        assert registry.resolve("fraud_model", "champion").version == 5
        rescored = _run(TINY_END, TINY_END, selection=["fraud_predictions"], instance=instance)
        assert _materialized(rescored, "fraud_predictions")["model_version"] == 5
        con = connect(_lake(), read_only=True)
        versions = read_frame(
            con,
            "select model_version, count(*) as n from fraud_predictions "
            "where score_day = ? group by 1",
            [TINY_END],
        )
        con.close()
        assert versions["model_version"].to_list() == [5]


def _scores(day: date) -> pl.DataFrame:
    with connection(_lake(), read_only=True) as con:
        return read_frame(
            con,
            "select example_id, model_version, probability from fraud_predictions "
            "where score_day = ? order by example_id",
            [day],
        )


def _assert_monitoring(result, data_layer: Path, instance: dg.DagsterInstance) -> None:
    """Every day was monitored; the fast drift layer agrees with Evidently on the sample; a day
    without scored rows and days whose labels have not arrived give recorded results."""
    drift = _materialized(result, "fraud_model_feature_drift_report")
    assert drift["status"] == "tested" and drift["evidently_disagreements"] == "none"
    html = Path(drift["evidently_report_path"])
    assert html.exists() and html.stat().st_size > 10_000
    with connection(_lake(), read_only=True) as con:
        days = {
            table: read_frame(con, f"select count(distinct {day}) from {table}").item()
            for table, day in [
                ("monitoring_drift_summary", "day"),
                ("monitoring_prediction_drift", "day"),
                ("monitoring_estimated_performance", "day"),
                ("monitoring_performance", "report_day"),
            ]
        }
        newest = read_frame(
            con,
            "select scored_day, status, label_coverage from monitoring_performance "
            "where report_day = ? and model_name = 'fraud_model' order by scored_day",
            [TINY_END],
        )
    assert set(days.values()) == {TINY_DAYS}, days
    # Labels arrive 1-30 days late: the report day's own rows have (almost) no label yet, the
    # oldest days of the window more; a day is final once the model's label maturity has passed.
    maturity = model_spec("fraud_model").monitoring.label_maturity_days
    for scored_day, status in zip(newest["scored_day"], newest["status"], strict=True):
        age = (TINY_END - scored_day).days
        if age != maturity:  # (on the boundary day it depends on the hour of the report)
            expected = {"final"} if age > maturity else {"provisional", "no_labels"}
            assert status in expected, (scored_day, age, status)
    assert newest["label_coverage"][-1] < newest["label_coverage"][0]

    # A day without scored rows: recorded as such, no verdict, no crash.
    with connection(_lake()) as con:
        con.execute("delete from fraud_predictions where score_day = ?", [TINY_END])
    empty = _run(TINY_END, TINY_END, selection=["fraud_model_feature_drift_report",
                 "fraud_model_estimated_performance"], instance=instance)  # fmt: skip
    assert _materialized(empty, "fraud_model_feature_drift_report")["status"] == "no_rows"
    assert _materialized(empty, "fraud_model_estimated_performance")["status"] == "no_rows"
    assert _run(TINY_END, TINY_END, selection=["fraud_predictions"], instance=instance).success


def test_rematerializing_is_idempotent(data_layer: Path) -> None:
    assert _run(selection=FEATURE_PIPELINES).success
    before = _tables(_lake())
    assert all(rows for rows in before.values())
    assert _run(selection=FEATURE_PIPELINES).success
    assert _tables(_lake()) == before  # nothing appended twice


def test_incremental_days_equal_a_full_refresh(
    data_layer: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Day by day and in windows (like daily runs and a backfill)...
    middle = TINY_START + timedelta(days=10)
    for start, end in [
        (TINY_START, TINY_START),
        (TINY_START + timedelta(1), middle),
        (middle + timedelta(1), TINY_END),
    ]:
        assert _run(start, end, selection=FEATURE_PIPELINES).success
    incremental = _tables(_lake())

    # ...gives the same feature groups as one run over every day on a fresh store.
    fresh = LakeConfig.under(tmp_path / "fresh")
    monkeypatch.setenv("FTI_LAKE_CATALOG", fresh.catalog)
    monkeypatch.setenv("FTI_LAKE_DATA_PATH", fresh.data_path)
    assert _run(selection=FEATURE_PIPELINES).success
    assert _tables(fresh) == incremental


def test_failing_blocking_contract_stops_downstream(data_layer: Path) -> None:
    assert _run(
        selection=["raw_cards", "raw_merchants", "stg_cards", "card_profile_features"]
    ).success
    # Corrupt the feature group: a duplicate (card_id, event_time) row breaks its contract.
    con = connect(_lake())
    con.execute(
        "insert into card_profile_features_v1 select * from card_profile_features_v1 limit 1"
    )
    con.close()

    # The contract check and the online copy downstream of the feature group, in one run.
    selection = dg.AssetSelection.assets("online_card_profile_features") | dg.AssetSelection.checks(
        dg.AssetCheckKey(dg.AssetKey("card_profile_features"), "card_profile_features_contract")
    )
    result = _run(selection=selection, raise_on_error=False)
    assert _checks(result)["card_profile_features:card_profile_features_contract"] is False
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "online_card_profile_features" not in materialized
    assert not result.success


def _ingest_job() -> dg.JobDefinition:
    """The raw ingest assets as a job of the real definitions (their executor, resources)."""
    from fti_assets.definitions import defs

    job = dg.define_asset_job("ingest_reference_data", selection=["raw_cards", "raw_merchants"])
    return dg.Definitions.merge(defs, dg.Definitions(jobs=[job])).resolve_job_def(job.name)


def test_ui_runs_execute_steps_in_forked_processes(data_layer: Path, tmp_path: Path) -> None:
    # What `dagster dev` and schedules do: the definitions' own executor (multiprocess, each step
    # forked from a server that preloaded the definitions) and a persistent instance.
    job = _ingest_job()
    start_method = job.executor_def.apply_config_mapping({}).value["config"]["start_method"]
    assert start_method == {"forkserver": {"preload_modules": ["fti_assets.definitions"]}}
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    with dg.instance_for_test(temp_dir=str(dagster_home)) as instance:
        with dg.execute_job(dg.reconstructable(_ingest_job), instance) as result:
            assert result.success
            step_pids = {
                event.pid for event in result.all_events if event.event_type_value == "STEP_START"
            }
    assert len(step_pids) == 2 and os.getpid() not in step_pids  # each step in its own process
    con = connect(_lake(), read_only=True)
    try:
        counts = {
            table: con.execute(f"select count(*) from {table}").fetchall()[0][0]
            for table in ("raw_cards", "raw_merchants")
        }
    finally:
        con.close()
    assert counts == {"raw_cards": 400, "raw_merchants": 40}  # the tiny data set's sizes
