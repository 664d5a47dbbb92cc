"""Model registry: versioned model artifacts with statuses and aliases, in its own SQLite file.

State lives in three places:

* a SQLite database in WAL mode (``FTI_REGISTRY_PATH``, default ``<data_dir>/registry.sqlite``;
  schema version in ``PRAGMA user_version``): ``model_versions`` (one row per version, with its
  status), ``aliases`` (alias -> version now), ``alias_history`` (every alias change, numbered by
  ``seq``) and ``model_names`` (the last version number handed out per model);
* the artifacts, ``<models_dir>/<name>/<version>/`` (``model.txt`` + ``transforms.json``),
  sha256-verified when copied in, when an alias moves onto them and whenever they are loaded;
* ``<models_dir>/<name>/aliases.json`` = ``{"seq": N, "aliases": {alias: {version, sha256, path,
  updated_at}}}``, a copy of one model's aliases for readers that do not open the database (the
  HTTP service); ``N`` is the model's last alias-history ``seq``, 0 before any alias was set.

Concurrency: every operation opens its own connection. Readers never wait (WAL: they read the
last commit while a writer works), so ``fti models list`` answers while a pipeline registers a
model. Writes are short ``BEGIN IMMEDIATE`` transactions, queued across threads and processes by
SQLite's busy timeout (``lock_timeout_s``); a writer that waits longer gets a
:class:`TimeoutError`. Hashing and copying happen outside transactions.

Crash safety, for a process killed at any instruction:

* Registering copies the artifact into a hidden staging folder that its owner holds an ``flock``
  on, fsyncs and verifies it, then one transaction takes the next number, renames the folder to
  ``<name>/<version>`` and inserts the row: a row always has its verified files, and a
  half-copied folder never carries a number. A numbered folder without a row is what a kill
  inside that transaction leaves; the next registration of the same artifact (same sha256) adopts
  it, any other retires its number for good (``model_names``) and deletes it after committing.
  Staging folders whose owner is dead are deleted. With ``idempotency_key`` a re-run of a
  registration returns the version it already made instead of adding another.
* Moving an alias commits the alias and its history row together; ``aliases.json`` is then
  rewritten (atomic rename) from the committed state while the write lock is held, so the file
  never goes back in time. A kill in between leaves the file behind the database: every write,
  :meth:`ModelRegistry.resolve` and :meth:`ModelRegistry.read_alias_file` compare the file with
  the database and rewrite a stale or missing one (a read does not queue behind a busy writer
  for that: it answers from the database and leaves the file to the next read or write), and
  :func:`read_registry_aliases` lets the service read the aliases from the database (read-only)
  when the file's ``seq`` is behind.

Statuses are the truth about a version: ``candidate`` becomes ``validated`` or ``rejected``,
``validated`` may still be ``rejected``, and any of them ``archived``; nothing else (a rejection
is final). A ``rejected`` version never holds the ``champion`` alias: :meth:`ModelRegistry.promote`
refuses it, :meth:`ModelRegistry.rollback` skips it, and the champion cannot be rejected.

A registry kept by earlier releases in the DuckDB file of the data folder (``<data_dir>/
offline.duckdb``, next to ``<data_dir>/models``) is migrated when the SQLite file is first
created; see :mod:`fti_assets.lib.registry.legacy`.
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import re
import shutil
import sqlite3
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from fti_assets.lib.core.provenance import git_code_version
from fti_assets.lib.registry.predictor import (
    ARTIFACT_FILES,
    MODEL_FILE,
    TRANSFORMS_FILE,
    FeatureTransform,
    Predictor,
    TamperedModelError,
    artifact_sha256,
)

logger = logging.getLogger(__name__)

__all__ = [
    "AliasChange",
    "AliasSnapshot",
    "ModelNotFoundError",
    "ModelRegistry",
    "ModelVersion",
    "TamperedModelError",
    "load_alias_file",
    "read_alias_file",
    "read_registry_aliases",
    "registry_alias_seq",
]

CHAMPION = "champion"
CANDIDATE = "candidate"
VALIDATED = "validated"
REJECTED = "rejected"
ARCHIVED = "archived"
STATUSES = (CANDIDATE, VALIDATED, REJECTED, ARCHIVED)
# Status changes a version may go through (setting the status it already has is always allowed,
# so re-running a gate is harmless).
TRANSITIONS: dict[str, frozenset[str]] = {
    CANDIDATE: frozenset({VALIDATED, REJECTED, ARCHIVED}),
    VALIDATED: frozenset({REJECTED, ARCHIVED}),
    REJECTED: frozenset({ARCHIVED}),
    ARCHIVED: frozenset(),
}
ALIAS_FILE = "aliases.json"
SCHEMA_VERSION = 2
DEFAULT_LOCK_TIMEOUT_S = 30.0
_READER_LOCK_WAIT_S = 0.05  # a read repairing aliases.json does not queue behind long writes
STAGING_PREFIX = ".staging-"
_STAGING_ATTEMPTS = 20
_ALIAS_TMP_PREFIX = f".{ALIAS_FILE}."
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")

# Schema 2: the feature view a version was trained on, and every view version a registered
# model uses (its definition stays resolvable after its declaration left the code).
_FEATURE_VIEWS_SCHEMA = (
    """
    CREATE TABLE feature_views (
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        fingerprint TEXT NOT NULL,
        definition TEXT NOT NULL,  -- JSON
        registered_at TEXT NOT NULL,
        PRIMARY KEY (name, version)
    ) STRICT
    """,
)
_MIGRATIONS = {
    1: ('ALTER TABLE "model_versions" ADD COLUMN "feature_view" TEXT', *_FEATURE_VIEWS_SCHEMA),
}

_SCHEMA = (
    """
    CREATE TABLE model_names (
        name TEXT PRIMARY KEY,
        last_version INTEGER NOT NULL  -- numbers up to here are used or retired, never reused
    ) STRICT
    """,
    f"""
    CREATE TABLE model_versions (
        name TEXT NOT NULL REFERENCES model_names (name),
        version INTEGER NOT NULL,
        created_at TEXT NOT NULL,  -- ISO 8601, UTC
        training_dataset_version TEXT NOT NULL,
        feature_group_versions TEXT NOT NULL,  -- JSON object: group -> version
        code_version TEXT NOT NULL,
        params TEXT NOT NULL,  -- JSON
        metrics TEXT NOT NULL,  -- JSON
        sha256 TEXT NOT NULL,
        artifact_path TEXT NOT NULL,  -- relative to the models dir
        status TEXT NOT NULL CHECK (status IN ({", ".join(f"'{s}'" for s in STATUSES)})),
        status_reason TEXT,
        status_changed_at TEXT NOT NULL,
        tags TEXT NOT NULL,  -- JSON
        idempotency_key TEXT,
        feature_view TEXT,  -- "<view>@v<version>": the feature view it was trained on
        PRIMARY KEY (name, version)
    ) STRICT
    """,
    *_FEATURE_VIEWS_SCHEMA,
    """
    CREATE UNIQUE INDEX model_versions_idempotency_key
    ON model_versions (name, idempotency_key) WHERE idempotency_key IS NOT NULL
    """,
    """
    CREATE TABLE aliases (
        name TEXT NOT NULL,
        alias TEXT NOT NULL,
        version INTEGER NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (name, alias),
        FOREIGN KEY (name, version) REFERENCES model_versions (name, version)
    ) STRICT
    """,
    """
    CREATE TABLE alias_history (
        seq INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        alias TEXT NOT NULL,
        version INTEGER NOT NULL,
        previous_version INTEGER,
        action TEXT NOT NULL CHECK (action IN ('promote', 'rollback')),
        reason TEXT,
        changed_at TEXT NOT NULL,
        FOREIGN KEY (name, version) REFERENCES model_versions (name, version)
    ) STRICT
    """,
    "CREATE INDEX alias_history_name ON alias_history (name, seq)",
)

_VERSION_COLUMNS = (
    '"name", "version", "created_at", "training_dataset_version", "feature_group_versions", '
    '"code_version", "params", "metrics", "sha256", "artifact_path", "status", "status_reason", '
    '"tags", "feature_view"'
)


class ModelNotFoundError(LookupError):
    """No such model name, version or alias in the registry."""


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
    feature_view: str | None = None  # "<view>@v<version>" it was trained on

    @property
    def feature_view_key(self) -> tuple[str, int] | None:
        """(view name, version) of :attr:`feature_view`."""
        if self.feature_view is None:
            return None
        name, _, version = self.feature_view.rpartition("@v")
        return name, int(version)


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


@dataclass(frozen=True)
class AliasSnapshot:
    """One model's aliases as of alias-history number ``seq`` (the content of aliases.json)."""

    seq: int
    aliases: dict[str, dict[str, Any]]  # alias -> {version, sha256, path, updated_at}

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "aliases": self.aliases}


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


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value).astimezone(UTC)


