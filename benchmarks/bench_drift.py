"""Fast drift layer against Evidently's ``DataDriftPreset`` on the same N rows x 20 columns.

Data (generated with numpy, written once to Parquet in a temp dir): a reference and a current
frame of N rows each with 20 fraud-like columns: 10 continuous numeric ones (normal and
lognormal, 1% NaN), 2 integer counts, 2 numeric columns with at most 5 values, 4 categorical
strings (4, 12, 30 and 200 values) and 2 binary flags. The current frame shifts 6 of them, so
both verdicts occur.

Each contender runs in a fresh spawned process that reads both files (untimed) and then times:

* fast: ``detect_drift`` (``fti_assets.lib.monitoring.drift``) on every row;
* Evidently: ``run_data_drift`` (``fti_assets.lib.monitoring.evidently_report``): Polars to pandas,
  ``Dataset``, ``Report([DataDriftPreset()]).run`` and parsing ``snapshot.dict()``; no HTML.

Both get the same explicit column kinds. The per-column test and verdict of the two are compared
on the same rows; the peak RSS is that of each process. Goal at 1M rows x 20 columns on 2 cores:
fast at least 20x faster than Evidently and at most 6 s, with identical verdicts.

Run alone: ``python -m benchmarks.bench_drift --scale quick``.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from benchmarks.common import Section, cli_main, in_fresh_process, mib
from fti_assets.lib.monitoring.drift import CATEGORICAL, NUMERIC, ColumnKind


@dataclass(frozen=True)
class Plan:
    rows: tuple[int, ...]
    fast_repeats: int


PLANS = {
    "quick": Plan(rows=(50_000,), fast_repeats=3),
    "full": Plan(rows=(100_000, 1_000_000), fast_repeats=3),
}
CATEGORIES = {"channel": 4, "category": 12, "country": 30, "mcc": 200}
KINDS: dict[str, ColumnKind] = {
    **{f"num_{i}": NUMERIC for i in range(10)},
    "count_0": NUMERIC,
    "count_1": NUMERIC,
    "few_0": NUMERIC,
    "few_1": NUMERIC,
    **dict.fromkeys(CATEGORIES, CATEGORICAL),
    "flag_0": CATEGORICAL,
    "flag_1": CATEGORICAL,
}


# --- data ------------------------------------------------------------------------------------


def generate(rows: int, seed: int, shifted: bool) -> pl.DataFrame:
    """The 20 columns of :data:`KINDS`; ``shifted`` moves num_0, num_3, count_0, few_1,
    channel and flag_0."""
    rng = np.random.default_rng(seed)
    s = float(shifted)
    columns: dict[str, Any] = {}
    for i in range(10):
        shift = s * 0.3 if i in (0, 3) else 0.0
        values = rng.lognormal(3 + shift, 1, rows) if i % 2 else rng.normal(shift, 1, rows)
        values[rng.random(rows) < 0.01] = np.nan
        columns[f"num_{i}"] = values
    columns["count_0"] = rng.poisson(3 + s, rows)
    columns["count_1"] = rng.poisson(8, rows) + 11
    columns["few_0"] = rng.integers(0, 4, rows).astype(np.float64)
    columns["few_1"] = rng.integers(0, 3 if shifted else 5, rows).astype(np.float64)
    for name, levels in CATEGORIES.items():
        values = np.array([f"{name}_{i}" for i in range(levels)])
        weights = np.linspace(2.0, 1.0, levels)
        if shifted and name == "channel":
            weights = weights[::-1] ** 3
        columns[name] = rng.choice(values, rows, p=weights / weights.sum())
    columns["flag_0"] = (rng.random(rows) < 0.1 + 0.2 * s).astype(np.int64)
    columns["flag_1"] = rng.random(rows) < 0.5
    return pl.DataFrame(columns)


# --- children: one contender per fresh process -----------------------------------------------


def run_fast(reference_path: str, current_path: str, repeats: int, result_path: str) -> None:
    """Best of ``repeats`` calls of ``detect_drift`` on frames read beforehand."""
    from fti_assets.lib.monitoring.drift import detect_drift

    reference, current = pl.read_parquet(reference_path), pl.read_parquet(current_path)
    best_wall, best_cpu = float("inf"), float("inf")
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        result = detect_drift(reference, current, KINDS)
        best_wall = min(best_wall, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    verdicts = {c.column: [str(c.test), c.drifted] for c in result.columns}
    Path(result_path).write_text(
        json.dumps({"wall_s": best_wall, "cpu_s": best_cpu, "verdicts": verdicts})
    )


def run_evidently(reference_path: str, current_path: str, result_path: str) -> None:
    """One Evidently ``DataDriftPreset`` run (no HTML) on frames read beforehand."""
    from fti_assets.lib.monitoring.evidently_report import run_data_drift

    reference, current = pl.read_parquet(reference_path), pl.read_parquet(current_path)
    t0, c0 = time.perf_counter(), time.process_time()
    _, drift = run_data_drift(reference, current, KINDS)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    verdicts = {c.column: [str(c.test), c.drifted] for c in drift.columns}
    Path(result_path).write_text(json.dumps({"wall_s": wall, "cpu_s": cpu, "verdicts": verdicts}))


def _measure(fn: Callable[..., None], work: Path, *args: Any) -> tuple[dict[str, Any], float]:
    """Run ``fn(*args, result_path)`` in a fresh process: its JSON result and peak RSS MiB."""
    result_path = work / f"{fn.__name__}.json"
    _, peak = in_fresh_process(fn, *args, str(result_path))
    return json.loads(result_path.read_text()), mib(peak)


# --- section ---------------------------------------------------------------------------------


def run(scale: str) -> list[Section]:
    plan = PLANS[scale]
    section = Section(
        title=f"Drift: fast layer vs Evidently DataDriftPreset, N rows x {len(KINDS)} columns",
        columns=[
            "rows (reference = current)",
            "fast s",
            "fast CPU s",
            "Evidently s",
            "Evidently CPU s",
            "speed-up (Evidently s / fast s)",
            "fast peak RSS MiB",
            "Evidently peak RSS MiB",
            "identical test + verdict",
        ],
    )
    with tempfile.TemporaryDirectory(prefix="bench_drift_") as tmp:
        work = Path(tmp)
        for rows in plan.rows:
            reference_path, current_path = work / "reference.parquet", work / "current.parquet"
            generate(rows, seed=1, shifted=False).write_parquet(reference_path)
            generate(rows, seed=2, shifted=True).write_parquet(current_path)
            paths = (str(reference_path), str(current_path))
            fast, fast_peak = _measure(run_fast, work, *paths, plan.fast_repeats)
            evidently, evidently_peak = _measure(run_evidently, work, *paths)
            same = [c for c in KINDS if fast["verdicts"][c] == evidently["verdicts"][c]]
            section.add(
                f"{rows:,}",
                fast["wall_s"],
                fast["cpu_s"],
                evidently["wall_s"],
                evidently["cpu_s"],
                evidently["wall_s"] / fast["wall_s"],
                fast_peak,
                evidently_peak,
                f"{len(same)}/{len(KINDS)}",
            )
            tests = Counter(test for test, _ in evidently["verdicts"].values())
            drifted = sorted(c for c, (_, d) in evidently["verdicts"].items() if d)
            section.notes.append(
                f"{rows:,} rows: Evidently chose {dict(sorted(tests.items()))}; drifted by "
                f"Evidently: {drifted}; differing columns: "
                f"{sorted(set(KINDS) - set(same)) or 'none'}."
            )
    section.notes += [
        f"Fast: best of {plan.fast_repeats} calls in one fresh process; Evidently: one run "
        "(Polars to pandas, Dataset, Report.run, snapshot parsing; no HTML). Reading the Parquet "
        "files is not timed; peak RSS covers the whole child process.",
        "Goal at 1,000,000 rows: speed-up >= 20 and fast <= 6 s on 2 cores, identical verdicts.",
    ]
    return [section]


if __name__ == "__main__":
    cli_main(run, __doc__, PLANS)
