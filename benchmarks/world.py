"""One generated world shared by the benchmark modules of a run, prepared once per scale.

The pipeline, lake, concurrency (with the registry) and monitoring benchmarks all need the same
thing: a generated world (cards × days), ingested, with the feature pipelines run over every
day, and for some a trained champion that scored the last days. Preparing it is most of their
cost at full scale, so :func:`prepared` builds it once per process and scale (in a temporary
folder removed at exit), and the ``ensure_*`` steps add what a module needs, each at most once.

Every Dagster run here happens in a fresh process (``python -c``) with the world's environment
variables, through the same in-process ``materialize_graph`` that ``fti demo`` uses; the child
reports its wall time and each step's duration.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cache
from pathlib import Path

from benchmarks.bench_pit import write_features, write_labels
from fti_assets.lib.core.settings import LakeConfig, Settings
from fti_assets.lib.store.offline import lake_environment

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
START = date(2026, 9, 1)


@dataclass(frozen=True)
class WorldPlan:
    cards: int
    merchants: int
    days: int
    scored_days: int  # the last days the champion scores (the monitoring window)


# Quick is as short as the fraud model's dataset allows: 30 warm-up days (full trailing windows)
# and 14 days of label maturity leave it 6 days of examples.
PLANS = {
    "quick": WorldPlan(cards=1_000, merchants=200, days=50, scored_days=5),
    "full": WorldPlan(cards=100_000, merchants=5_000, days=90, scored_days=30),
}
# Labels × feature rows of the synthetic point-in-time join data (bench_pit's generator).
PIT_SIZES = {"quick": (20_000, 200_000), "full": (1_000_000, 10_000_000)}

RAW = ("raw_cards", "raw_merchants", "raw_transactions", "raw_fraud_labels")
DBT_MODELS = (
    "stg_cards",
    "stg_merchants",
    "stg_transactions",
    "stg_fraud_labels",
    "int_card_daily_activity",
    "int_merchant_daily_activity",
    "int_merchant_fraud_reports",
    "card_daily_features",
    "merchant_daily_features",
    "card_profile_features",
    "merchant_profile_features",
)
# What a daily run of the feature pipelines rebuilds: the partitioned dbt models and the Polars
# card windows (reference data and staging views only change when reference files do).
DAILY_FEATURES = (
    "int_card_daily_activity",
    "int_merchant_daily_activity",
    "int_merchant_fraud_reports",
    "card_daily_features",
    "merchant_daily_features",
    "card_transaction_features",
)
FEATURES = (*DBT_MODELS, "card_transaction_features")
MODEL = "fraud_model"
RETRAINING_JOB = f"{MODEL}_retraining"
PREDICTIONS = "fraud_predictions"
DAILY_MONITORING = (
    f"{MODEL}_feature_drift_report",
    f"{MODEL}_prediction_drift_report",
    f"{MODEL}_estimated_performance",
    f"{MODEL}_performance_report",
)


def environment(data_dir: Path, start: date, end: date) -> dict[str, str]:
    """The variables that point every process (Dagster, dbt, the CLI) at ``data_dir``."""
    return {
        **os.environ,
        "FTI_DATA_DIR": str(data_dir),
        **lake_environment(LakeConfig.under(data_dir / "lake")),
        "FTI_ONLINE_PATH": str(data_dir / "online.sqlite"),
        "FTI_REGISTRY_PATH": str(data_dir / "registry.sqlite"),
        "FTI_START_DATE": start.isoformat(),
        "FTI_END_DATE": end.isoformat(),
        "DAGSTER_HOME": str(data_dir / "dagster_home"),
        "DAGSTER_TELEMETRY_DISABLED": "1",
    }


@dataclass(frozen=True)
class RunTimes:
    """A Dagster run in a child process: its wall time and each successful step's seconds."""

    wall: float
    steps: dict[str, float]
    run_id: str = ""

    def step(self, key: str) -> float:
        return self.steps.get(key, 0.0)

    def slowest_first(self) -> list[tuple[str, float]]:
        return sorted(self.steps.items(), key=lambda kv: -kv[1])

    def describe_steps(self) -> str:
        """The steps, slowest first: ``"step_a 1.2s, step_b 0.3s"``."""
        return ", ".join(f"{step} {seconds:.1f}s" for step, seconds in self.slowest_first())


# A child process materializes a selection over a window (or executes a job) and prints JSON
# step timings.
_MATERIALIZE = """
import json, sys, time
from datetime import date
import dagster as dg
from fti_assets.definitions import defs
from fti_assets.demo import materialize_graph
target, start, end = sys.argv[1], date.fromisoformat(sys.argv[2]), date.fromisoformat(sys.argv[3])
run_config = json.loads(sys.argv[4]) if len(sys.argv) > 4 else None
t0 = time.perf_counter()
if target.startswith("job:"):
    result = defs.get_job_def(target[4:]).execute_in_process(run_config=run_config,
                                                             raise_on_error=False)
else:
    selection = dg.AssetSelection.from_coercible(target.split(","))
    result = materialize_graph(defs, selection=selection, start=start, end=end,
                               run_config=run_config, raise_on_error=False)
wall = time.perf_counter() - t0
steps = {}
for event in result.all_events:
    if event.event_type_value == "STEP_SUCCESS":
        steps[event.step_key] = event.event_specific_data.duration_ms / 1000
print("RESULT" + json.dumps({"wall": wall, "steps": steps, "success": result.success,
                             "run_id": result.run_id}))
"""


