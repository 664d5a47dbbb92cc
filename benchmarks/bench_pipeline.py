"""The feature pipelines end to end: dbt through Dagster vs plain dbt, one daily partition vs a
full refresh, training time, `fti demo` wall time and definitions load time.

Every contender runs on the same generated data in the same run: the world benchmarks/world.py
prepares once per run (its generation and ingest times are reported here; the training times are
those of its retraining run, shared with bench_monitoring), in a fresh process where timing
matters.

Run alone: ``python -m benchmarks.bench_pipeline --scale quick``.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from benchmarks.common import Section, cli_main
from benchmarks.world import (
    DAILY_FEATURES,
    DBT_MODELS,
    PLANS,
    ROOT,
    START,
    ensure_trained,
    materialize,
    prepared,
    timed,
)

PYTHON = sys.executable
DBT = str(Path(sys.executable).parent / "dbt")


def run(scale: str) -> list[Section]:
    world = prepared(scale)
    env, end = world.env, world.end
    # dbt through Dagster vs plain `dbt build` on the same project, data and window.
    target = ["--target-path", str(world.data_dir.parent / "dbt-target")]
    plain_cmds = [
        [DBT, "build", "--exclude", "tag:daily", *target],
        [DBT, "build", "--select", "tag:daily", *target],
    ]
    dbt_env = {**env, "FTI_WINDOW_START": START.isoformat(), "FTI_WINDOW_END": end.isoformat()}
    plain, dagster_steps, dagster_runs = [], [], []
    for _ in range(2):
        plain.append(sum(timed(c, dbt_env, ROOT / "dbt_project") for c in plain_cmds))
        run_result = materialize(env, ",".join(DBT_MODELS), START, end)
        dagster_runs.append(run_result.wall)
        dagster_steps.append(
            run_result.steps["dbt_reference_models"] + run_result.steps["dbt_daily_models"]
        )
    # Full refresh vs one daily partition of the feature pipelines (dbt + Polars).
    full = materialize(env, ",".join(DAILY_FEATURES), START, end)
    one_day = materialize(env, ",".join(DAILY_FEATURES), end, end)
    training = ensure_trained(world)

    pipeline = Section(
        f"Feature pipelines ({world.size})",
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
        "… the whole in-process Dagster run (run set-up, every step, event log)",
        min(dagster_runs),
        "plain `dbt build`",
        min(plain),
        min(dagster_runs) / min(plain),
        "",
    )
    pipeline.add(
        "one daily partition of the partitioned feature pipelines (dbt daily models + Polars)",
        one_day.wall,
        f"full refresh of {world.plan.days} days",
        full.wall,
        one_day.wall / full.wall,
        "≤ 0.10×",
    )
    pipeline.add("generate landing files", world.timings["generate"], "", "", "", "")
    pipeline.add("ingest (4 raw assets, Pandera)", world.timings["ingest"], "", "", "", "")
    pipeline.add(
        "training dataset (PIT join of 5 groups)",
        training.step("fraud_training_dataset"),
        "",
        "",
        "",
        "",
    )
    pipeline.add(
        "train fraud_model (LightGBM, 1 thread)", training.step("fraud_model"), "", "", "", ""
    )
    pipeline.notes.append(
        "Dagster step times are the dbt steps' durations inside one in-process run (dbt "
        "subprocess and event streaming); the whole-run row is timed inside the child process "
        "around the run, so Python start-up and loading the definitions are not in it (see "
        "'definitions load' below). Plain dbt is the two "
        "`dbt build` commands' wall time (each a fresh process)."
    )
    pipeline.notes.append(
        "The world (generation, ingest) is the one benchmarks/world.py prepares once per run; "
        "the training rows are steps of its retraining run, also shown under 'Time to recover'."
    )
    for label, result in (("the full refresh", full), ("one daily partition", one_day)):
        steps = sorted(result.steps.items(), key=lambda kv: -kv[1])[:6]
        pipeline.notes.append(
            f"step times of {label} (whole run {result.wall:.1f}s): "
            + ", ".join(f"{k} {v:.1f}s" for k, v in steps)
        )
    return [pipeline, _demo_and_load_times(scale)]


def _demo_and_load_times(scale: str) -> Section:
    section = Section("Start-up and demo", ["measurement", "time (s)", "goal"])
    loads = [
        timed([PYTHON, "-W", "ignore", "-c", "import fti_assets.definitions"], dict(os.environ))
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
                timed([PYTHON, "-m", "fti_assets.cli", "demo"], env),
                "≤ 180",
            )
    return section


if __name__ == "__main__":
    cli_main(run, __doc__, PLANS)
