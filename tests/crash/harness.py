"""A reusable harness for crash trials: kill an operation with SIGKILL at a random moment.

A kind of trial is a :class:`CrashKind`: an operation on a work folder, the invariants that must
hold however it was interrupted, and a summary of its result. One trial:

1. ``setup(workdir)`` prepares a fresh folder (in the test process);
2. a child process (``python -c`` in the project root, in a session of its own) imports the
   operation's module, prints a ready line, and runs ``operation(workdir)``; after a delay drawn
   uniformly from ``delay_s`` — counted from the ready line, so imports do not use up the window
   — the child's whole process group gets SIGKILL (grandchildren too: a ``dbt`` subprocess, the
   Dagster multiprocess executor's steps). A trial whose operation finished before the kill
   still counts (the uninterrupted case); the report's ``killed`` says how many were cut short,
   so choose ``delay_s`` to span the operation's duration in a fresh process;
3. ``check(workdir)`` asserts the invariants on what the kill left;
4. ``operation(workdir)`` runs again to completion (in the test process), ``summary(workdir)``
   must equal the summary of an uninterrupted run on a fresh folder, and ``check`` runs again.

The operation runs in the child by name, so it must be a module-level function of an importable
module (a test module is fine). To crash a command-line program, have the operation run it with
:mod:`subprocess`: it is in the process group and dies with the child. Summaries should leave out
what differs between two clean runs (timestamps, temporary paths).

Trials per kind come from ``FTI_CRASH_TRIALS`` (default 3; ``make soak`` runs 20) and the random
delays from ``FTI_CRASH_SEED`` (default: a fresh seed, printed). Each run prints one line per kind,
``<kind>: trials=N failures=F killed=K seed=S``; a failing trial's message names its folder,
which is kept for inspection.

Usage::

    REGISTER = CrashKind("register a model", register_in, setup=..., check=..., summary=...,
                         delay_s=(0.0, 0.05))

    def test_crash_register(tmp_path):
        report = run_crash_trials(REGISTER, tmp_path)
        assert report.failures == []
"""

from __future__ import annotations

import importlib
import os
import random
import select
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TRIALS_ENV = "FTI_CRASH_TRIALS"
SEED_ENV = "FTI_CRASH_SEED"
DEFAULT_TRIALS = 3
READY = "crash-harness: ready"
DONE = "crash-harness: done"
READY_TIMEOUT_S = 120.0

_CHILD = "from tests.crash.harness import child_main; child_main()"


@dataclass(frozen=True)
class CrashKind:
    """One kind of crash trial (see the module docstring for how a trial runs)."""

    name: str
    operation: Callable[[Path], object]  # module-level: the child imports it by name
    setup: Callable[[Path], None]
    check: Callable[[Path], None]
    summary: Callable[[Path], object]
    delay_s: tuple[float, float]  # kill after uniform(low, high) seconds from the ready line

    def __post_init__(self) -> None:
        qualname = getattr(self.operation, "__qualname__", "")
        if "<" in qualname or "." in qualname:
            raise ValueError(
                f"operation {qualname!r} of crash kind {self.name!r} is not a module-level "
                "function; the child process imports it by name"
            )
        low, high = self.delay_s
        if not 0 <= low <= high:
            raise ValueError(f"delay_s {self.delay_s} of {self.name!r}: expected 0 <= low <= high")


@dataclass
class CrashReport:
    kind: str
    trials: int
    seed: int
    killed: int = 0  # trials whose operation the kill cut short
    failures: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"{self.kind}: trials={self.trials} failures={len(self.failures)} "
            f"killed={self.killed} seed={self.seed}"
        )


def trials_from_env() -> int:
    raw = os.environ.get(TRIALS_ENV, str(DEFAULT_TRIALS))
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{TRIALS_ENV}={raw!r}; expected a positive integer")
    return int(raw)


def seed_from_env() -> int:
    raw = os.environ.get(SEED_ENV)
    if raw is None:
        return random.SystemRandom().randrange(2**31)
    if not raw.isdigit():
        raise ValueError(f"{SEED_ENV}={raw!r}; expected a non-negative integer")
    return int(raw)


