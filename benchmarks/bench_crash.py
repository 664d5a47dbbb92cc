"""Crash trials: how many SIGKILLs per kind of write, and how many left a store inconsistent.

Runs the crash-trial tests (tests/crash: each kind kills a real subprocess at random points of
one write, checks every store's invariants, re-runs the write and compares it with an
uninterrupted run) as ``make soak`` does, ``FTI_CRASH_TRIALS=N pytest tests/crash -v -s``, and
reads the line each kind prints, ``<kind>: trials=N failures=F killed=K seed=S``, and the tests
that failed outside their trials (they print no kind line). N is 20 at full
scale (``make soak``) and 3 at quick (``make test``).

Run alone: ``python -m benchmarks.bench_crash --scale quick``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import Section, cli_main, machine_load

ROOT = Path(__file__).resolve().parents[1]
PYTEST = str(Path(sys.executable).parent / "pytest")
TIMEOUT_S = 3 * 3600
# The harness's own tests (a torn write that must fail): not trials of the platform's writes.
HARNESS_TESTS = "tests/crash/test_harness.py"
TRIALS = {"quick": 3, "full": 20}
# With -v -s a kind's line follows its test's node id ("path::test_name ") on the same line.
_KIND_LINE = re.compile(
    r"^(?:\S+::\S+ )?(?P<kind>.+?): trials=(?P<trials>\d+) failures=(?P<failures>\d+) "
    r"killed=(?P<killed>\d+) seed=(?P<seed>\d+)\s*$"
)
_FAILED_TEST = re.compile(r"^(FAILED|ERROR) (?P<test>\S+)(?: - (?P<reason>.*))?$")
_SUMMARY = re.compile(r"^=*\s*(\d+ (passed|failed).*?)\s*=*$")


@dataclass(frozen=True)
class KindResult:
    kind: str
    trials: int
    failures: int
    killed: int
    seed: int


def parse_kinds(output: str) -> list[KindResult]:
    """Every ``<kind>: trials=… failures=… killed=… seed=…`` line of a pytest run's output."""
    results = []
    for line in output.splitlines():
        match = _KIND_LINE.match(line.strip())
        if match:
            results.append(
                KindResult(
                    kind=match["kind"].strip(),
                    trials=int(match["trials"]),
                    failures=int(match["failures"]),
                    killed=int(match["killed"]),
                    seed=int(match["seed"]),
                )
            )
    return results


def run(scale: str) -> list[Section]:
    trials = TRIALS[scale]
    section = Section(
        f"Crash trials: SIGKILL at random points, {trials} per kind",
        ["kind", "trials", "killed mid-write", "failures", "seed"],
    )
    section.notes.append(machine_load())
    # A wide terminal keeps the reasons in pytest's short summary of failed tests.
    env = {**os.environ, "FTI_CRASH_TRIALS": str(trials), "COLUMNS": "400"}
    t0 = time.perf_counter()
    out = subprocess.run(
        [PYTEST, "tests/crash", "-v", "-s", "-p", "no:cacheprovider", f"--ignore={HARNESS_TESTS}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    elapsed = time.perf_counter() - t0
    kinds = parse_kinds(out.stdout)
    for kind in kinds:
        section.add(kind.kind, kind.trials, kind.killed, kind.failures, kind.seed)
    summary = next(
        (m[1] for ln in reversed(out.stdout.splitlines()) if (m := _SUMMARY.match(ln.strip()))),
        f"no pytest summary (exit {out.returncode})",
    )
    section.notes += [
        f"`FTI_CRASH_TRIALS={trials} pytest tests/crash -v -s` (as `make soak`, verbose so "
        "that each kind's line follows its test's id; without the harness's own tests): "
        f"{summary}, exit code "
        f"{out.returncode}, {elapsed:.0f} s for {len(kinds)} kind(s) and "
        f"{sum(k.trials for k in kinds)} trials.",
        "A trial counts as killed mid-write when the kill came before the write finished; the "
        "others check the uninterrupted case. A failure is a trial after which a store's "
        "invariants did not hold or the re-run differed from an uninterrupted run; replay one "
        "with FTI_CRASH_SEED=<seed>.",
    ]
    failed = [m for ln in out.stdout.splitlines() if (m := _FAILED_TEST.match(ln.strip()))]
    for match in failed:
        section.add(f"{match['test']} (no kind line)", "", "", f"the test {match[1].lower()}", "")
        section.notes.append(
            f"{match['test']} {match[1].lower()} outside its trials (so it printed no kind "
            f"line): {match['reason'] or 'see the pytest output'}"
        )
    if not kinds:
        section.notes.append(f"No kind line found; the run's last output:\n{out.stdout[-2000:]}")
    return [section]


if __name__ == "__main__":
    cli_main(run, __doc__, TRIALS)
