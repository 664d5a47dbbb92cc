"""Shared helpers for the benchmarks: timing, peak memory in a fresh process, markdown tables.

Every benchmark module exposes ``run(scale: str) -> Section`` where ``scale`` is ``"quick"``
(seconds, used to smoke-test the benchmark code) or ``"full"`` (the sizes the issues ask for).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Section:
    """One heading in BENCHMARKS.md: a table plus free-text notes."""

    title: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *values: Any) -> None:
        self.rows.append(list(values))

    def to_markdown(self) -> str:
        lines = [f"## {self.title}", ""]
        lines.append("| " + " | ".join(self.columns) + " |")
        lines.append("|" + "|".join("---" for _ in self.columns) + "|")
        for row in self.rows:
            lines.append("| " + " | ".join(_fmt(v) for v in row) + " |")
        if self.notes:
            lines.append("")
            lines.extend(f"- {note}" for note in self.notes)
        lines.append("")
        return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.3g}"
    return str(value)


def best_of(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, Any]:
    """Fastest wall time in seconds over ``repeat`` calls, and the last call's result."""
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def percentiles(samples_s: list[float]) -> dict[str, float]:
    """p50/p99 in microseconds of a list of durations in seconds."""
    ordered = sorted(samples_s)
    n = len(ordered)
    return {
        "p50_us": ordered[n // 2] * 1e6,
        "p99_us": ordered[min(n - 1, int(n * 0.99))] * 1e6,
        "mean_us": statistics.fmean(ordered) * 1e6,
    }


def _child(fn: Callable[..., Any], args: tuple, queue: mp.Queue) -> None:
    t0 = time.perf_counter()
    fn(*args)
    elapsed = time.perf_counter() - t0
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    queue.put((elapsed, peak_kib * 1024))


def in_fresh_process(fn: Callable[..., Any], *args: Any) -> tuple[float, int]:
    """Run ``fn(*args)`` in a new spawned process: (wall seconds, peak RSS bytes of that process).

    A fresh process per contender keeps one contender's memory from inflating the next one's
    peak. ``fn`` must be a module-level function so that it can be pickled.
    """
    ctx = mp.get_context("spawn")
    queue: mp.Queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(fn, args, queue))
    proc.start()
    elapsed, peak = queue.get()
    proc.join()
    if proc.exitcode != 0:
        raise RuntimeError(f"benchmark child {fn.__name__} exited with {proc.exitcode}")
    return elapsed, peak


def cli_main(run: Callable[[str], list[Section]], doc: str | None, scales: Iterable[str]) -> None:
    """`python -m benchmarks.bench_<area> --scale quick|full`: run one module, print markdown."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0] if doc else None)
    parser.add_argument("--scale", choices=sorted(scales), default="quick")
    args = parser.parse_args()
    for section in run(args.scale):
        print(section.to_markdown())


def mib(n_bytes: float) -> float:
    return n_bytes / 2**20


def machine_load() -> str:
    """A note on how busy the machine was (other processes share its cores)."""
    return (
        f"machine while measuring: load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
