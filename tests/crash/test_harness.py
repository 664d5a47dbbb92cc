"""The crash harness itself: it catches an operation that is not crash safe, and passes one
that is. The operations are toys that write a file, slowly enough for every kill to land."""

import os
import time
from pathlib import Path

import pytest

from tests.crash.harness import CrashKind, run_crash_trials

WHOLE = "all of it\n"


def write_in_place(workdir: Path) -> None:
    with (workdir / "out.txt").open("w") as handle:
        handle.write(WHOLE[:3])
        handle.flush()
        time.sleep(0.2)  # the kill lands here
        handle.write(WHOLE[3:])


def write_then_rename(workdir: Path) -> None:
    tmp = workdir / "out.txt.tmp"
    with tmp.open("w") as handle:
        handle.write(WHOLE[:3])
        handle.flush()
        time.sleep(0.2)  # the kill lands here
        handle.write(WHOLE[3:])
    os.replace(tmp, workdir / "out.txt")


def _check(workdir: Path) -> None:
    out = workdir / "out.txt"
    assert not out.exists() or out.read_text() == WHOLE, out.read_text()


def _kind(name: str, operation) -> CrashKind:
    return CrashKind(
        name,
        operation,
        setup=lambda workdir: None,
        check=_check,
        summary=lambda workdir: (workdir / "out.txt").read_text(),
        delay_s=(0.02, 0.1),
    )


def test_a_torn_write_is_reported_in_every_trial(tmp_path: Path) -> None:
    torn = "harness self-test, a torn write (failures expected)"
    report = run_crash_trials(_kind(torn, write_in_place), tmp_path, trials=2, seed=1)

    assert (report.trials, report.killed, len(report.failures)) == (2, 2, 2)
    assert "killed mid-operation" in report.failures[0] and "AssertionError" in report.failures[0]
    assert report.line() == f"{torn}: trials=2 failures=2 killed=2 seed=1"


def test_an_atomic_write_passes_every_trial(tmp_path: Path) -> None:
    atomic = "harness self-test, an atomic write"
    report = run_crash_trials(_kind(atomic, write_then_rename), tmp_path, trials=2, seed=1)

    assert (report.killed, report.failures) == (2, [])


def test_the_operation_must_be_importable_by_name() -> None:
    def nested(workdir: Path) -> None:
        return None

    with pytest.raises(ValueError, match="not a module-level function"):
        _kind("nested", nested)
