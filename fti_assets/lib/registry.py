"""Model registry: versioned model artifacts with aliases, kept in the shared data layer.

State lives in two places:

* three tables in the offline-store DuckDB file — ``registry_model_versions``,
  ``registry_aliases`` (alias → version now) and ``registry_alias_history`` (every change);
* the artifacts, copied to ``<models_dir>/<name>/<version>/`` (``model.txt`` +
  ``transforms.json``) and verified by sha256 whenever they are loaded.

DuckDB lets one process at a time open a file for writing; the others get a lock error when they
connect. Every operation therefore opens a short-lived connection and retries lock errors and
transaction conflicts with jittered backoff for up to ``lock_timeout_s`` (30 s by default).

Version numbers are allocated inside a transaction *and* claimed on disk by renaming a staging
copy of the artifact to ``<name>/<version>``: a rename onto an existing version directory fails,
so concurrent registrations (threads or processes) always end with distinct versions. A process
killed between that rename and the commit leaves a directory without a row; the next version
number skips it.

Readers that must not contend for the DuckDB lock (the HTTP service polling the champion) read
``<models_dir>/<name>/aliases.json``, rewritten atomically on every alias change with
``alias -> {version, sha256, path, updated_at}``; see :func:`read_alias_file`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import re
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import numpy as np

from fti_assets.lib.offline_store import ensure_database_file
from fti_assets.lib.predictor import (
    ARTIFACT_FILES,
    MODEL_FILE,
    TRANSFORMS_FILE,
    FeatureTransform,
    Predictor,
    TamperedModelError,
    artifact_sha256,
)
from fti_assets.lib.settings import PROJECT_ROOT

logger = logging.getLogger(__name__)

__all__ = [
    "AliasChange",
    "ModelNotFoundError",
    "ModelRegistry",
    "ModelVersion",
    "TamperedModelError",
    "read_alias_file",
]

T = TypeVar("T")

CHAMPION = "champion"
STATUSES = ("candidate", "validated", "rejected", "archived")
ALIAS_FILE = "aliases.json"
DEFAULT_LOCK_TIMEOUT_S = 30.0
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")

# Alias changes in this process are serialised so that aliases.json is always written from the
# latest committed state (other processes are kept out by DuckDB's file lock, which this process
# holds while its connection is open).
_ALIAS_LOCK = threading.Lock()

_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS registry_model_versions (
        name VARCHAR NOT NULL,
        version INTEGER NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        training_dataset_version VARCHAR NOT NULL,
        feature_group_versions VARCHAR NOT NULL,  -- JSON object: group -> version
        code_version VARCHAR NOT NULL,
        params VARCHAR NOT NULL,  -- JSON
        metrics VARCHAR NOT NULL,  -- JSON
        sha256 VARCHAR NOT NULL,
        artifact_path VARCHAR NOT NULL,  -- relative to the models dir
        status VARCHAR NOT NULL,
        status_reason VARCHAR,
        status_changed_at TIMESTAMPTZ NOT NULL,
        tags VARCHAR NOT NULL,  -- JSON
        PRIMARY KEY (name, version)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS registry_aliases (
        name VARCHAR NOT NULL,
        alias VARCHAR NOT NULL,
        version INTEGER NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (name, alias)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS registry_alias_history (
        seq BIGINT PRIMARY KEY,
        name VARCHAR NOT NULL,
        alias VARCHAR NOT NULL,
        version INTEGER NOT NULL,
        previous_version INTEGER,
        action VARCHAR NOT NULL,  -- 'promote' or 'rollback'
        reason VARCHAR,
        changed_at TIMESTAMPTZ NOT NULL
    )
    """,
)

_VERSION_COLUMNS = (
    "name, version, created_at, training_dataset_version, feature_group_versions, code_version, "
    "params, metrics, sha256, artifact_path, status, status_reason, tags"
)


class ModelNotFoundError(LookupError):
    """No such model name, version or alias in the registry."""


class _VersionTaken(Exception):
    """Another registration claimed the version directory first; allocate again."""


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: int
    created_at: datetime
    training_dataset_version: str
    feature_group_versions: dict[str, int]
    code_version: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    sha256: str
    artifact_path: Path
    status: str
    aliases: list[str]
    status_reason: str | None = None
    tags: dict[str, Any] | None = None


@dataclass(frozen=True)
class AliasChange:
    seq: int
    name: str
    alias: str
    version: int
    previous_version: int | None
    action: str
    reason: str | None
    changed_at: datetime


