"""The feature pipelines end to end: dbt through Dagster vs plain dbt, one daily partition vs a
full refresh, training time, `fti demo` wall time and definitions load time.

Every contender runs on the same generated data in the same run. Each run gets its own data
folder and DuckDB file (environment variables), in a fresh process where timing matters.

Run alone: ``python -m benchmarks.bench_pipeline --scale quick``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from benchmarks.common import Section, cli_main
from fti_assets.lib.offline_store import lake_environment
from fti_assets.lib.settings import LakeConfig

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
DBT = str(Path(sys.executable).parent / "dbt")

SCALES = {
    "quick": {"cards": 1_000, "merchants": 200, "days": 30},
    "full": {"cards": 100_000, "merchants": 5_000, "days": 90},
}
START = date(2026, 9, 1)


def _env(data_dir: Path, days: int) -> dict[str, str]:
    end = START + timedelta(days=days - 1)
    return {
        **os.environ,
        "FTI_DATA_DIR": str(data_dir),
        **lake_environment(LakeConfig.under(data_dir / "lake")),
        "FTI_ONLINE_PATH": str(data_dir / "online.sqlite"),
        "FTI_REGISTRY_PATH": str(data_dir / "registry.sqlite"),
        "FTI_START_DATE": START.isoformat(),
        "FTI_END_DATE": end.isoformat(),
        "DAGSTER_HOME": str(data_dir / "dagster_home"),
    }


# A child process materializes a selection over a window and prints JSON step timings.
_MATERIALIZE = """
import json, sys, time
from datetime import date
import dagster as dg
from fti_assets.definitions import defs
from fti_assets.demo import materialize_graph
sel, start, end = sys.argv[1], date.fromisoformat(sys.argv[2]), date.fromisoformat(sys.argv[3])
selection = dg.AssetSelection.from_coercible(sel.split(",")) if sel != "*" else None
t0 = time.perf_counter()
result = materialize_graph(defs, selection=selection, start=start, end=end)
wall = time.perf_counter() - t0
steps = {}
for event in result.all_events:
    if event.event_type_value == "STEP_SUCCESS":
        steps[event.step_key] = event.event_specific_data.duration_ms / 1000
