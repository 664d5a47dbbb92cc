"""Crash trials of the model registry: registering a model and moving an alias, killed with
SIGKILL at random points (``FTI_CRASH_TRIALS`` per kind; ``make soak`` runs 20).

After each kill: every registry row has its verified artifact, aliases.json agrees with the
database once the registry has read it, no alias points at a missing, altered or (champion)
rejected version; re-running the operation gives what an uninterrupted run gives.
"""

import shutil
from pathlib import Path

import pytest

from fti_assets.lib.registry.model_registry import REJECTED
from fti_assets.lib.training.train import TrainParams, train_model
from tests.crash.harness import CrashKind, run_crash_trials
from tests.crash.registry_operations import (
    NAME,
    check_invariants,
    move_aliases,
    register,
    register_model,
    registry_at,
    summarize,
)
from tests.unit.synthetic import synthetic_frame


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("artifact")
    params = TrainParams(n_estimators=10, early_stopping_rounds=None)
    frame = synthetic_frame(2000, 0)
    train_model(frame, synthetic_frame(500, 1), "is_fraud", ["amount"], ["channel"], params, out)
    return out


def _with_champion(artifact: Path, versions: int):
    def setup(workdir: Path) -> None:
        shutil.copytree(artifact, workdir / "artifact")
        registry = registry_at(workdir)
        for number in range(1, versions + 1):
            register(registry, workdir, key=f"setup-{number}")
        registry.promote(NAME, 1)
        if versions >= 3:
            registry.set_status(NAME, 3, REJECTED, "pr_auc_floor: 0.1 < 0.25")

    return setup


def test_crash_while_registering_a_model(artifact: Path, tmp_path: Path) -> None:
    kind = CrashKind(
        "register a model",
        register_model,
        setup=_with_champion(artifact, versions=1),
        check=check_invariants,
        summary=summarize,
        delay_s=(0.0, 0.015),
    )

    report = run_crash_trials(kind, tmp_path)

    assert report.failures == [], "\n".join(report.failures)


def test_crash_while_moving_an_alias(artifact: Path, tmp_path: Path) -> None:
    kind = CrashKind(
        "move an alias",
        move_aliases,
        setup=_with_champion(artifact, versions=3),
        check=check_invariants,
        summary=summarize,
        delay_s=(0.0, 0.03),
    )

    report = run_crash_trials(kind, tmp_path)

    assert report.failures == [], "\n".join(report.failures)
