import fcntl
import json
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pytest

from fti_assets.lib.registry import model_registry as registry_module
from fti_assets.lib.registry.legacy import LegacyRegistryError
from fti_assets.lib.registry.model_registry import (
    ModelNotFoundError,
    ModelRegistry,
    ModelVersion,
    TamperedModelError,
    load_alias_file,
    read_alias_file,
    read_registry_aliases,
    registry_alias_seq,
)
from fti_assets.lib.registry.predictor import Predictor, artifact_sha256
from fti_assets.lib.training.train import TrainParams, train_model
from tests.unit.synthetic import synthetic_frame

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("artifact")
    params = TrainParams(n_estimators=10, early_stopping_rounds=None)
    frame = synthetic_frame(2000, 0)
    train_model(frame, synthetic_frame(500, 1), "is_fraud", ["amount"], ["channel"], params, out)
    return out


@pytest.fixture(scope="module")
def other_artifact(artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same model with one more byte: a different sha256."""
    out = tmp_path_factory.mktemp("other")
    shutil.copytree(artifact, out, dirs_exist_ok=True)
    with (out / "model.txt").open("a") as handle:
        handle.write("\n")
    return out


@pytest.fixture()
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "registry.sqlite", tmp_path / "models")


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
    from fti_assets.lib.registry.model_registry import ModelRegistry

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
    db, models, go = tmp_path / "registry.sqlite", tmp_path / "models", tmp_path / "go"
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


# Holds the registry's write lock (an open BEGIN IMMEDIATE transaction that has written a row)
# until the release file appears, the way a writer in another process would.
_HOLDER = textwrap.dedent(
    """
    import sqlite3, sys, time
    from pathlib import Path

    db, holding, release = sys.argv[1:]
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("BEGIN IMMEDIATE")
    con.execute("INSERT INTO model_names (name, last_version) VALUES ('held', 0)")
    Path(holding).touch()
    while not Path(release).exists():
        time.sleep(0.01)
    con.execute("ROLLBACK")
    """
)


@pytest.fixture()
def held_registry(
    registry: ModelRegistry, artifact: Path, tmp_path: Path
) -> Iterator[tuple[ModelRegistry, subprocess.Popen, Path]]:
    """A registry with one champion, its write lock held by another process until released."""
    _register(registry, artifact)
    registry.promote("fraud", 1)
    holding, release = tmp_path / "holding", tmp_path / "release"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(registry.path), str(holding), str(release)]
    )
    try:
        while not holding.exists():
            assert holder.poll() is None, "the lock holder died"
            time.sleep(0.01)
        yield registry, holder, release
    finally:
        release.touch()
        holder.wait(timeout=30)


def test_reads_answer_while_another_process_holds_the_write_lock(
    held_registry: tuple[ModelRegistry, subprocess.Popen, Path],
) -> None:
    registry, holder, release = held_registry
    alias_file = registry.models_dir / "fraud" / "aliases.json"
    expected = alias_file.read_text()
    alias_file.unlink()  # as if the last promote had been killed before writing it
    cli = subprocess.run(
        [sys.executable, "-m", "fti_assets.cli", "models", "list", "--json"],
        env={
            **os.environ,
            "FTI_DATA_DIR": str(registry.models_dir.parent),
            "FTI_REGISTRY_PATH": str(registry.path),
        },
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert cli.returncode == 0, cli.stderr
    assert [(r["name"], r["version"], r["aliases"]) for r in json.loads(cli.stdout)] == [
        ("fraud", 1, "champion")
    ]
    assert [v.version for v in registry.list()] == [1]
    assert registry.resolve("fraud").version == 1
    assert registry.read_alias_file("fraud")["version"] == 1
    assert holder.poll() is None  # all of that while the lock was still held
    assert not alias_file.exists()  # its repair waits for a free lock...
    release.touch()
    holder.wait(timeout=30)
    assert registry.resolve("fraud").version == 1
    assert alias_file.read_text() == expected  # ...and comes with the next read


def test_a_writer_waits_for_the_write_lock_up_to_its_timeout(
    held_registry: tuple[ModelRegistry, subprocess.Popen, Path], artifact: Path
) -> None:
    registry, holder, release = held_registry
    impatient = ModelRegistry(registry.path, registry.models_dir, lock_timeout_s=0.2)

    with pytest.raises(TimeoutError, match=r"locked by another writer; waited 0.2s"):
        impatient.promote("fraud", 1, alias="challenger")
    with ThreadPoolExecutor(max_workers=1) as pool:
        waiting = pool.submit(_register, registry, artifact)
        time.sleep(0.3)
        assert not waiting.done()
        release.touch()
        assert waiting.result(timeout=30).version == 2
    assert holder.wait(timeout=30) == 0


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


def test_status_moves_only_along_the_allowed_transitions(
    registry: ModelRegistry, artifact: Path
) -> None:
    for _ in range(3):
        _register(registry, artifact)
    registry.set_status("fraud", 1, "validated", "passed every gate")
    registry.set_status("fraud", 1, "validated", "passed every gate again")  # a re-run
    registry.set_status("fraud", 2, "rejected", "pr_auc_floor: 0.1 < 0.25")
    registry.promote("fraud", 3)

    with pytest.raises(ValueError, match=r"version 2 is 'rejected'; it can become \['archived'\]"):
        registry.set_status("fraud", 2, "validated")
    with pytest.raises(ValueError, match="version 3 is the champion"):
        registry.set_status("fraud", 3, "rejected", "slice regression")
    registry.set_status("fraud", 2, "archived")
    with pytest.raises(ValueError, match="it can become nothing"):
        registry.set_status("fraud", 2, "candidate")
    assert [(v.status, v.status_reason) for v in registry.list("fraud")] == [
        ("validated", "passed every gate again"),
        ("archived", None),
        ("candidate", None),
    ]
    assert registry.promote("fraud", 1).status == "validated"  # a promotion keeps the status


def test_promote_refuses_an_artifact_that_is_missing_or_altered(
    registry: ModelRegistry, artifact: Path
) -> None:
    _, second, third = (_register(registry, artifact) for _ in range(3))
    registry.promote("fraud", 1)
    (second.artifact_path / "transforms.json").unlink()
    model_file = third.artifact_path / "model.txt"
    model_file.write_text(model_file.read_text().replace("leaf_value=", "leaf_value=1", 1))

    with pytest.raises(TamperedModelError, match=r"version 2: .*\(files missing\)"):
        registry.promote("fraud", 2)
    with pytest.raises(TamperedModelError, match=f"version 3: .*registered {third.sha256}"):
        registry.promote("fraud", 3, alias="challenger")
    assert registry.resolve("fraud").version == 1
    assert registry.resolve("fraud", "challenger") is None
    assert read_alias_file(registry.models_dir, "fraud")["version"] == 1


class SimulatedCrash(BaseException):
    """Stands for the process dying at this point."""


def _crash_on_alias_file_write(monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(path: Path, payload: object) -> None:
        raise SimulatedCrash(path)

    monkeypatch.setattr(registry_module, "_write_json_atomic", crash)


def test_alias_file_left_behind_by_a_crash_is_repaired_on_the_next_read(
    registry: ModelRegistry, artifact: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = registry.models_dir
    for _ in range(2):
        _register(registry, artifact)
    registry.promote("fraud", 1)
    with monkeypatch.context() as patch:
        _crash_on_alias_file_write(patch)
        with pytest.raises(SimulatedCrash):
            registry.promote("fraud", 2)  # committed, then "killed" before the file write
    (models / "fraud" / ".aliases.json.0123.tmp").write_text("{")  # a half-written temp file

    assert read_alias_file(models, "fraud")["version"] == 1  # the file is behind...
    assert load_alias_file(models, "fraud").seq < registry_alias_seq(registry.path, "fraud")
    assert read_registry_aliases(registry.path, models, "fraud").aliases["champion"]["version"] == 2
    assert registry.read_alias_file("fraud")["version"] == 2  # ...until the registry reads it
    assert read_alias_file(models, "fraud")["version"] == 2
    assert load_alias_file(models, "fraud").seq == registry_alias_seq(registry.path, "fraud")
    assert [p.name for p in (models / "fraud").iterdir() if p.name.endswith(".tmp")] == []


def test_a_missing_or_foreign_alias_file_is_rewritten_by_resolve_and_by_writes(
    registry: ModelRegistry, artifact: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alias_file = registry.models_dir / "fraud" / "aliases.json"
    for _ in range(2):
        _register(registry, artifact)
    registry.promote("fraud", 1)
    expected = alias_file.read_text()

    alias_file.unlink()
    assert registry.resolve("fraud").version == 1
    assert alias_file.read_text() == expected
    alias_file.write_text('{"champion": {"version": 2}}')  # the previous release's layout
    with pytest.raises(ValueError, match="not an alias file of this release"):
        read_alias_file(registry.models_dir, "fraud")
    registry.set_status("fraud", 2, "validated")
    assert alias_file.read_text() == expected


def test_a_version_folder_left_by_a_killed_registration_is_adopted_or_retired(
    registry: ModelRegistry, artifact: Path, other_artifact: Path
) -> None:
    name_dir = registry.models_dir / "fraud"
    _register(registry, artifact)
    # What a registration killed between its rename and its commit leaves: a complete folder
    # under the next number, without a row.
    shutil.copytree(artifact, name_dir / "2")

    assert _register(registry, artifact).version == 2  # the same artifact adopts it
    shutil.copytree(artifact, name_dir / "3")
    retiring = _register(registry, other_artifact)  # another artifact retires number 3

    assert retiring.version == 4
    assert retiring.sha256 == artifact_sha256(name_dir / "4") == artifact_sha256(other_artifact)
    assert not (name_dir / "3").exists()
    assert _register(registry, artifact).version == 5  # 3 is never handed out again
    assert [v.version for v in registry.list("fraud")] == [1, 2, 4, 5]


def test_staging_folders_of_dead_registrations_are_removed(
    registry: ModelRegistry, artifact: Path
) -> None:
    name_dir = registry.models_dir / "fraud"
    name_dir.mkdir(parents=True)
    dead, alive = name_dir / ".staging-dead", name_dir / ".staging-alive"
    shutil.copytree(artifact, dead)
    alive.mkdir()
    owner = os.open(alive, os.O_RDONLY)
    try:
        fcntl.flock(owner, fcntl.LOCK_EX)  # as a registration still copying holds it

        assert _register(registry, artifact).version == 1
        assert not dead.exists()
        assert alive.exists()
    finally:
        os.close(owner)
    assert sorted(p.name for p in name_dir.iterdir()) == [".staging-alive", "1"]


def test_an_idempotency_key_makes_a_rerun_return_the_same_version(
    registry: ModelRegistry, artifact: Path, other_artifact: Path
) -> None:
    first = _register(registry, artifact, idempotency_key="run-42")
    again = _register(registry, artifact, idempotency_key="run-42")

    assert again == first
    assert [v.version for v in registry.list("fraud")] == [1]
    with pytest.raises(ValueError, match="idempotency key 'run-42' and sha256"):
        _register(registry, other_artifact, idempotency_key="run-42")
    assert _register(registry, artifact, idempotency_key="run-43").version == 2


def test_a_registry_of_another_schema_version_is_refused(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    con = sqlite3.connect(registry.path)
    con.execute("PRAGMA user_version = 7")
    con.close()

    with pytest.raises(RuntimeError, match="has schema version 7; this code reads version 2"):
        ModelRegistry(registry.path, registry.models_dir)


def test_a_schema_1_registry_is_migrated_in_place(registry: ModelRegistry, artifact: Path) -> None:
    """Schema 1 had no feature views: opening it adds them, keeping every version."""
    registered = _register(registry, artifact)
    con = sqlite3.connect(registry.path)
    con.execute("DROP TABLE feature_views")
    con.execute('ALTER TABLE model_versions DROP COLUMN "feature_view"')
    con.execute("PRAGMA user_version = 1")
    con.commit()
    con.close()

    migrated = ModelRegistry(registry.path, registry.models_dir)
    assert migrated.get("fraud", registered.version).feature_view is None
    assert migrated.feature_views() == []
    con = sqlite3.connect(registry.path)
    assert con.execute("PRAGMA user_version").fetchone() == (2,)
    con.close()


VIEW = {"name": "card_view", "version": 1, "fingerprint": "a" * 64, "definition": {"x": 1}}


def test_the_feature_view_a_version_was_trained_on_is_kept_and_cannot_change(
    registry: ModelRegistry, artifact: Path
) -> None:
    first = _register(registry, artifact, feature_view=VIEW)
    assert first.feature_view == "card_view@v1"
    assert first.feature_view_key == ("card_view", 1)
    assert registry.feature_view("card_view", 1) == {"x": 1}
    _register(registry, artifact, feature_view=VIEW)  # the same view again: fine
    [row] = registry.feature_views()
    assert row["models"].count("fraud v") == 2
    changed = {**VIEW, "fingerprint": "b" * 64, "definition": {"x": 2}}
    with pytest.raises(ValueError, match="card_view v1 was registered with another selection"):
        _register(registry, artifact, feature_view=changed)


# The registry tables of earlier releases, in the offline store's DuckDB file.
_LEGACY_SCHEMA = (
    """CREATE TABLE registry_model_versions (
        name VARCHAR NOT NULL, version INTEGER NOT NULL, created_at TIMESTAMPTZ NOT NULL,
        training_dataset_version VARCHAR NOT NULL, feature_group_versions VARCHAR NOT NULL,
        code_version VARCHAR NOT NULL, params VARCHAR NOT NULL, metrics VARCHAR NOT NULL,
        sha256 VARCHAR NOT NULL, artifact_path VARCHAR NOT NULL, status VARCHAR NOT NULL,
        status_reason VARCHAR, status_changed_at TIMESTAMPTZ NOT NULL, tags VARCHAR NOT NULL,
        PRIMARY KEY (name, version))""",
    """CREATE TABLE registry_aliases (
        name VARCHAR NOT NULL, alias VARCHAR NOT NULL, version INTEGER NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL, PRIMARY KEY (name, alias))""",
    """CREATE TABLE registry_alias_history (
        seq BIGINT PRIMARY KEY, name VARCHAR NOT NULL, alias VARCHAR NOT NULL,
        version INTEGER NOT NULL, previous_version INTEGER, action VARCHAR NOT NULL,
        reason VARCHAR, changed_at TIMESTAMPTZ NOT NULL)""",
)


def _legacy_data_dir(data_dir: Path, artifact: Path, file_name: str = "offline.duckdb") -> str:
    """A data folder as an earlier release left it: 2 versions, v2 champion after v1, in the
    DuckDB file ``file_name``; returns the artifact's sha256."""
    sha = artifact_sha256(artifact)
    con = duckdb.connect(str(data_dir / file_name))
    for statement in _LEGACY_SCHEMA:
        con.execute(statement)
    when = datetime(2026, 9, 3, 12, 0, tzinfo=UTC)
    for version, status in ((1, "validated"), (2, "candidate")):
        shutil.copytree(artifact, data_dir / "models" / "fraud" / str(version))
        con.execute(
            "INSERT INTO registry_model_versions VALUES "
            "('fraud', ?, ?, 'ds-1', '{\"cards\": 1}', 'abc', '{}', '{\"pr_auc\": 0.4}', ?, ?, "
            "?, ?, ?, '{}')",
            [
                version,
                when,
                sha,
                f"fraud/{version}",
                status,
                "gates" if version == 1 else None,
                when,
            ],
        )
    shutil.copytree(artifact, data_dir / "models" / "fraud" / "3")  # a killed registration's
    con.execute("INSERT INTO registry_aliases VALUES ('fraud', 'champion', 2, ?)", [when])
    con.execute(
        "INSERT INTO registry_alias_history VALUES "
        "(5, 'fraud', 'champion', 1, NULL, 'promote', NULL, ?), "
        "(6, 'fraud', 'champion', 2, 1, 'promote', 'better', ?)",
        [when, when],
    )
    con.close()
    (data_dir / "models" / "fraud" / "aliases.json").write_text('{"champion": {"version": 2}}')
    return sha


def test_a_legacy_registry_in_a_duckdb_file_is_migrated(tmp_path: Path, artifact: Path) -> None:
    file_name = "offline.duckdb"
    sha = _legacy_data_dir(tmp_path, artifact, file_name)
    legacy_bytes = (tmp_path / file_name).read_bytes()

    registry = ModelRegistry(tmp_path / "registry.sqlite", tmp_path / "models")

    versions = registry.list()
    assert [(v.version, v.status, v.status_reason, v.aliases) for v in versions] == [
        (1, "validated", "gates", []),
        (2, "candidate", None, ["champion"]),
    ]
    assert versions[0].created_at == datetime(2026, 9, 3, 12, 0, tzinfo=UTC)
    assert (versions[0].feature_group_versions, versions[0].metrics) == (
        {"cards": 1},
        {"pr_auc": 0.4},
    )
    assert [(c.seq, c.version, c.previous_version) for c in registry.alias_history("fraud")] == [
        (5, 1, None),
        (6, 2, 1),
    ]
    assert read_alias_file(registry.models_dir, "fraud") == {
        "version": 2,
        "sha256": sha,
        "path": str(registry.models_dir / "fraud" / "2"),
        "updated_at": "2026-09-03T12:00:00+00:00",
    }
    assert registry.rollback("fraud").version == 1
    assert _register(registry, artifact).version == 4  # the orphan folder's 3 stays retired
    assert (tmp_path / file_name).read_bytes() == legacy_bytes  # never modified


def test_an_offline_store_without_registry_tables_gives_an_empty_registry(
    tmp_path: Path,
) -> None:
    con = duckdb.connect(str(tmp_path / "offline.duckdb"))
    con.execute("CREATE TABLE raw_cards (card_id VARCHAR)")
    con.close()

    assert ModelRegistry(tmp_path / "registry.sqlite", tmp_path / "models").list() == []


def _newer_duckdb_file(path: Path) -> None:
    """A DuckDB file whose header claims a storage version this DuckDB cannot read (as a file
    written by DuckDB 2.0 may): the version field bumped and the header checksum recomputed."""
    duckdb.connect(str(path)).close()
    data = bytearray(path.read_bytes())
    assert data[8:12] == b"DUCK"
    data[12:20] = struct.pack("<Q", 999)  # storage version number
    checksum = 5381  # DuckDB's checksum of the rest of the 4 KiB header block
    for (word,) in struct.iter_unpack("<Q", bytes(data[8:4096])):
        checksum ^= (word * 0xBF58476D1CE4E5B9) % 2**64
    data[0:8] = struct.pack("<Q", checksum)
    path.write_bytes(bytes(data))


def test_an_unreadable_legacy_file_is_refused_with_how_to_rebuild(tmp_path: Path) -> None:
    legacy = tmp_path / "offline.duckdb"
    _newer_duckdb_file(legacy)

    with pytest.raises(LegacyRegistryError) as refused:
        ModelRegistry(tmp_path / "registry.sqlite", tmp_path / "models")

    message = str(refused.value)
    assert "version number 999" in message
    assert "make clean && make demo" in message and f"delete {legacy}" in message
    assert not (tmp_path / "registry.sqlite").exists()
    legacy.unlink()  # the second way out the message offers
    assert ModelRegistry(tmp_path / "registry.sqlite", tmp_path / "models").list() == []


def test_a_legacy_file_this_process_has_open_for_writing_is_still_migrated(
    tmp_path: Path, artifact: Path
) -> None:
    _legacy_data_dir(tmp_path, artifact)
    writer = duckdb.connect(str(tmp_path / "offline.duckdb"))  # e.g. an in-process asset step
    try:
        registry = ModelRegistry(tmp_path / "registry.sqlite", tmp_path / "models")
    finally:
        writer.close()

    assert [v.version for v in registry.list()] == [1, 2]