def child_main() -> None:
    """Entry point of the child: ``python -c ... MODULE FUNCTION WORKDIR``."""
    module_name, function_name, workdir = sys.argv[1:]
    operation = getattr(importlib.import_module(module_name), function_name)
    sys.stdout.write(READY + "\n")
    sys.stdout.flush()
    operation(Path(workdir))
    sys.stdout.write("\n" + DONE + "\n")  # after whatever the operation printed
    sys.stdout.flush()


def _start(kind: CrashKind, workdir: Path) -> subprocess.Popen[str]:
    with (workdir / "child.stderr").open("w") as stderr:
        return subprocess.Popen(
            [
                sys.executable,
                "-c",
                _CHILD,
                kind.operation.__module__,
                kind.operation.__qualname__,
                str(workdir),
            ],
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            start_new_session=True,  # its own process group: the kill reaches its children too
        )


def _wait_ready(child: subprocess.Popen[str]) -> None:
    assert child.stdout is not None
    ready, _, _ = select.select([child.stdout], [], [], READY_TIMEOUT_S)
    line = child.stdout.readline() if ready else ""
    if line.strip() != READY:
        child.kill()
        child.wait()
        raise RuntimeError(
            f"the child did not start within {READY_TIMEOUT_S:g}s (exit code "
            f"{child.returncode}, first line {line!r})"
        )


def _kill_group(child: subprocess.Popen[str]) -> None:
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # the child and all of its group already exited: nothing left to kill
    child.wait()


def _crash(kind: CrashKind, workdir: Path, delay: float) -> bool:
    """Run the operation in a child and kill it; True when the kill cut the operation short."""
    child = _start(kind, workdir)
    try:
        _wait_ready(child)
        time.sleep(delay)
    finally:
        _kill_group(child)
    assert child.stdout is not None
    finished = DONE in child.stdout.read().splitlines()
    child.stdout.close()
    if child.returncode not in (0, -signal.SIGKILL):
        stderr = (workdir / "child.stderr").read_text()
        raise RuntimeError(f"the operation failed on its own (exit {child.returncode}): {stderr}")
    return not finished


def _recover(kind: CrashKind, workdir: Path, expected: object) -> None:
    """Check what the kill left, re-run the operation, compare with an uninterrupted run."""
    kind.check(workdir)
    kind.operation(workdir)
    actual = kind.summary(workdir)
    assert actual == expected, f"re-run gives {actual!r}; an uninterrupted run gives {expected!r}"
    kind.check(workdir)


def run_crash_trials(
    kind: CrashKind, root: Path, *, trials: int | None = None, seed: int | None = None
) -> CrashReport:
    """Run the trials of ``kind`` in folders under ``root``; print and return the report."""
    trials = trials_from_env() if trials is None else trials
    seed = seed_from_env() if seed is None else seed
    rng = random.Random(seed)
    report = CrashReport(kind.name, trials, seed)
    slug = "".join(c if c.isalnum() else "-" for c in kind.name)
    reference = root / f"{slug}-uninterrupted"
    reference.mkdir(parents=True)
    kind.setup(reference)
    kind.operation(reference)
    kind.check(reference)
    expected = kind.summary(reference)
    for number in range(trials):
        workdir = root / f"{slug}-{number}"
        workdir.mkdir(parents=True)
        delay = rng.uniform(*kind.delay_s)
        outcome = "not started"
        try:
            kind.setup(workdir)
            interrupted = _crash(kind, workdir, delay)
            report.killed += interrupted
            outcome = "killed mid-operation" if interrupted else "finished before the kill"
            _recover(kind, workdir, expected)
        except Exception:  # every failing trial is reported and the others still run
            report.failures.append(
                f"trial {number} ({outcome}, kill after {delay * 1000:.1f} ms, folder "
                f"{workdir}):\n{traceback.format_exc()}"
            )
    print(report.line())
    for failure in report.failures:
        print(failure)
    return report