def _check_name(value: str, what: str) -> None:
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise ValueError(
            f"{what} {value!r} is not valid; expected letters, digits, '_', '.', '-' "
            "(starting with a letter or digit, at most 128 characters)"
        )


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise ValueError(f"status {status!r} is not one of {list(STATUSES)}")


def _jsonable(value: Any) -> Any:
    """Plain JSON values: numpy scalars unwrapped, NaN/inf as null, paths and times as text."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _dumps(value: Any) -> str:
    return json.dumps(_jsonable(value), sort_keys=True, allow_nan=False)


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def git_code_version(repo_dir: Path = PROJECT_ROOT) -> str:
    """The git commit sha of ``repo_dir``, or ``"unknown"`` outside a git checkout."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=repo_dir,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        logger.warning("cannot read the git sha of %s (%s); code_version='unknown'", repo_dir, exc)
        return "unknown"
    sha = result.stdout.strip()
    if result.returncode != 0 or not sha:
        logger.warning("%s is not a git checkout with commits; code_version='unknown'", repo_dir)
        return "unknown"
    return sha


def _is_lock_error(exc: duckdb.Error) -> bool:
    return isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower()


def _version_dirs(name_dir: Path) -> list[int]:
    if not name_dir.is_dir():
        return []
    return [int(p.name) for p in name_dir.iterdir() if p.is_dir() and p.name.isdigit()]


def _write_json_atomic(path: Path, payload: Any) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=2, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _check_artifact(copy_dir: Path, source_dir: Path) -> None:
    """Cheap sanity check without importing LightGBM: a text model and valid transforms."""
    with (copy_dir / MODEL_FILE).open("rb") as handle:
        first_line = handle.readline().strip()
    if first_line != b"tree":
        raise ValueError(
            f"{source_dir / MODEL_FILE} does not start with 'tree' (got {first_line[:40]!r}); "
            "expected a LightGBM text model"
        )
    FeatureTransform.from_json((copy_dir / TRANSFORMS_FILE).read_text(encoding="utf-8"))


def read_alias_file(models_dir: Path, name: str, alias: str = CHAMPION) -> dict[str, Any] | None:
    """``{version, sha256, path, updated_at}`` of ``alias`` from aliases.json, without DuckDB.

    ``None`` when the model has no aliases file or the alias is unset.
    """
    path = Path(models_dir) / name / ALIAS_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    return json.loads(text).get(alias)


