"""`fti scenario drift` as users run it (`make scenario`): the simulated daemon's contract.

What this test covers, on a tiny world with days held back: each simulated day is released into
the landing zone and ingested by the **landing sensor** (a run it requested, tagged with that
day), the **automation conditions** carry the day to the feature groups, the history that landed
before the loop is ingested before the first simulated day (the sensor is ticked until it is
quiet), the **retraining sensor** is ticked and asks for nothing the spec does not allow yet, and
the timeline (JSON, PNG) has a row per simulated day; the instance stays in the scenario's folder
(browsable with ``dagster dev``), and a second scenario in the same folder starts afresh.

What it does not cover, and why: drift → breach → retraining → promotion. The first model needs
51 landed days (30 warm-up days for the 30-day windows + 14 days of label maturity + 7 days of
examples, from the model spec), and once it is trained the platform scores and monitors every
landed day (one Evidently report per day): that catch-up alone takes minutes on a 2-core machine,
far over the ~90 s a test in `make test` may take. That part of the loop is covered piecewise by
tests/test_retraining_sensor.py (one run per breach, cooldown, first training),
tests/test_pipeline.py (training, gates, promotion) and tests/test_days_arrive.py (days through
automation), and end to end by `make scenario` (docs/scenario.md records a run).
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest

from fti_assets.defs.ingest.sensors import DAYS_TAG, SENSOR_NAME, TRIGGER_TAG
from fti_assets.lib.core.settings import PROJECT_ROOT
from fti_assets.scenario import DAGSTER_HOME, MARKER, ScenarioConfig, fresh_folder
from tests.processes import fti_env

pytestmark = [pytest.mark.slow]

START = ScenarioConfig().start
DAYS, INITIAL = 3, 2
DAY = [(START + timedelta(days=i)).isoformat() for i in range(DAYS)]


def _scenario(data_dir: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fti_assets.cli", "scenario", "drift", "--json",
         "--cards", "60", "--days", str(DAYS), "--initial-days", str(INITIAL),
         "--drift-from", "2", "--drift-kind", "covariate",
         "--data-dir", str(data_dir), "--out", str(out)],
        env=fti_env(),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip


def test_each_simulated_day_is_ingested_by_the_sensor_and_carried_by_automation(
    tmp_path: Path,
) -> None:
    data_dir, out = tmp_path / "scenario", tmp_path / "out"
    done = _scenario(data_dir, out)
    assert done.returncode == 0, done.stderr[-3000:]

    rows = json.loads(done.stdout)
    assert [r["day"] for r in rows] == DAY[INITIAL:]  # a row per simulated day, in order
    for row in rows:
        assert row["runs"] >= 2, row  # its ingestion, then the runs automation asked for
        # No model yet (the first needs 51 landed days): nothing scored, monitored or retrained.
        assert row["champion_version"] is None and row["retrain_run_id"] is None, row
    assert (out / "scenario_timeline.png").stat().st_size > 0
    assert json.loads((out / "scenario.json").read_text()) == rows

    with dg.instance_for_test(temp_dir=str(data_dir / DAGSTER_HOME)) as instance:
        ingests = instance.get_runs(dg.RunsFilter(tags={TRIGGER_TAG: SENSOR_NAME}))
        days_tags = sorted(r.tags[DAYS_TAG] for r in ingests if DAYS_TAG in r.tags)
        # The history in one run before the loop, then one run per released day.
        assert days_tags == sorted([f"{DAY[0]}..{DAY[INITIAL - 1]}", *DAY[INITIAL:]])
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in instance.get_runs())
        for asset in ("raw_transactions", "card_transaction_features", "card_daily_features"):
            assert instance.get_materialized_partitions(dg.AssetKey(asset)) == set(DAY), asset
        # The loop follows one model: the other model's retraining sensor never ran a job.
        assert not instance.get_runs(dg.RunsFilter(job_name="card_risk_score_retraining"))


def test_a_scenario_folder_is_cleared_and_any_other_folder_refused(tmp_path: Path) -> None:
    config = ScenarioConfig()
    previous = tmp_path / "previous"
    previous.mkdir()
    (previous / MARKER).write_text("{}")
    (previous / "lake").mkdir()
    fresh_folder(previous, config)
    assert sorted(p.name for p in previous.iterdir()) == [MARKER]
    assert json.loads((previous / MARKER).read_text())["drift_from"] == config.drift_from

    someone = tmp_path / "data"
    someone.mkdir()
    (someone / "registry.sqlite").write_text("")
    with pytest.raises(ValueError, match="not a scenario's folder"):
        fresh_folder(someone, config)
    assert (someone / "registry.sqlite").exists()
    # From the command line: a clean message naming the folder, no traceback.
    done = subprocess.run(
        [sys.executable, "-m", "fti_assets.cli", "scenario", "drift", "--data-dir", str(someone)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    assert "not a scenario's folder" in done.stdout and "Traceback" not in done.stdout + done.stderr
    assert (someone / "registry.sqlite").exists()