# ------------------------------------------------------------------------------ files on disk


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy_durably(source: Path, target: Path) -> None:
    shutil.copyfile(source, target)
    with target.open("rb") as handle:
        os.fsync(handle.fileno())


def _write_json_atomic(path: Path, payload: Any) -> None:
    tmp = path.with_name(f"{_ALIAS_TMP_PREFIX}{uuid.uuid4().hex}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=2, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _remove_tree(path: Path) -> None:
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        logger.debug("%s was removed by another process meanwhile", path)


def _version_dirs(name_dir: Path) -> list[int]:
    if not name_dir.is_dir():
        return []
    return [int(p.name) for p in name_dir.iterdir() if p.is_dir() and p.name.isdigit()]


def _sha256_or_none(artifact_dir: Path) -> str | None:
    """The artifact's sha256, or None when a file of it is missing."""
    try:
        return artifact_sha256(artifact_dir)
    except FileNotFoundError:
        return None


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


@contextmanager
def _staging_dir(name_dir: Path) -> Iterator[Path]:
    """A new hidden folder under ``name_dir``, flock-ed by this process until the block ends.

    The lock tells :func:`_remove_dead_staging` in other processes that the owner is alive; the
    kernel drops it when the owner dies, however it dies. A cleaner can take the folder in the
    instant between its creation and the lock, so the lock is taken on the open folder and the
    folder is made anew if it was unlinked meanwhile.
    """
    for _ in range(_STAGING_ATTEMPTS):
        path = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=name_dir))
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_nlink > 0:
            break
        os.close(fd)
    else:
        raise RuntimeError(
            f"{_STAGING_ATTEMPTS} staging folders made under {name_dir} were deleted before this "
            "process could lock them; is something else deleting hidden folders there?"
        )
    try:
        yield path
    finally:
        try:
            if path.exists():
                shutil.rmtree(path)
        finally:
            os.close(fd)


