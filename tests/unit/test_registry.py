import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from fti_assets.lib.predictor import Predictor, artifact_sha256
from fti_assets.lib.registry import (
    ModelNotFoundError,
    ModelRegistry,
    ModelVersion,
    TamperedModelError,
    read_alias_file,
)
from fti_assets.lib.training import TrainParams, train_model
from tests.unit.synthetic import synthetic_frame

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("artifact")
    params = TrainParams(n_estimators=10, early_stopping_rounds=None)
    frame = synthetic_frame(2000, 0)
    train_model(frame, synthetic_frame(500, 1), "is_fraud", ["amount"], ["channel"], params, out)
    return out


@pytest.fixture()
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "offline.duckdb", tmp_path / "models")


def _register(
    registry: ModelRegistry, artifact: Path, name: str = "fraud", **extra
) -> ModelVersion:
    return registry.register(
        name,
        artifact,
        training_dataset_version="ds-2026-09-01",
        feature_group_versions={"card_features": 2, "merchant_features": 1},
        params={"num_leaves": 31},
        metrics={"pr_auc": 0.42, "roc_auc": np.float64(0.9), "undefined": float("nan")},
        code_version="abc123",
        **extra,
    )


def test_register_copies_the_artifact_under_increasing_versions(
    registry: ModelRegistry, artifact: Path
) -> None:
    first = _register(registry, artifact, tags={"owner": "fraud-team"})
    second = _register(registry, artifact)
    other = _register(registry, artifact, name="churn")

    assert (first.version, second.version, other.version) == (1, 2, 1)
    assert first.artifact_path == registry.models_dir / "fraud" / "1"
    assert artifact_sha256(first.artifact_path) == artifact_sha256(artifact) == first.sha256
    stored = registry.get("fraud", 1)
    assert stored.training_dataset_version == "ds-2026-09-01"
    assert stored.feature_group_versions == {"card_features": 2, "merchant_features": 1}
    assert stored.metrics == {"pr_auc": 0.42, "roc_auc": 0.9, "undefined": None}
    assert stored.params == {"num_leaves": 31}
    assert (stored.code_version, stored.status, stored.tags) == ("abc123", "candidate", first.tags)
    assert stored.created_at == first.created_at
    assert [(v.name, v.version) for v in registry.list()] == [
        ("churn", 1),
        ("fraud", 1),
        ("fraud", 2),
    ]
    assert [v.version for v in registry.list("fraud")] == [1, 2]


def test_code_version_defaults_to_the_git_sha(registry: ModelRegistry, artifact: Path) -> None:
    git = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    expected = git.stdout.strip() if git.returncode == 0 else "unknown"

    version = registry.register(
        "fraud",
        artifact,
        training_dataset_version="ds",
        feature_group_versions={},
        params={},
        metrics={},
    )

    assert version.code_version == expected


def test_ten_threads_registering_get_ten_distinct_versions(
    registry: ModelRegistry, artifact: Path
) -> None:
    barrier = threading.Barrier(10)

    def register_one(_: int) -> int:
        barrier.wait()
        return _register(registry, artifact).version

    with ThreadPoolExecutor(max_workers=10) as pool:
        versions = list(pool.map(register_one, range(10)))

    assert sorted(versions) == list(range(1, 11))
    assert [v.version for v in registry.list("fraud")] == list(range(1, 11))
    assert sorted(p.name for p in (registry.models_dir / "fraud").iterdir()) == sorted(
        str(v) for v in range(1, 11)
    )


_CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from fti_assets.lib.registry import ModelRegistry

    db, models, artifact, ready, go = map(Path, sys.argv[1:])
    registry = ModelRegistry(db, models)
    ready.touch()
    while not go.exists():
        time.sleep(0.005)
    version = registry.register(
        "fraud", artifact, training_dataset_version="ds", feature_group_versions={},
        params={}, metrics={}, code_version="test",
    )
    print(version.version)
    """
)


def test_ten_processes_registering_get_ten_distinct_versions(
    tmp_path: Path, artifact: Path
) -> None:
    db, models, go = tmp_path / "offline.duckdb", tmp_path / "models", tmp_path / "go"
    ready = [tmp_path / f"ready-{i}" for i in range(10)]
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(db), str(models), str(artifact), str(r), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in ready
    ]
    deadline = time.monotonic() + 120
    while not all(r.exists() for r in ready):
        assert time.monotonic() < deadline, "children did not start"
        assert all(c.poll() is None for c in children), [c.communicate() for c in children]
        time.sleep(0.05)
    go.touch()  # all ten race from here
    outputs = [c.communicate(timeout=120) for c in children]

    assert [c.returncode for c in children] == [0] * 10, [err for _, err in outputs]
    assert sorted(int(out) for out, _ in outputs) == list(range(1, 11))
    registry = ModelRegistry(db, models)
    assert [v.version for v in registry.list("fraud")] == list(range(1, 11))


def test_registry_waits_for_another_process_holding_the_database(
    tmp_path: Path, artifact: Path
) -> None:
    registry = ModelRegistry(tmp_path / "offline.duckdb", tmp_path / "models")
    impatient = ModelRegistry(registry.duckdb_path, registry.models_dir, lock_timeout_s=0.2)
    ready = tmp_path / "holding"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; from pathlib import Path; "
            "con = duckdb.connect(sys.argv[1]); Path(sys.argv[2]).touch(); time.sleep(2)",
            str(registry.duckdb_path),
            str(ready),
        ]
    )
    while not ready.exists():
        assert holder.poll() is None
        time.sleep(0.01)

    with pytest.raises(TimeoutError, match="locked"):
        impatient.list()
    version = _register(registry, artifact)  # retries until the holder exits

    holder.wait(timeout=30)
    assert version.version == 1


def test_tampered_artifact_is_refused(registry: ModelRegistry, artifact: Path) -> None:
    version = _register(registry, artifact)
    frame = synthetic_frame(50, 3)
    expected = Predictor.load(artifact).predict(frame)
    np.testing.assert_array_equal(registry.load("fraud", 1).predict(frame), expected)

    model_file = version.artifact_path / "model.txt"
    model_file.write_text(model_file.read_text().replace("leaf_value=", "leaf_value=1", 1))

    with pytest.raises(TamperedModelError, match=version.sha256):
        registry.load("fraud", 1)


def test_promote_and_rollback_walk_the_alias_history(
    registry: ModelRegistry, artifact: Path
) -> None:
    for _ in range(3):
        _register(registry, artifact)
    assert registry.resolve("fraud") is None

    for version in (1, 2, 3):
        registry.promote("fraud", version)
    registry.promote("fraud", 3)  # already champion: no new history entry

    assert registry.resolve("fraud").version == 3
    assert registry.get("fraud", 3).aliases == ["champion"]
    assert registry.rollback("fraud").version == 2
    assert registry.get("fraud", 3).aliases == []
    assert registry.rollback("fraud").version == 1
    with pytest.raises(ValueError, match="no previous holder"):
        registry.rollback("fraud")
    history = registry.alias_history("fraud")
    assert [(h.action, h.version, h.previous_version) for h in history] == [
        ("promote", 1, None),
        ("promote", 2, 1),
        ("promote", 3, 2),
        ("rollback", 2, 3),
        ("rollback", 1, 2),
    ]
    assert registry.resolve("fraud").version == 1


def test_aliases_are_independent(registry: ModelRegistry, artifact: Path) -> None:
    _register(registry, artifact)
    _register(registry, artifact)

    registry.promote("fraud", 1)
    registry.promote("fraud", 2, alias="challenger")

    assert registry.resolve("fraud").version == 1
    assert registry.resolve("fraud", "challenger").version == 2
    with pytest.raises(ModelNotFoundError, match="shadow"):
        registry.rollback("fraud", alias="shadow")


def test_rejected_version_cannot_become_champion(registry: ModelRegistry, artifact: Path) -> None:
    _register(registry, artifact)
    registry.set_status("fraud", 1, "rejected", reason="gate beats_champion: pr_auc 0.30 < 0.42")

    with pytest.raises(ValueError, match="beats_champion"):
        registry.promote("fraud", 1)
    stored = registry.get("fraud", 1)
    assert (stored.status, stored.status_reason) == (
        "rejected",
        "gate beats_champion: pr_auc 0.30 < 0.42",
    )
    assert registry.resolve("fraud") is None
    assert registry.promote("fraud", 1, alias="challenger").aliases == ["challenger"]


def test_champion_rollback_skips_rejected_versions(registry: ModelRegistry, artifact: Path) -> None:
    for version in (1, 2, 3):
        _register(registry, artifact)
        registry.promote("fraud", version)
    registry.set_status("fraud", 2, "rejected", reason="slice regression")

    assert registry.rollback("fraud").version == 1


def test_bad_status_and_unknown_versions_are_refused(
    registry: ModelRegistry, artifact: Path
) -> None:
    _register(registry, artifact)

    with pytest.raises(ValueError, match="'shipped'"):
        registry.set_status("fraud", 1, "shipped")
    with pytest.raises(ModelNotFoundError, match="version 7"):
        registry.promote("fraud", 7)
    with pytest.raises(ModelNotFoundError, match="champion"):
        registry.load("fraud", "champion")
    with pytest.raises(ValueError, match="model name"):
        _register(registry, artifact, name="../escape")


def test_alias_file_follows_promote_and_rollback(registry: ModelRegistry, artifact: Path) -> None:
    models = registry.models_dir
    first, second = _register(registry, artifact), _register(registry, artifact)
    assert read_alias_file(models, "fraud", "champion") is None

    registry.promote("fraud", 1)
    registry.promote("fraud", 2)
    registry.promote("fraud", 1, alias="challenger")
    champion = read_alias_file(models, "fraud", "champion")

    assert champion is not None
    assert (champion["version"], champion["sha256"]) == (2, second.sha256)
    assert Path(champion["path"]) == second.artifact_path
    assert read_alias_file(models, "fraud", "challenger")["version"] == 1
    assert read_alias_file(models, "fraud", "shadow") is None
    Predictor.load(Path(champion["path"]), expected_sha256=champion["sha256"])

    registry.rollback("fraud")

    assert read_alias_file(models, "fraud", "champion")["version"] == first.version
    assert not [p for p in (models / "fraud").iterdir() if p.name.endswith(".tmp")]


def test_a_non_lightgbm_text_model_is_not_registered(
    registry: ModelRegistry, artifact: Path, tmp_path: Path
) -> None:
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "model.txt").write_bytes(b"\x80\x04\x95pickle")
    (fake / "transforms.json").write_bytes((artifact / "transforms.json").read_bytes())

    with pytest.raises(ValueError, match="LightGBM text model"):
        _register(registry, fake)
    assert registry.list() == []
    assert list((registry.models_dir / "fraud").iterdir()) == []