def materialize(
    env: dict[str, str], target: str, start: date, end: date, run_config: dict | None = None
) -> RunTimes:
    """Materialize ``target`` (comma-separated asset keys, or ``job:<name>``) over the days
    [start, end] in a fresh process (with ``run_config`` when given); raise with the child's
    output when the run fails."""
    extra = [json.dumps(run_config)] if run_config is not None else []
    out = subprocess.run(
        [
            PYTHON,
            "-W",
            "ignore",
            "-c",
            _MATERIALIZE,
            target,
            start.isoformat(),
            end.isoformat(),
            *extra,
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT")), None)
    result = json.loads(line[len("RESULT") :]) if line else None
    if out.returncode != 0 or result is None or not result["success"]:
        raise RuntimeError(
            f"materialize {target} [{start}, {end}] failed:\n{out.stdout[-3000:]}\n"
            f"{out.stderr[-3000:]}"
        )
    return RunTimes(wall=result["wall"], steps=result["steps"], run_id=result["run_id"])


def timed(cmd: list[str], env: dict[str, str], cwd: Path = ROOT) -> float:
    """Wall seconds of a command run to completion (its output kept out of the report)."""
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - t0


@dataclass
class World:
    """A generated world and what has been run on it so far."""

    scale: str
    plan: WorldPlan
    data_dir: Path
    timings: dict[str, float] = field(default_factory=dict)
    retraining: RunTimes | None = None
    scored: bool = False

    @property
    def start(self) -> date:
        return START

    @property
    def end(self) -> date:
        return START + timedelta(days=self.plan.days - 1)

    @property
    def env(self) -> dict[str, str]:
        return environment(self.data_dir, self.start, self.end)

    @property
    def settings(self) -> Settings:
        return Settings.for_data_dir(self.data_dir)

    @property
    def lake(self) -> LakeConfig:
        return self.settings.lake

    @property
    def size(self) -> str:
        return f"{self.plan.cards:,} cards × {self.plan.days} days"

    @property
    def scored_days(self) -> tuple[date, date]:
        return self.end - timedelta(days=self.plan.scored_days - 1), self.end


def generate(env: dict[str, str], data_dir: Path, plan: WorldPlan) -> float:
    """Write a world of ``plan``'s size into ``data_dir`` with `fti generate`: wall seconds."""
    cmd = [PYTHON, "-m", "fti_assets.cli", "generate", "--cards", str(plan.cards), "--merchants",
           str(plan.merchants), "--days", str(plan.days), "--start", START.isoformat(),
           "--data-dir", str(data_dir)]  # fmt: skip
    return timed(cmd, env)


@cache
def prepared(scale: str) -> World:
    """The world of ``scale``: generated, ingested, every feature pipeline run over every day
    (``timings`` holds the wall time of each stage: generate, ingest, features)."""
    plan = PLANS[scale]
    work = Path(tempfile.mkdtemp(prefix=f"fti-bench-world-{scale}-"))
    atexit.register(shutil.rmtree, work, ignore_errors=True)
    world = World(scale=scale, plan=plan, data_dir=work / "data")
    home = Path(world.env["DAGSTER_HOME"])
    home.mkdir(parents=True)
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    world.timings["generate"] = generate(world.env, world.data_dir, plan)
    for stage, assets in (("ingest", RAW), ("features", FEATURES)):
        world.timings[stage] = materialize(world.env, ",".join(assets), world.start, world.end).wall
    return world


def ensure_trained(world: World) -> RunTimes:
    """Run the model's retraining job once on the world (dataset → model → evaluation → gates
    → champion); its step times are what a recovery from a breach costs."""
    if world.retraining is None:
        world.retraining = materialize(world.env, f"job:{RETRAINING_JOB}", world.start, world.end)
    return world.retraining


def ensure_scored(world: World) -> None:
    """The champion's batch predictions for the world's last ``scored_days`` days."""
    if not world.scored:
        ensure_trained(world)
        first, last = world.scored_days
        world.timings["batch scoring"] = materialize(world.env, PREDICTIONS, first, last).wall
        world.scored = True


@dataclass(frozen=True)
class PitFiles:
    labels: Path
    features: Path
    n_labels: int
    n_features: int

    @property
    def size(self) -> str:
        return f"{self.n_labels:,} labels × {self.n_features:,} feature rows"


@cache
def pit_files(scale: str) -> PitFiles:
    """bench_pit's synthetic labels and features (100k entities, 5 float features), written
    once per process and scale to Parquet."""
    n_labels, n_features = PIT_SIZES[scale]
    work = Path(tempfile.mkdtemp(prefix=f"fti-bench-pit-{scale}-"))
    atexit.register(shutil.rmtree, work, ignore_errors=True)
    files = PitFiles(work / "labels.parquet", work / "features.parquet", n_labels, n_features)
    write_features(files.features, n_features, seed=1)
    write_labels(files.labels, n_labels, seed=2)
    return files