def _remove_dead_staging(name_dir: Path) -> None:
    """Delete staging folders whose owner died (their flock is free)."""
    for path in name_dir.glob(f"{STAGING_PREFIX}*"):
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue  # its owner finished meanwhile
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its owner is alive and copying
            if os.fstat(fd).st_nlink > 0:
                logger.info("removing %s, left by a registration that did not finish", path)
                _remove_tree(path)
        finally:
            os.close(fd)


# ------------------------------------------------------------------------------ alias files


def load_alias_file(models_dir: Path, name: str) -> AliasSnapshot | None:
    """The content of ``<models_dir>/<name>/aliases.json``; ``None`` when there is no file.

    Raises :class:`ValueError` when the file is not JSON of the expected shape (a file from an
    older release: :class:`ModelRegistry` rewrites it on its next read or write).
    """
    _check_name(name, "model name")  # it names a folder: never a path of its own
    path = Path(models_dir) / name / ALIAS_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    payload = json.loads(text)
    if (
        not isinstance(payload, dict)
        or not isinstance(payload.get("seq"), int)
        or not isinstance(payload.get("aliases"), dict)
    ):
        raise ValueError(
            f"{path} is not an alias file of this release; expected "
            '{"seq": <int>, "aliases": {...}} (the registry rewrites it on its next read)'
        )
    return AliasSnapshot(payload["seq"], payload["aliases"])


def read_alias_file(models_dir: Path, name: str, alias: str = CHAMPION) -> dict[str, Any] | None:
    """``{version, sha256, path, updated_at}`` of ``alias`` from aliases.json, without SQLite.

    ``None`` when the model has no aliases file or the alias is unset. The file can be behind the
    registry after a crash; :meth:`ModelRegistry.read_alias_file` checks and repairs it.
    """
    snapshot = load_alias_file(models_dir, name)
    return None if snapshot is None else snapshot.aliases.get(alias)


@contextmanager
def _read_only(registry_path: Path) -> Iterator[sqlite3.Connection | None]:
    """A read-only connection, or None when the registry file does not exist."""
    try:
        con = sqlite3.connect(
            f"{Path(registry_path).resolve().as_uri()}?mode=ro",
            uri=True,
            timeout=5.0,
            isolation_level=None,
        )
    except sqlite3.OperationalError:
        if Path(registry_path).exists():
            raise
        con = None
    try:
        yield con
    finally:
        if con is not None:
            con.close()


def _alias_seq(con: sqlite3.Connection, name: str) -> int:
    (seq,) = con.execute(
        'SELECT coalesce(max("seq"), 0) FROM "alias_history" WHERE "name" = ?', (name,)
    ).fetchone()
    return int(seq)


def _alias_snapshot(con: sqlite3.Connection, models_dir: Path, name: str) -> AliasSnapshot:
    """The aliases of ``name`` as stored (call inside one transaction for a consistent view)."""
    rows = con.execute(
        'SELECT a."alias", a."version", v."sha256", v."artifact_path", a."updated_at" '
        'FROM "aliases" a JOIN "model_versions" v '
        'ON a."name" = v."name" AND a."version" = v."version" '
        'WHERE a."name" = ? ORDER BY a."alias"',
        (name,),
    ).fetchall()
    return AliasSnapshot(
        seq=_alias_seq(con, name),
        aliases={
            alias: {
                "version": version,
                "sha256": sha,
                "path": str(models_dir / path),
                "updated_at": updated_at,
            }
            for alias, version, sha, path, updated_at in rows
        },
    )


