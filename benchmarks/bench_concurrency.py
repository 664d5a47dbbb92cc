"""Many processes on one lake: a reader and the registry while a backfill writes, and two
overlapping daily runs against the same two runs one after the other.

On the prepared world (benchmarks/world.py), with its champion trained (so the registry has a
version):

* **A reader while a backfill writes**: the same queries a notebook would run, measured in this
  process on the idle lake, then again while another process backfills: it rewrites every day
  of ``raw_transactions`` into a scratch table, one ``replace_partitions`` commit per day, over
  and over until the reader is done (the scratch table is dropped afterwards). p50/p99 per
  query; a read error would be counted, not hidden.
* **The registry while the lake is written**: ``ModelRegistry.list`` in this process and the
  ``fti models list`` command (a fresh process each call: start-up included), idle and during
  the same backfill.
* **Two overlapping daily runs**: ``dagster asset materialize --partition DAY`` of the daily
  assets (ingest, dbt daily models, Polars card windows, their checks: as
  tests/test_concurrent_runs.py launches them) for the world's last two days, first one after
  the other, then both at once; wall time from launch to the last exit. The instance is the
  project's dagster.yaml (the dbt steps share a pool of one), the multiprocess executor of the
  definitions. The days' feature-group rows are compared after both.

Run alone: ``python -m benchmarks.bench_concurrency --scale quick``.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from benchmarks.common import Section, cli_main, machine_load, percentiles
from benchmarks.world import ROOT, World, ensure_trained, prepared
from fti_assets.lib.core.settings import LakeConfig
from fti_assets.lib.registry.model_registry import ModelRegistry
from fti_assets.lib.store.offline import (
    Replacement,
    connect,
    connection,
    quote_ident,
    read_frame,
    replace_partitions,
)
from fti_assets.specs.feature_groups import FEATURE_GROUPS

BIN = Path(sys.executable).parent
SCRATCH = "bench_backfill_transactions"
START_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Plan:
    query_samples: int
    registry_samples: int
    cli_samples: int


PLANS = {
    "quick": Plan(query_samples=20, registry_samples=50, cli_samples=3),
    "full": Plan(query_samples=100, registry_samples=200, cli_samples=10),
}

# The daily assets two overlapping runs materialize (as tests/test_concurrent_runs.py).
DAILY = (
    "raw_transactions",
    "raw_fraud_labels",
    "int_card_daily_activity",
    "int_merchant_daily_activity",
    "int_merchant_fraud_reports",
    "card_transaction_features",
    "card_daily_features",
    "merchant_daily_features",
)
DAILY_GROUPS = ("card_transaction_features", "card_daily_features", "merchant_daily_features")


# --- the backfill writer (module level: it runs in a spawned process) ------------------------


def backfill(catalog: str, data_path: str, days: list[str], stop: str, status: str) -> None:
    """Rewrite each day of raw_transactions into the scratch table, one commit per day, round
    after round, until ``stop`` exists; ``status`` gets the commit count after each commit and
    a JSON summary at the end."""
    con = connect(LakeConfig(catalog, data_path))
    commits, rows, t0 = 0, 0, time.perf_counter()
    while not Path(stop).exists():
        for day in days:
            frame = read_frame(con, "select * from raw_transactions where landing_date = ?", [day])
            replace_partitions(
                con,
                [Replacement(SCRATCH, frame, "landing_date = ?", [day])],
                message=f"benchmark backfill {day}",
            )
            commits, rows = commits + 1, rows + frame.height
            Path(status).write_text(str(commits))
            if Path(stop).exists():
                break
    summary = {"commits": commits, "rows": rows, "seconds": time.perf_counter() - t0}
    Path(status).write_text(json.dumps(summary))
    con.close()


@contextmanager
def backfilling(world: World, work: Path) -> Iterator[dict[str, Any]]:
    """A backfill writing the lake in another process for the duration of the block (from its
    first commit on); yields a dict that gets its summary when it has stopped."""
    stop, status = work / "stop", work / "status"
    days = [(world.start + timedelta(days=n)).isoformat() for n in range(world.plan.days)]
    ctx = mp.get_context("spawn")
    writer = ctx.Process(
        target=backfill,
        args=(world.lake.catalog, world.lake.data_path, days, str(stop), str(status)),
    )
    writer.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not status.exists():
        if not writer.is_alive() or time.monotonic() > deadline:
            writer.terminate()
            raise RuntimeError(f"the backfill writer made no commit (exit {writer.exitcode})")
        time.sleep(0.05)
    summary: dict[str, Any] = {}
    try:
        yield summary
    finally:
        stop.touch()
        writer.join()
    if writer.exitcode != 0:
        raise RuntimeError(f"the backfill writer exited with {writer.exitcode}")
    summary.update(json.loads(status.read_text()))
    with connection(world.lake) as con:
        con.execute(f"drop table if exists {quote_ident(SCRATCH)}")


# --- what is measured while it writes (in this process) --------------------------------------


Probe = Callable[[], object]


def _registry(world: World) -> ModelRegistry:
    return ModelRegistry(world.settings.registry_path, world.settings.layout.models_dir)


@contextmanager
def _probes(world: World) -> Iterator[dict[str, Probe]]:
    """Name → one timed call. Queries use one read-only connection, as a notebook keeps."""
    con = connect(world.lake, read_only=True)
    daily = quote_ident(FEATURE_GROUPS["card_daily_features"].table)
    cards = [c for (c,) in con.execute(f"select distinct card_id from {daily}").fetchall()]
    windows = quote_ident(FEATURE_GROUPS["card_transaction_features"].table)
    rng = random.Random(0)
    registry = _registry(world)

    def connect_and_count() -> object:
        with connection(world.lake, read_only=True) as fresh_con:
            return fresh_con.execute(f"select count(*) from {windows}").fetchall()

    probes: dict[str, Probe] = {
        "query: one card's card_daily_features rows (point lookup)": lambda: con.execute(
            f"select * from {daily} where card_id = ?", [rng.choice(cards)]
        ).fetchall(),
        "query: transactions and amount per day over raw_transactions (scan)": lambda: con.execute(
            "select landing_date, count(*), sum(amount) from raw_transactions group by 1"
        ).fetchall(),
        "query: connect read-only + count(*) of card_transaction_features": connect_and_count,
        "registry: ModelRegistry.list() in process": registry.list,
        "registry: `fti models list` (a new process per call)": lambda: subprocess.run(
            [str(BIN / "fti"), "models", "list"], env=world.env, check=True, capture_output=True
        ),
    }
    try:
        yield probes
    finally:
        con.close()


@dataclass(frozen=True)
class Latency:
    p50_ms: float
    p99_ms: float
    samples: int
    errors: int
    first_error: str = ""


def _sample(probe: Probe, n: int) -> Latency:
    """``n`` timed calls after one untimed warm-up call (cold caches are not the question)."""
    probe()
    times, errors = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        try:
            probe()
        except Exception as exc:  # a failed read is what this measures: record it, go on
            errors.append(f"{type(exc).__name__}: {exc}")
            continue
        times.append(time.perf_counter() - t0)
    stats = percentiles(times) if times else {"p50_us": float("nan"), "p99_us": float("nan")}
    first = errors[0][:300] if errors else ""
    return Latency(stats["p50_us"] / 1000, stats["p99_us"] / 1000, len(times), len(errors), first)


def _samples(plan: Plan, name: str) -> int:
    if name.startswith("registry: `fti"):
        return plan.cli_samples
    return plan.registry_samples if name.startswith("registry") else plan.query_samples


def _measure_all(probes: dict[str, Probe], plan: Plan) -> dict[str, Latency]:
    return {name: _sample(probe, _samples(plan, name)) for name, probe in probes.items()}


def reader_section(world: World, plan: Plan) -> Section:
    section = Section(
        f"Reading the lake and the registry while a backfill writes ({world.size})",
        [
            "probe",
            "idle p50 ms",
            "idle p99 ms",
            "during backfill p50 ms",
            "during backfill p99 ms",
            "p50 ratio",
            "p99 ratio",
            "samples (idle / during)",
            "errors during",
        ],
    )
    section.notes.append(machine_load())
    with _probes(world) as probes, tempfile.TemporaryDirectory(prefix="fti-bench-") as tmp:
        idle = _measure_all(probes, plan)
        with backfilling(world, Path(tmp)) as writer:
            t0 = time.perf_counter()
            busy = _measure_all(probes, plan)
            window = time.perf_counter() - t0
    for name in probes:
        a, b = idle[name], busy[name]
        section.add(
            name,
            a.p50_ms,
            a.p99_ms,
            b.p50_ms,
            b.p99_ms,
            b.p50_ms / a.p50_ms,
            b.p99_ms / a.p99_ms,
            f"{a.samples} / {b.samples}",
            b.errors,
        )
        for phase, latency in (("idle", a), ("during the backfill", b)):
            if latency.errors:
                section.notes.append(
                    f"{name}, {phase}: {latency.errors} failed call(s); the first: "
                    f"{latency.first_error}"
                )
    versions = len(_registry(world).list())
    section.notes += [
        f"The backfill made {writer['commits']} commits ({writer['rows']:,} rows, "
        f"{writer['commits'] / writer['seconds']:.1f} commits/s) while the {window:.0f} s of "
        "probes ran; every probe ran idle first, then during the backfill, one after the other.",
        "Queries run in this process on one read-only lake connection kept open (the connect "
        "probe opens a new one each time, as `fti sql` does); the registry holds "
        f"{versions} version(s). p99 of few samples is their maximum.",
        "On 2 shared cores the writer competes for CPU as well as for the lake: the ratios "
        "include both.",
    ]
    return section


# --- two overlapping daily runs --------------------------------------------------------------


def _launch(world: World, day: date) -> subprocess.Popen:
    return subprocess.Popen(
        [
            str(BIN / "dagster"),
            "asset",
            "materialize",
            "-m",
            "fti_assets.definitions",
            "--select",
            ",".join(DAILY),
            "--partition",
            day.isoformat(),
        ],
        env=world.env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _runs(world: World, days: list[date], *, together: bool) -> float:
    """Wall seconds to materialize ``days`` (one run each), at once or one after the other."""
    t0 = time.perf_counter()
    if together:
        procs = [_launch(world, day) for day in days]
    else:
        procs = []
        for day in days:
            procs.append(_launch(world, day))
            procs[-1].wait()
    for proc in procs:
        output = proc.communicate()[0]
        if proc.returncode != 0 or "RUN_SUCCESS" not in output:
            raise RuntimeError(f"a daily run failed (exit {proc.returncode}):\n{output[-4000:]}")
    return time.perf_counter() - t0


def _day_rows(world: World, days: list[date]) -> dict[str, tuple[int, int]]:
    """Per daily feature group: (rows, order-free content hash) of ``days``."""
    out = {}
    with connection(world.lake, read_only=True) as con:
        for name in DAILY_GROUPS:
            spec = FEATURE_GROUPS[name]
            row = con.execute(
                f"select count(*), coalesce(sum(hash(t)::hugeint), 0)::varchar "
                f"from {quote_ident(spec.table)} as t "
                f"where {quote_ident(spec.event_time)}::date between ? and ?",
                [min(days), max(days)],
            ).fetchone()
            out[name] = (int(row[0]), row[1])
    return out


def overlap_section(world: World) -> Section:
    days = [world.end - timedelta(days=1), world.end]
    section = Section(
        f"Two overlapping daily runs ({world.size}, days {days[0]} and {days[1]})",
        ["how", "wall s", "ratio (at once ÷ one after the other)"],
    )
    section.notes.append(machine_load())
    serial = _runs(world, days, together=False)
    after_serial = _day_rows(world, days)
    together = _runs(world, days, together=True)
    after_together = _day_rows(world, days)
    section.add("one after the other", serial, 1.0)
    section.add("both at once", together, together / serial)
    same = "identical" if after_serial == after_together else "DIFFERENT"
    counts = ", ".join(f"{name} {rows:,}" for name, (rows, _) in after_together.items())
    section.notes += [
        "Each run is `dagster asset materialize --partition DAY` of "
        + ", ".join(DAILY)
        + " (and their checks) in its own process, on a persistent instance with the project's "
        "dagster.yaml (the dbt steps share a pool of one: the second run's dbt step waits for "
        "the first's) and the definitions' multiprocess executor; the time includes each "
        "process's start-up and definitions load.",
        f"Rows of the two days in {', '.join(DAILY_GROUPS)} after the runs at once: {same} to "
        f"those after the serial runs (rows and an order-free hash of every row; rows: {counts}).",
    ]
    return section


def run(scale: str) -> list[Section]:
    plan = PLANS[scale]
    world = prepared(scale)
    ensure_trained(world)
    return [reader_section(world, plan), overlap_section(world)]


if __name__ == "__main__":
    cli_main(run, __doc__, PLANS)