class ModelRegistry:
    """Versions, statuses and aliases of models, stored in the offline-store DuckDB file."""

    def __init__(
        self,
        duckdb_path: Path,
        models_dir: Path,
        *,
        lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
    ) -> None:
        self.duckdb_path = Path(duckdb_path).resolve()
        self.models_dir = Path(models_dir).resolve()
        self.lock_timeout_s = lock_timeout_s
        ensure_database_file(self.duckdb_path)
        self.models_dir.mkdir(parents=True, exist_ok=True)
        self._run(self._create_tables)

    # ----------------------------------------------------------------- connections and retries

    @staticmethod
    def _create_tables(con: duckdb.DuckDBPyConnection) -> None:
        for statement in _SCHEMA:
            con.execute(statement)

    def _run(self, operation: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        """Run ``operation`` on a fresh connection; retry lock errors and write conflicts."""
        deadline = time.monotonic() + self.lock_timeout_s
        delay = 0.005
        attempt = 0
        while True:
            attempt += 1
            try:
                con = duckdb.connect(str(self.duckdb_path))
                try:
                    return operation(con)
                finally:
                    con.close()  # also rolls back a transaction left open by an error
            except (duckdb.IOException, duckdb.TransactionException, _VersionTaken) as exc:
                retryable = not isinstance(exc, duckdb.IOException) or _is_lock_error(exc)
                if not retryable or time.monotonic() >= deadline:
                    if retryable:
                        raise TimeoutError(
                            f"registry database {self.duckdb_path} stayed locked or conflicting "
                            f"for {self.lock_timeout_s:.0f} s ({attempt} attempts): {exc}"
                        ) from exc
                    raise
                logger.debug("registry attempt %d failed (%s); retrying", attempt, exc)
                time.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, 0.5)

    @contextmanager
    def _transaction(self, con: duckdb.DuckDBPyConnection) -> Iterator[None]:
        """BEGIN … COMMIT; on an error :meth:`_run` closes the connection, which rolls back."""
        con.begin()
        yield
        con.commit()

    # ----------------------------------------------------------------------------- versions

    def register(
        self,
        name: str,
        artifact_dir: Path,
        *,
        training_dataset_version: str,
        feature_group_versions: dict[str, int],
        params: dict[str, Any],
        metrics: dict[str, Any],
        code_version: str | None = None,
        status: str = "candidate",
        tags: dict[str, Any] | None = None,
    ) -> ModelVersion:
        """Copy the artifact to ``<models_dir>/<name>/<version>/`` under the next version."""
        _check_name(name, "model name")
        _check_status(status)
        bad_groups = {
            k: v for k, v in feature_group_versions.items() if not isinstance(v, int | np.integer)
        }
        if bad_groups:
            raise ValueError(f"feature group versions must be integers; got {bad_groups}")
        sha = artifact_sha256(Path(artifact_dir))
        code_version = code_version or git_code_version()
        name_dir = self.models_dir / name
        name_dir.mkdir(parents=True, exist_ok=True)
        staging = name_dir / f".staging-{uuid.uuid4().hex}"
        staging.mkdir()
        try:
            for file_name in ARTIFACT_FILES:
                shutil.copyfile(Path(artifact_dir) / file_name, staging / file_name)
            copied = artifact_sha256(staging)
            if copied != sha:
                raise TamperedModelError(
                    f"artifact {artifact_dir} changed while being copied: sha256 {sha} before, "
                    f"{copied} after"
                )
            _check_artifact(staging, Path(artifact_dir))
            now = datetime.now(UTC)
            row = {
                "feature_group_versions": _dumps(feature_group_versions),
                "params": _dumps(params),
                "metrics": _dumps(metrics),
                "tags": _dumps(tags or {}),
            }

            def allocate(con: duckdb.DuckDBPyConnection) -> int:
                con.begin()
                (db_max,) = con.execute(
                    "SELECT coalesce(max(version), 0) FROM registry_model_versions WHERE name = ?",
                    [name],
                ).fetchone()
                version = max([db_max, *_version_dirs(name_dir)]) + 1
                target = name_dir / str(version)
                try:
                    staging.rename(target)  # fails if the directory exists and is not empty
                except OSError as exc:
                    raise _VersionTaken(f"{target} already exists") from exc
                try:
                    con.execute(
                        "INSERT INTO registry_model_versions VALUES "
                        "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)",
                        [
                            name,
                            version,
                            now,
                            training_dataset_version,
                            row["feature_group_versions"],
                            code_version,
                            row["params"],
                            row["metrics"],
                            sha,
                            f"{name}/{version}",
                            status,
                            now,
                            row["tags"],
                        ],
                    ).fetchall()
                    con.commit()
                except BaseException:
                    target.rename(staging)  # give the number back; the retry allocates anew
                    raise
                return version

            version = self._run(allocate)
        finally:
            if staging.exists():
                shutil.rmtree(staging)
        logger.info("registered model %s version %d (sha256 %s)", name, version, sha)
        return ModelVersion(
            name=name,
            version=version,
            created_at=now,
            training_dataset_version=training_dataset_version,
            feature_group_versions=dict(feature_group_versions),
            code_version=code_version,
            params=json.loads(row["params"]),
            metrics=json.loads(row["metrics"]),
            sha256=sha,
            artifact_path=name_dir / str(version),
            status=status,
            aliases=[],
            status_reason=None,
            tags=json.loads(row["tags"]),
        )

    def _fetch_versions(
        self, con: duckdb.DuckDBPyConnection, where: str, args: list[Any]
    ) -> list[ModelVersion]:
        rows = con.execute(
            f"SELECT {_VERSION_COLUMNS} FROM registry_model_versions {where} "
            "ORDER BY name, version",
            args,
        ).fetchall()
        aliases: dict[tuple[str, int], list[str]] = {}
        for name, alias, version in con.execute(
            "SELECT name, alias, version FROM registry_aliases ORDER BY alias"
        ).fetchall():
            aliases.setdefault((name, version), []).append(alias)
        return [self._to_version(row, aliases.get((row[0], row[1]), [])) for row in rows]

    def _to_version(self, row: tuple[Any, ...], aliases: list[str]) -> ModelVersion:
        (
            name,
            version,
            created_at,
            dataset_version,
            group_versions,
            code_version,
            params,
            metrics,
            sha,
            artifact_path,
            status,
            status_reason,
            tags,
        ) = row
        return ModelVersion(
            name=name,
            version=version,
            created_at=_utc(created_at),
            training_dataset_version=dataset_version,
            feature_group_versions=json.loads(group_versions),
            code_version=code_version,
            params=json.loads(params),
            metrics=json.loads(metrics),
            sha256=sha,
            artifact_path=self.models_dir / artifact_path,
            status=status,
            aliases=aliases,
            status_reason=status_reason,
            tags=json.loads(tags),
        )

    def _get(self, con: duckdb.DuckDBPyConnection, name: str, version: int) -> ModelVersion:
        found = self._fetch_versions(con, "WHERE name = ? AND version = ?", [name, version])
        if not found:
            raise ModelNotFoundError(f"model {name!r} has no version {version!r}")
        return found[0]

    def get(self, name: str, version: int) -> ModelVersion:
        return self._run(lambda con: self._get(con, name, version))

    def list(self, name: str | None = None) -> list[ModelVersion]:
        """All versions (of one model when ``name`` is given), oldest first."""
        if name is None:
            return self._run(lambda con: self._fetch_versions(con, "", []))
        return self._run(lambda con: self._fetch_versions(con, "WHERE name = ?", [name]))

    def set_status(self, name: str, version: int, status: str, reason: str | None = None) -> None:
        """Record a status change, e.g. ``"rejected"`` with the gate that failed as ``reason``."""
        _check_status(status)

        def update(con: duckdb.DuckDBPyConnection) -> None:
            with self._transaction(con):
                current = self._get(con, name, version)
                con.execute(
                    "UPDATE registry_model_versions "
                    "SET status = ?, status_reason = ?, status_changed_at = ? "
                    "WHERE name = ? AND version = ?",
                    [status, reason, datetime.now(UTC), name, version],
                ).fetchall()
            if CHAMPION in current.aliases and status == "rejected":
                logger.warning(
                    "model %s version %d is champion and now rejected; roll back or promote",
                    name,
                    version,
                )

        self._run(update)
        logger.info("model %s version %d status -> %s (%s)", name, version, status, reason)

    # ------------------------------------------------------------------------------ aliases

    def _alias_version(self, con: duckdb.DuckDBPyConnection, name: str, alias: str) -> int | None:
        found = con.execute(
            "SELECT version FROM registry_aliases WHERE name = ? AND alias = ?", [name, alias]
        ).fetchone()
        return None if found is None else int(found[0])

    def _history(
        self, con: duckdb.DuckDBPyConnection, name: str, alias: str | None = None
    ) -> list[AliasChange]:
        query = (
            "SELECT seq, name, alias, version, previous_version, action, reason, changed_at "
            "FROM registry_alias_history WHERE name = ?"
        )
        args: list[Any] = [name]
        if alias is not None:
            query += " AND alias = ?"
            args.append(alias)
        rows = con.execute(query + " ORDER BY seq", args).fetchall()
        return [AliasChange(*row[:-1], changed_at=_utc(row[-1])) for row in rows]

    def _move_alias(
        self,
        con: duckdb.DuckDBPyConnection,
        name: str,
        alias: str,
        version: int,
        previous: int | None,
        action: str,
        reason: str | None,
    ) -> None:
        now = datetime.now(UTC)
        con.execute(
            "INSERT INTO registry_aliases VALUES (?, ?, ?, ?) ON CONFLICT (name, alias) "
            "DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at",
            [name, alias, version, now],
        ).fetchall()
        (seq,) = con.execute(
            "SELECT coalesce(max(seq), 0) + 1 FROM registry_alias_history"
        ).fetchone()
        con.execute(
            "INSERT INTO registry_alias_history VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [seq, name, alias, version, previous, action, reason, now],
        ).fetchall()

    def _write_alias_file(self, con: duckdb.DuckDBPyConnection, name: str) -> None:
        rows = con.execute(
            "SELECT a.alias, a.version, v.sha256, v.artifact_path, a.updated_at "
            "FROM registry_aliases a JOIN registry_model_versions v "
            "ON a.name = v.name AND a.version = v.version WHERE a.name = ? ORDER BY a.alias",
            [name],
        ).fetchall()
        payload = {
            alias: {
                "version": version,
                "sha256": sha,
                "path": str(self.models_dir / path),
                "updated_at": _utc(updated_at).isoformat(),
            }
            for alias, version, sha, path, updated_at in rows
        }
        name_dir = self.models_dir / name
        name_dir.mkdir(parents=True, exist_ok=True)
        _write_json_atomic(name_dir / ALIAS_FILE, payload)

    def sync_alias_file(self, name: str) -> None:
        """Rewrite aliases.json from the tables (after a crash between commit and file write)."""
        with _ALIAS_LOCK:
            self._run(lambda con: self._write_alias_file(con, name))

    def promote(
        self, name: str, version: int, alias: str = CHAMPION, reason: str | None = None
    ) -> ModelVersion:
        """Point ``alias`` at ``version`` (atomically, with history); a no-op if it already is.

        A version whose status is ``rejected`` cannot become champion.
        """
        _check_name(alias, "alias")

        def move(con: duckdb.DuckDBPyConnection) -> ModelVersion:
            with self._transaction(con):
                target = self._get(con, name, version)
                if alias == CHAMPION and target.status == "rejected":
                    raise ValueError(
                        f"model {name!r} version {version} is rejected "
                        f"({target.status_reason or 'no reason recorded'}); it cannot become "
                        f"{CHAMPION}"
                    )
                previous = self._alias_version(con, name, alias)
                if previous != version:
                    self._move_alias(con, name, alias, version, previous, "promote", reason)
            # Still holding the connection (and so the file lock against other processes).
            self._write_alias_file(con, name)
            return self._get(con, name, version)

        with _ALIAS_LOCK:
            promoted = self._run(move)
        logger.info("model %s: %s -> version %d", name, alias, version)
        return promoted

    def rollback(self, name: str, alias: str = CHAMPION, reason: str | None = None) -> ModelVersion:
        """Move ``alias`` back to its previous holder; repeated rollbacks walk further back.

        History is replayed as a stack (promote pushes, rollback pops), so rolling back twice
        after promoting v1, v2, v3 lands on v1, not back on v3. For the champion, rejected
        versions are skipped. Raises :class:`ValueError` when there is no previous holder.
        """
        _check_name(alias, "alias")

        def move(con: duckdb.DuckDBPyConnection) -> ModelVersion:
            with self._transaction(con):
                stack = _holders(self._history(con, name, alias))
                if not stack:
                    raise ModelNotFoundError(f"model {name!r} has no alias {alias!r}")
                current = stack[-1]
                target = None
                for candidate in reversed(stack[:-1]):
                    holder = self._get(con, name, candidate)
                    if candidate != current and not (
                        alias == CHAMPION and holder.status == "rejected"
                    ):
                        target = candidate
                        break
                if target is None:
                    raise ValueError(
                        f"alias {alias!r} of model {name!r} has no previous holder to roll back "
                        f"to (holders so far: {stack})"
                    )
                self._move_alias(con, name, alias, target, current, "rollback", reason)
            self._write_alias_file(con, name)
            return self._get(con, name, target)

        with _ALIAS_LOCK:
            restored = self._run(move)
        logger.info("model %s: %s rolled back to version %d", name, alias, restored.version)
        return restored

    def resolve(self, name: str, alias: str = CHAMPION) -> ModelVersion | None:
        """The version ``alias`` points at, or ``None`` when the alias is unset."""

        def find(con: duckdb.DuckDBPyConnection) -> ModelVersion | None:
            version = self._alias_version(con, name, alias)
            return None if version is None else self._get(con, name, version)

        return self._run(find)

    def alias_history(self, name: str, alias: str | None = None) -> list[AliasChange]:
        """Every alias change of ``name`` (optionally one alias), oldest first."""
        return self._run(lambda con: self._history(con, name, alias))

    def load(self, name: str, alias_or_version: str | int) -> Predictor:
        """A :class:`Predictor` for a version number or an alias; refuses a tampered artifact."""
        if isinstance(alias_or_version, int):
            model = self.get(name, alias_or_version)
        else:
            resolved = self.resolve(name, alias_or_version)
            if resolved is None:
                raise ModelNotFoundError(f"model {name!r} has no alias {alias_or_version!r}")
            model = resolved
        return Predictor.load(model.artifact_path, expected_sha256=model.sha256)


def _holders(history: list[AliasChange]) -> list[int]:
    """Replay alias history into the stack of holders (the current one last)."""
    stack: list[int] = []
    for change in history:
        if change.action == "promote":
            stack.append(change.version)
        else:
            while stack and stack[-1] != change.version:
                stack.pop()
            if not stack:
                stack.append(change.version)
    return stack