def registry_alias_seq(registry_path: Path, name: str) -> int | None:
    """The last alias-history ``seq`` of ``name`` (0: none), read-only; None without a registry.

    Compared with the ``seq`` in aliases.json, it tells whether the file is current.
    """
    with _read_only(registry_path) as con:
        return None if con is None else _alias_seq(con, name)


def read_registry_aliases(registry_path: Path, models_dir: Path, name: str) -> AliasSnapshot | None:
    """What aliases.json of ``name`` should hold, read from the database without writing.

    ``None`` when the registry file does not exist. For readers that must not write (the
    service) and find the file behind :func:`registry_alias_seq`.
    """
    with _read_only(registry_path) as con:
        if con is None:
            return None
        con.execute("BEGIN")
        try:
            return _alias_snapshot(con, Path(models_dir).resolve(), name)
        finally:
            con.execute("COMMIT")


# ------------------------------------------------------------------------------ the registry


class ModelRegistry:
    """Versions, statuses and aliases of models in a SQLite file, artifacts under ``models_dir``.

    ``db_path`` is created (WAL mode) if missing, migrating a legacy registry from
    ``<models_dir>/../offline.duckdb`` when that file holds one.
    ``lock_timeout_s`` bounds how long a write waits for another writer.
    """

    def __init__(
        self,
        db_path: Path,
        models_dir: Path,
        *,
        lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
    ) -> None:
        self.path = Path(db_path).resolve()
        self.models_dir = Path(models_dir).resolve()
        self.lock_timeout_s = lock_timeout_s
        self.models_dir.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            self._create()
        self._check_schema()

    # ----------------------------------------------------------------- database and schema

    def _connect(
        self, path: Path | None = None, lock_timeout_s: float | None = None
    ) -> sqlite3.Connection:
        con = sqlite3.connect(
            path or self.path,
            timeout=self.lock_timeout_s if lock_timeout_s is None else lock_timeout_s,
            isolation_level=None,
        )
        con.execute("PRAGMA foreign_keys = ON")
        con.execute("PRAGMA synchronous = FULL")
        return con

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A connection inside a read transaction: one consistent snapshot, never waits."""
        con = self._connect()
        try:
            con.execute("BEGIN")
            yield con
        finally:
            con.close()  # ends the read transaction

    @contextmanager
    def _write(self, lock_timeout_s: float | None = None) -> Iterator[sqlite3.Connection]:
        """A ``BEGIN IMMEDIATE`` transaction, committed when the block ends without error."""
        timeout = self.lock_timeout_s if lock_timeout_s is None else lock_timeout_s
        con = self._connect(lock_timeout_s=timeout)
        try:
            try:
                con.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                raise TimeoutError(
                    f"model registry {self.path} is locked by another writer; waited "
                    f"{timeout:g}s for it"
                ) from exc
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        finally:
            con.close()

    def _create(self) -> None:
        """Create the database file in one step, migrating a legacy registry when there is one.

        The database is built under a temporary name and hard-linked into place: the link fails
        when another process created the file meanwhile, and everybody opens a complete file.
        """
        from fti_assets.lib.registry.legacy import find_legacy_registry, insert_legacy_registry

        found = find_legacy_registry(
            self.models_dir.parent, self.path, lock_timeout_s=self.lock_timeout_s
        )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.creating")
        try:
            con = self._connect(tmp)
            try:
                con.execute("PRAGMA journal_mode = WAL")  # stored in the file: for every opener
                con.execute("BEGIN IMMEDIATE")
                for statement in _SCHEMA:
                    con.execute(statement)
                if found is not None:
                    insert_legacy_registry(con, found[1], self.models_dir)
                con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                con.execute("COMMIT")
            finally:
                con.close()
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                logger.info("%s was created by another process meanwhile", self.path)
                return
            _fsync_dir(self.path.parent)
        finally:
            tmp.unlink(missing_ok=True)
        if found is not None:
            legacy_path, legacy = found
            for name in sorted({row["name"] for row in legacy.versions}):
                self._repair_alias_file(name)
            logger.info(
                "migrated %d model versions from %s into %s",
                len(legacy.versions),
                legacy_path,
                self.path,
            )

    def _check_schema(self) -> None:
        con = self._connect()
        try:
            (version,) = con.execute("PRAGMA user_version").fetchone()
            (journal,) = con.execute("PRAGMA journal_mode").fetchone()
        finally:
            con.close()
        if version in _MIGRATIONS:
            self._migrate(version)
        elif version != SCHEMA_VERSION:
            raise RuntimeError(
                f"model registry {self.path} has schema version {version}; this code reads "
                f"version {SCHEMA_VERSION}. Use the release that wrote it, or rebuild with "
                "`make clean && make demo`"
            )
        if journal != "wal":
            raise RuntimeError(
                f"model registry {self.path} is in journal mode {journal!r}; expected 'wal' "
                "(set when the registry creates the file)"
            )

    def _migrate(self, version: int) -> None:
        """Bring a registry of an older schema to this one, in one transaction."""
        with self._write() as con:
            (current,) = con.execute("PRAGMA user_version").fetchone()
            while current != SCHEMA_VERSION:  # another process may have migrated meanwhile
                for statement in _MIGRATIONS[current]:
                    con.execute(statement)
                current += 1
                con.execute(f"PRAGMA user_version = {current}")
        logger.info("migrated model registry %s from schema %d to %d", self.path, version, current)

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
        idempotency_key: str | None = None,
        feature_view: dict[str, Any] | None = None,
    ) -> ModelVersion:
        """Copy the artifact to ``<models_dir>/<name>/<version>/`` under the next version.

        ``idempotency_key`` (e.g. the Dagster run id): when a version of ``name`` was already
        registered with this key, return it instead of registering again (a re-run after a crash
        or a step retry); a different artifact under the same key is refused.

        ``feature_view`` ({"name", "version", "fingerprint", "definition"}, as a dataset manifest
        records it) is the view the version was trained on: its definition is kept, and a view
        version registered before with a different selection is refused.
        """
        _check_name(name, "model name")
        _check_status(status)
        bad_groups = {
            k: v for k, v in feature_group_versions.items() if not isinstance(v, int | np.integer)
        }
        if bad_groups:
            raise ValueError(f"feature group versions must be integers; got {bad_groups}")
        artifact_dir = Path(artifact_dir)
        sha = artifact_sha256(artifact_dir)
        if idempotency_key is not None:
            with self._read() as con:
                existing = self._by_idempotency_key(con, name, idempotency_key, sha)
            if existing is not None:
                return existing
        code_version = code_version or git_code_version()
        name_dir = self.models_dir / name
        name_dir.mkdir(parents=True, exist_ok=True)
        _remove_dead_staging(name_dir)
        with _staging_dir(name_dir) as staging:
            for file_name in ARTIFACT_FILES:
                _copy_durably(artifact_dir / file_name, staging / file_name)
            copied = artifact_sha256(staging)
            if copied != sha:
                raise TamperedModelError(
                    f"artifact {artifact_dir} changed while being copied: sha256 {sha} before, "
                    f"{copied} after"
                )
            _check_artifact(staging, artifact_dir)
            now = _now()
            with self._write() as con:
                if idempotency_key is not None:
                    existing = self._by_idempotency_key(con, name, idempotency_key, sha)
                    if existing is not None:
                        return existing
                version, adopt, retired = self._allocate(con, name, name_dir, sha)
                target = name_dir / str(version)
                if not adopt:
                    staging.rename(target)
                    _fsync_dir(name_dir)
                view_key = self._keep_feature_view(con, feature_view, now)
                con.execute(
                    'INSERT INTO "model_names" ("name", "last_version") VALUES (?, ?) '
                    'ON CONFLICT ("name") DO UPDATE SET "last_version" = excluded."last_version"',
                    (name, version),
                )
                con.execute(
                    'INSERT INTO "model_versions" ("name", "version", "created_at", '
                    '"training_dataset_version", "feature_group_versions", "code_version", '
                    '"params", "metrics", "sha256", "artifact_path", "status", '
                    '"status_changed_at", "tags", "idempotency_key", "feature_view") '
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        name,
                        version,
                        now,
                        training_dataset_version,
                        _dumps(feature_group_versions),
                        code_version,
                        _dumps(params),
                        _dumps(metrics),
                        sha,
                        f"{name}/{version}",
                        status,
                        now,
                        _dumps(tags or {}),
                        idempotency_key,
                        view_key,
                    ),
                )
                registered = self._get(con, name, version)
        for orphan in retired:  # their numbers are retired by the commit: safe to delete now
            logger.info("removing %s, a version folder without a registry row", orphan)
            _remove_tree(orphan)
        self._repair_alias_file(name)
        logger.info("registered model %s version %d (sha256 %s)", name, version, sha)
        return registered

    @staticmethod
    def _keep_feature_view(
        con: sqlite3.Connection, view: dict[str, Any] | None, now: str
    ) -> str | None:
        """Record a view version's definition once; refuse a changed one under the same version."""
        if view is None:
            return None
        name, version, fingerprint = view["name"], int(view["version"]), view["fingerprint"]
        known = con.execute(
            'SELECT "fingerprint" FROM "feature_views" WHERE "name" = ? AND "version" = ?',
            (name, version),
        ).fetchone()
        if known is None:
            con.execute(
                'INSERT INTO "feature_views" VALUES (?, ?, ?, ?, ?)',
                (name, version, fingerprint, _dumps(view["definition"]), now),
            )
        elif known[0] != fingerprint:
            raise ValueError(
                f"feature view {name} v{version} was registered with another selection "
                f"(fingerprint {known[0][:12]}, now {fingerprint[:12]}): a changed view needs a "
                "new version"
            )
        return f"{name}@v{version}"

    def feature_view(self, name: str, version: int) -> dict[str, Any]:
        """The definition of a feature view version a registered model uses."""
        with self._read() as con:
            row = con.execute(
                'SELECT "definition" FROM "feature_views" WHERE "name" = ? AND "version" = ?',
                (name, version),
            ).fetchone()
        if row is None:
            raise ModelNotFoundError(f"no registered model uses feature view {name!r} v{version}")
        return json.loads(row[0])

    def feature_views(self) -> list[dict[str, Any]]:
        """Every feature view version registered models use, with the versions using it."""
        with self._read() as con:
            rows = con.execute(
                'SELECT v."name", v."version", v."fingerprint", v."registered_at", '
                "group_concat(m.\"name\" || ' v' || m.\"version\", ', ') "
                'FROM "feature_views" v LEFT JOIN "model_versions" m '
                'ON m."feature_view" = v."name" || \'@v\' || v."version" '
                'GROUP BY v."name", v."version" ORDER BY v."name", v."version"'
            ).fetchall()
        return [
            {"name": n, "version": v, "fingerprint": f, "registered_at": at, "models": models}
            for n, v, f, at, models in rows
        ]

    def _by_idempotency_key(
        self, con: sqlite3.Connection, name: str, key: str, sha: str
    ) -> ModelVersion | None:
        found = con.execute(
            'SELECT "version" FROM "model_versions" WHERE "name" = ? AND "idempotency_key" = ?',
            (name, key),
        ).fetchone()
        if found is None:
            return None
        existing = self._get(con, name, found[0])
        if existing.sha256 != sha:
            raise ValueError(
                f"model {name!r} version {existing.version} was registered with idempotency key "
                f"{key!r} and sha256 {existing.sha256}; this artifact has sha256 {sha}. "
                "Use a new key for a new artifact"
            )
        logger.info("model %s version %d is already registered under key %r", name, found[0], key)
        return existing

    @staticmethod
    def _allocate(
        con: sqlite3.Connection, name: str, name_dir: Path, sha: str
    ) -> tuple[int, bool, list[Path]]:
        """(version, adopt, retired) for a registration holding the write lock.

        With the lock held no registration is between its rename and its commit, so a numbered
        folder without a row was left by a killed one. The folder at the next number is adopted
        when it holds this very artifact; every other such folder is retired (its number is
        never handed out again) and returned, to be deleted once the transaction committed.
        """
        found = con.execute(
            'SELECT "last_version" FROM "model_names" WHERE "name" = ?', (name,)
        ).fetchone()
        last = 0 if found is None else int(found[0])
        rows = {
            v
            for (v,) in con.execute(
                'SELECT "version" FROM "model_versions" WHERE "name" = ?', (name,)
            )
        }
        orphans = sorted(n for n in _version_dirs(name_dir) if n not in rows)
        following = last + 1
        if following in orphans and _sha256_or_none(name_dir / str(following)) == sha:
            logger.info(
                "adopting %s, left with this artifact by a killed registration",
                name_dir / str(following),
            )
            return following, True, [name_dir / str(n) for n in orphans if n != following]
        return max([last, *orphans]) + 1, False, [name_dir / str(n) for n in orphans]

    def _fetch_versions(
        self, con: sqlite3.Connection, where: str, args: tuple[Any, ...]
    ) -> list[ModelVersion]:
        rows = con.execute(
            f'SELECT {_VERSION_COLUMNS} FROM "model_versions" {where} ORDER BY "name", "version"',
            args,
        ).fetchall()
        aliases: dict[tuple[str, int], list[str]] = {}
        for name, alias, version in con.execute(
            'SELECT "name", "alias", "version" FROM "aliases" ORDER BY "alias"'
        ):
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
            feature_view,
        ) = row
        return ModelVersion(
            name=name,
            version=version,
            created_at=_parse_time(created_at),
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
            feature_view=feature_view,
        )

    def _get(self, con: sqlite3.Connection, name: str, version: int) -> ModelVersion:
        found = self._fetch_versions(con, 'WHERE "name" = ? AND "version" = ?', (name, version))
        if not found:
            raise ModelNotFoundError(f"model {name!r} has no version {version!r}")
        return found[0]

    def find_by_key(self, name: str, idempotency_key: str) -> ModelVersion | None:
        """The version of ``name`` registered with ``idempotency_key`` (e.g. by a given Dagster
        run), or ``None``."""
        with self._read() as con:
            found = con.execute(
                'SELECT "version" FROM "model_versions" WHERE "name" = ? AND "idempotency_key" = ?',
                (name, idempotency_key),
            ).fetchone()
            return None if found is None else self._get(con, name, found[0])

    def get(self, name: str, version: int) -> ModelVersion:
        with self._read() as con:
            return self._get(con, name, version)

    def list(self, name: str | None = None) -> list[ModelVersion]:
        """All versions (of one model when ``name`` is given), oldest first."""
        with self._read() as con:
            if name is None:
                return self._fetch_versions(con, "", ())
            return self._fetch_versions(con, 'WHERE "name" = ?', (name,))

    def set_status(self, name: str, version: int, status: str, reason: str | None = None) -> None:
        """Record a gate result, e.g. ``"rejected"`` with the gates that failed as ``reason``.

        Only the moves in :data:`TRANSITIONS` are allowed, and the champion cannot be rejected
        (promote or roll back to another version first).
        """
        _check_status(status)
        with self._write() as con:
            current = self._get(con, name, version)
            if status != current.status and status not in TRANSITIONS[current.status]:
                allowed = sorted(TRANSITIONS[current.status]) or "nothing"
                raise ValueError(
                    f"model {name!r} version {version} is {current.status!r}; it can become "
                    f"{allowed}, not {status!r}"
                )
            if status == REJECTED and CHAMPION in current.aliases:
                raise ValueError(
                    f"model {name!r} version {version} is the {CHAMPION}; promote or roll back to "
                    f"another version before rejecting it ({reason or 'no reason given'})"
                )
            con.execute(
                'UPDATE "model_versions" SET "status" = ?, "status_reason" = ?, '
                '"status_changed_at" = ? WHERE "name" = ? AND "version" = ?',
                (status, reason, _now(), name, version),
            )
        self._repair_alias_file(name)
        logger.info("model %s version %d status -> %s (%s)", name, version, status, reason)

    # ------------------------------------------------------------------------------ aliases

    @staticmethod
    def _alias_version(con: sqlite3.Connection, name: str, alias: str) -> int | None:
        found = con.execute(
            'SELECT "version" FROM "aliases" WHERE "name" = ? AND "alias" = ?', (name, alias)
        ).fetchone()
        return None if found is None else int(found[0])

    @staticmethod
    def _history(con: sqlite3.Connection, name: str, alias: str | None = None) -> list[AliasChange]:
        query = (
            'SELECT "seq", "name", "alias", "version", "previous_version", "action", "reason", '
            '"changed_at" FROM "alias_history" WHERE "name" = ?'
        )
        args: tuple[Any, ...] = (name,)
        if alias is not None:
            query += ' AND "alias" = ?'
            args = (name, alias)
        rows = con.execute(query + ' ORDER BY "seq"', args).fetchall()
        return [AliasChange(*row[:-1], changed_at=_parse_time(row[-1])) for row in rows]

    @staticmethod
    def _verify_artifact(model: ModelVersion, alias: str) -> None:
        """Refuse to point ``alias`` at a missing or altered artifact."""
        actual = _sha256_or_none(model.artifact_path)
        if actual != model.sha256:
            raise TamperedModelError(
                f"model {model.name!r} version {model.version}: artifact {model.artifact_path} "
                f"has sha256 {actual or '(files missing)'}, registered {model.sha256}; "
                f"{alias!r} stays where it is"
            )

    @staticmethod
    def _move_alias(
        con: sqlite3.Connection,
        name: str,
        alias: str,
        version: int,
        previous: int | None,
        action: str,
        reason: str | None,
    ) -> None:
        now = _now()
        con.execute(
            'INSERT INTO "aliases" ("name", "alias", "version", "updated_at") VALUES (?, ?, ?, ?) '
            'ON CONFLICT ("name", "alias") DO UPDATE SET "version" = excluded."version", '
            '"updated_at" = excluded."updated_at"',
            (name, alias, version, now),
        )
        con.execute(
            'INSERT INTO "alias_history" ("name", "alias", "version", "previous_version", '
            '"action", "reason", "changed_at") VALUES (?, ?, ?, ?, ?, ?, ?)',
            (name, alias, version, previous, action, reason, now),
        )

    def _alias_file_matches(self, name: str, stored: AliasSnapshot) -> bool:
        """Whether aliases.json holds ``stored`` (the database's aliases; no file: no aliases)."""
        try:
            on_disk = load_alias_file(self.models_dir, name)
        except ValueError as exc:
            logger.warning("%s; rewriting it", exc)
            return False
        return on_disk == stored or (on_disk is None and not stored.aliases)

    def _repair_alias_file(self, name: str, lock_timeout_s: float | None = None) -> AliasSnapshot:
        """Rewrite aliases.json when it differs from the database (a crash, an old release).

        Checked without a lock first (the common case: nothing to do); rewritten under the write
        lock from the state read under it, so a slow writer never replaces a newer file with an
        older one. A write that already committed waits ``lock_timeout_s`` for the lock, a read
        only :data:`_READER_LOCK_WAIT_S`; when the lock stays taken the file is left for the next
        read or write (logged): the database, which is the truth, is already right. Returns the
        database's aliases.
        """
        _check_name(name, "model name")  # it names a folder: never a path of its own
        with self._read() as con:
            stored = _alias_snapshot(con, self.models_dir, name)
        if self._alias_file_matches(name, stored):
            return stored
        name_dir = self.models_dir / name
        name_dir.mkdir(parents=True, exist_ok=True)
        try:
            with self._write(lock_timeout_s) as con:
                for leftover in name_dir.glob(f"{_ALIAS_TMP_PREFIX}*.tmp"):
                    leftover.unlink()  # alias files are written under this lock: the writer died
                stored = _alias_snapshot(con, self.models_dir, name)
                if not self._alias_file_matches(name, stored):
                    _write_json_atomic(name_dir / ALIAS_FILE, stored.to_json())
                    logger.info(
                        "%s rewritten from the registry (seq %d)", name_dir / ALIAS_FILE, stored.seq
                    )
        except TimeoutError as exc:
            logger.warning(
                "%s differs from the registry and is left for the next read or write: %s",
                name_dir / ALIAS_FILE,
                exc,
            )
        return stored

    def read_alias_file(self, name: str, alias: str = CHAMPION) -> dict[str, Any] | None:
        """The entry of ``alias`` as aliases.json holds it once repaired: ``{version, sha256,
        path, updated_at}`` from the database, the file rewritten when it was behind."""
        return self._repair_alias_file(name, _READER_LOCK_WAIT_S).aliases.get(alias)

    def promote(
        self, name: str, version: int, alias: str = CHAMPION, reason: str | None = None
    ) -> ModelVersion:
        """Point ``alias`` at ``version`` (atomically, with history); a no-op if it already is.

        A version whose status is ``rejected`` cannot become champion, and an alias never moves
        onto an artifact whose files are missing or altered.
        """
        _check_name(alias, "alias")
        with self._write() as con:
            target = self._get(con, name, version)
            if alias == CHAMPION and target.status == REJECTED:
                raise ValueError(
                    f"model {name!r} version {version} is {REJECTED} "
                    f"({target.status_reason or 'no reason recorded'}); it cannot become "
                    f"{CHAMPION}"
                )
            previous = self._alias_version(con, name, alias)
            if previous != version:
                self._verify_artifact(target, alias)
                self._move_alias(con, name, alias, version, previous, "promote", reason)
                target = self._get(con, name, version)
        self._repair_alias_file(name)
        logger.info("model %s: %s -> version %d", name, alias, version)
        return target

    def rollback(self, name: str, alias: str = CHAMPION, reason: str | None = None) -> ModelVersion:
        """Move ``alias`` back to its previous holder; repeated rollbacks walk further back.

        History is replayed as a stack (promote pushes, rollback pops), so rolling back twice
        after promoting v1, v2, v3 lands on v1, not back on v3. For the champion, rejected
        versions are skipped. Raises :class:`ValueError` when there is no previous holder.
        """
        _check_name(alias, "alias")
        with self._write() as con:
            stack = _holders(self._history(con, name, alias))
            if not stack:
                raise ModelNotFoundError(f"model {name!r} has no alias {alias!r}")
            current = stack[-1]
            target = None
            for candidate in reversed(stack[:-1]):
                holder = self._get(con, name, candidate)
                if candidate != current and not (alias == CHAMPION and holder.status == REJECTED):
                    target = holder
                    break
            if target is None:
                raise ValueError(
                    f"alias {alias!r} of model {name!r} has no previous holder to roll back "
                    f"to (holders so far: {stack})"
                )
            self._verify_artifact(target, alias)
            self._move_alias(con, name, alias, target.version, current, "rollback", reason)
            restored = self._get(con, name, target.version)
        self._repair_alias_file(name)
        logger.info("model %s: %s rolled back to version %d", name, alias, restored.version)
        return restored

    def resolve(self, name: str, alias: str = CHAMPION) -> ModelVersion | None:
        """The version ``alias`` points at, or ``None`` when the alias is unset."""
        self._repair_alias_file(name, _READER_LOCK_WAIT_S)
        with self._read() as con:
            version = self._alias_version(con, name, alias)
            return None if version is None else self._get(con, name, version)

    def alias_history(self, name: str, alias: str | None = None) -> list[AliasChange]:
        """Every alias change of ``name`` (optionally one alias), oldest first."""
        with self._read() as con:
            return self._history(con, name, alias)

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
