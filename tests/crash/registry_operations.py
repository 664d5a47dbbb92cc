"""The registry operations the crash trials kill, their invariants and summaries.

A module of its own, importing little: each trial's child process imports it before its ready
line, and the trials should spend their time in the operations, not in imports.
"""

from pathlib import Path

from fti_assets.lib.registry.model_registry import (
    CHAMPION,
    REJECTED,
    ModelRegistry,
    load_alias_file,
    read_registry_aliases,
)
from fti_assets.lib.registry.predictor import artifact_sha256

NAME = "fraud"


def registry_at(workdir: Path) -> ModelRegistry:
    return ModelRegistry(workdir / "registry.sqlite", workdir / "models")


def register(registry: ModelRegistry, workdir: Path, key: str) -> int:
    return registry.register(
        NAME,
        workdir / "artifact",
        training_dataset_version="ds-2026-09-01",
        feature_group_versions={"card_features": 2},
        params={"num_leaves": 15},
        metrics={"pr_auc": 0.42},
        code_version="trial",
        idempotency_key=key,
    ).version


# ---------------------------------------------------------- operations (run in the child)


def register_model(workdir: Path) -> None:
    register(registry_at(workdir), workdir, key="the-run")


def move_aliases(workdir: Path) -> None:
    registry = registry_at(workdir)
    registry.promote(NAME, 2, reason="passed every gate")
    registry.promote(NAME, 1, alias="challenger", reason="shadow the old champion")


# ---------------------------------------------------------- invariants and summaries


def check_invariants(workdir: Path) -> None:
    registry = registry_at(workdir)
    models = registry.models_dir
    versions = registry.list()
    for version in versions:
        assert artifact_sha256(version.artifact_path) == version.sha256, version
        assert not (CHAMPION in version.aliases and version.status == REJECTED), version
    for name in {v.name for v in versions}:
        repaired = registry.read_alias_file(name)  # the next read repairs a stale file
        stored = read_registry_aliases(registry.path, models, name)
        assert load_alias_file(models, name) == stored
        assert repaired == stored.aliases.get(CHAMPION)
        for alias, entry in stored.aliases.items():
            assert artifact_sha256(Path(entry["path"])) == entry["sha256"], (alias, entry)


def summarize(workdir: Path) -> dict[str, object]:
    """What a user sees in the registry, without timestamps and the folder's own path."""
    registry = registry_at(workdir)
    snapshot = load_alias_file(registry.models_dir, NAME)
    return {
        "versions": [
            (
                v.version,
                v.sha256,
                v.status,
                v.status_reason,
                v.aliases,
                v.training_dataset_version,
                v.feature_group_versions,
                v.params,
                v.metrics,
                v.code_version,
            )
            for v in registry.list()
        ],
        "history": [
            (c.seq, c.alias, c.version, c.previous_version, c.action, c.reason)
            for c in registry.alias_history(NAME)
        ],
        "alias_file": None
        if snapshot is None
        else (
            snapshot.seq,
            {
                alias: (e["version"], e["sha256"], Path(e["path"]).relative_to(workdir))
                for alias, e in snapshot.aliases.items()
            },
        ),
    }