print("RESULT" + json.dumps({"wall": wall, "steps": steps, "success": result.success}))
"""


def _materialize(env: dict[str, str], selection: str, start: date, end: date) -> dict:
    out = subprocess.run(
        [PYTHON, "-W", "ignore", "-c", _MATERIALIZE, selection, start.isoformat(), end.isoformat()],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"materialize {selection} failed:\n{out.stderr[-3000:]}")
    return json.loads(line[len("RESULT") :])


def _timed(cmd: list[str], env: dict[str, str], cwd: Path = ROOT) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - t0


RAW = "raw_cards,raw_merchants,raw_transactions,raw_fraud_labels"
# What a daily run of the feature pipelines rebuilds: the partitioned dbt models and the Polars
# card windows (reference data and staging views only change when reference files do).
DAILY_FEATURES = (
    "int_card_daily_activity,int_merchant_daily_activity,int_merchant_fraud_reports,"
    "card_daily_features,merchant_daily_features,card_transaction_features"
)


def _dbt_keys() -> str:
    return (
        "stg_cards,stg_merchants,stg_transactions,stg_fraud_labels,int_card_daily_activity,"
        "int_merchant_daily_activity,int_merchant_fraud_reports,card_daily_features,"
        "merchant_daily_features,card_profile_features,merchant_profile_features"
    )


def run(scale: str) -> list[Section]:
    size = SCALES[scale]
    end = START + timedelta(days=size["days"] - 1)
    work = Path(tempfile.mkdtemp(prefix="fti-bench-pipeline-"))
    try:
        data = work / "data"
        env = _env(data, size["days"])
        t_gen = _timed(
            [
                PYTHON,
                "-m",
                "fti_assets.cli",
                "generate",
                "--cards",
                str(size["cards"]),
                "--merchants",
                str(size["merchants"]),
                "--days",
                str(size["days"]),
                "--start",
                START.isoformat(),
                "--data-dir",
                str(data),
            ],
            env,
        )
        raw = _materialize(env, RAW, START, end)

        # dbt through Dagster vs plain `dbt build` on the same project, data and window.
        plain_cmds = [
            [DBT, "build", "--exclude", "tag:daily", "--target-path", str(work / "t")],
            [
                DBT,
                "build",
                "--select",
                "tag:daily",
                "--target-path",
                str(work / "t"),
            ],
        ]
        dbt_env = {
            **env,
            "FTI_WINDOW_START": START.isoformat(),
            "FTI_WINDOW_END": end.isoformat(),
        }
        plain, dagster_steps, dagster_runs = [], [], []
        for _ in range(2):
            plain.append(sum(_timed(c, dbt_env, ROOT / "dbt_project") for c in plain_cmds))
            run_result = _materialize(env, _dbt_keys(), START, end)
            dagster_runs.append(run_result["wall"])
            dagster_steps.append(
                run_result["steps"]["dbt_reference_models"]
                + run_result["steps"]["dbt_daily_models"]
            )
        # Full refresh vs one daily partition of the feature pipelines (dbt + Polars).
        full = _materialize(env, DAILY_FEATURES, START, end)
        one_day = _materialize(env, DAILY_FEATURES, end, end)
        training = _materialize(
            env,
            "online_card_transaction_features,online_card_daily_features,"
            "online_merchant_daily_features,online_card_profile_features,"
            "online_merchant_profile_features,fraud_training_dataset,fraud_model,"
            "fraud_model_evaluation,fraud_model_champion",
            START,
            end,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)

    manifest_rows = f"{size['cards']:,} cards × {size['days']} days"
    pipeline = Section(
        f"Feature pipelines ({manifest_rows})",
        ["measurement", "time (s)", "alternative", "time (s)", "ratio", "goal"],
    )
    pipeline.add(
        "dbt build through Dagster: the two dbt asset steps",
        min(dagster_steps),
        "plain `dbt build` (same two selections)",
        min(plain),
        min(dagster_steps) / min(plain),
        "≤ 1.3×",
    )
    pipeline.add(
        "… the whole Dagster run (process start, definitions, event log)",
        min(dagster_runs),
        "plain `dbt build`",
        min(plain),
        min(dagster_runs) / min(plain),
        "",
    )
    pipeline.add(
        "one daily partition of the partitioned feature pipelines (dbt daily models + Polars)",
        one_day["wall"],
        f"full refresh of {size['days']} days",
        full["wall"],
        one_day["wall"] / full["wall"],
        "≤ 0.10×",
    )
    pipeline.add("generate landing files", t_gen, "", "", "", "")
    pipeline.add("ingest (4 raw assets, Pandera)", raw["wall"], "", "", "", "")
    steps = training["steps"]
    pipeline.add(
        "training dataset (PIT join of 5 groups)",
        steps.get("fraud_training_dataset", 0),
        "",
        "",
        "",
        "",
    )
    pipeline.add(
        "train fraud_model (LightGBM, 1 thread)", steps.get("fraud_model", 0), "", "", "", ""
    )
    pipeline.notes.append(
        "Dagster step times are the dbt steps' durations inside one in-process run (dbt "
        "subprocess and event streaming); the whole-run row adds "
        "Python start-up, loading the definitions and the run's event log. Plain dbt is the two "
        "`dbt build` commands' wall time (each a fresh process)."
    )
    for label, result in (("the full refresh", full), ("one daily partition", one_day)):
        steps = sorted(result["steps"].items(), key=lambda kv: -kv[1])[:6]
        pipeline.notes.append(
            f"step times of {label} (whole run {result['wall']:.1f}s): "
            + ", ".join(f"{k} {v:.1f}s" for k, v in steps)
        )
    return [pipeline, _demo_and_load_times(scale)]


def _demo_and_load_times(scale: str) -> Section:
    section = Section("Start-up and demo", ["measurement", "time (s)", "goal"])
    loads = [
        _timed([PYTHON, "-W", "ignore", "-c", "import fti_assets.definitions"], dict(os.environ))
        for _ in range(3)
    ]
    section.add("definitions load (`import fti_assets.definitions`, best of 3)", min(loads), "≤ 2")
    if scale == "full":
        with tempfile.TemporaryDirectory(prefix="fti-bench-demo-") as tmp:
            env = {**os.environ, "FTI_DATA_DIR": tmp, "DAGSTER_HOME": f"{tmp}/dagster_home"}
            for var in (
                "FTI_LAKE_CATALOG",
                "FTI_LAKE_DATA_PATH",
                "FTI_ONLINE_PATH",
                "FTI_REGISTRY_PATH",
                "FTI_START_DATE",
                "FTI_END_DATE",
            ):
                env.pop(var, None)
            os.makedirs(env["DAGSTER_HOME"])
            shutil.copy(ROOT / "dagster.yaml", env["DAGSTER_HOME"])
            section.add(
                "`fti demo` at default size (after install)",
                _timed([PYTHON, "-m", "fti_assets.cli", "demo"], env),
                "≤ 180",
            )
    return section


if __name__ == "__main__":
    cli_main(run, __doc__, SCALES)
