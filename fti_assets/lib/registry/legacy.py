"""The model registry of earlier releases, read from a DuckDB file to migrate it.

Earlier releases kept the registry in three tables (``registry_model_versions``,
``registry_aliases``, ``registry_alias_history``) of the offline store's DuckDB file in the data
folder, ``offline.duckdb``. When :class:`~fti_assets.lib.registry.model_registry.ModelRegistry`
creates its SQLite file, that file is looked at; it is read (read-only, or through the database
instance this process already has open) and never modified:

* registry tables found: their rows are copied in the transaction that creates the SQLite schema;
* no registry tables (an offline store that never held models): nothing to migrate;
* a file this DuckDB cannot open (written by a newer DuckDB, say): :class:`LegacyRegistryError`
  with the ways to rebuild, rather than an empty registry that silently forgets the models.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

logger = logging.getLogger(__name__)

LEGACY_FILES = ("offline.duckdb",)
VERSIONS_TABLE = "registry_model_versions"
ALIASES_TABLE = "registry_aliases"
HISTORY_TABLE = "registry_alias_history"

_VERSION_COLUMNS = (
    "name",
    "version",
    "created_at",
    "training_dataset_version",
    "feature_group_versions",
    "code_version",
    "params",
    "metrics",
    "sha256",
    "artifact_path",
    "status",
    "status_reason",
    "status_changed_at",
    "tags",
)
_ALIAS_COLUMNS = ("name", "alias", "version", "updated_at")
_HISTORY_COLUMNS = (
    "seq",
    "name",
    "alias",
    "version",
    "previous_version",
    "action",
    "reason",
    "changed_at",
)


class LegacyRegistryError(RuntimeError):
    """A legacy registry file exists but cannot be read; the message says how to rebuild."""


@dataclass(frozen=True)
class LegacyRegistry:
    """Rows of the three legacy tables, timestamps as ISO 8601 UTC text."""

    versions: list[dict[str, Any]]
    aliases: list[dict[str, Any]]
    history: list[dict[str, Any]]


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _unreadable(path: Path, registry_path: Path, exc: Exception) -> str:
    return (
        f"{path} may hold a model registry of an earlier release, and duckdb "
        f"{duckdb.__version__} cannot read it ({type(exc).__name__}: {exc}). The registry now "
        f"lives in {registry_path} and is not created while that file's models are unaccounted "
        "for. Rebuild the data folder with `make clean && make demo`, or delete "
        f"{path} (its models are then forgotten) and run again"
    )


def _connect(path: Path, registry_path: Path, lock_timeout_s: float) -> duckdb.DuckDBPyConnection:
    """Open ``path`` read-only, waiting up to ``lock_timeout_s`` for a writer to let go."""
    deadline = time.monotonic() + lock_timeout_s
    delay = 0.05
    while True:
        try:
            return duckdb.connect(str(path), read_only=True)
        except duckdb.ConnectionException as exc:
            if "different configuration" not in str(exc):
                raise LegacyRegistryError(_unreadable(path, registry_path, exc)) from exc
            # This process has the file open for writing: share that database instance.
            return duckdb.connect(str(path))
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise LegacyRegistryError(_unreadable(path, registry_path, exc)) from exc
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"{path} (a possible legacy model registry to migrate into {registry_path}) "
                    f"is locked by another process; waited {lock_timeout_s:g}s. Stop the process "
                    "writing it and run again"
                ) from exc
        except duckdb.Error as exc:
            raise LegacyRegistryError(_unreadable(path, registry_path, exc)) from exc
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


def _as_text(value: Any) -> Any:
    return value.astimezone(UTC).isoformat() if isinstance(value, datetime) else value


def _rows(
    con: duckdb.DuckDBPyConnection, table: str, columns: tuple[str, ...], order: str
) -> list[dict[str, Any]]:
    query = (
        f"SELECT {', '.join(_quote(c) for c in columns)} FROM {_quote(table)} "
        f"ORDER BY {_quote(order)}"
    )
    return [
        {column: _as_text(value) for column, value in zip(columns, row, strict=True)}
        for row in con.execute(query).fetchall()
    ]


def read_legacy_registry(
    path: Path, registry_path: Path, *, lock_timeout_s: float
) -> LegacyRegistry | None:
    """The legacy registry in DuckDB file ``path``, or None when the file holds none.

    Raises :class:`LegacyRegistryError` when the file cannot be read, :class:`TimeoutError` when
    another process keeps it locked.
    """
    con = _connect(Path(path), Path(registry_path), lock_timeout_s)
    try:
        tables = {
            name
            for (name,) in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE table_name IN (?, ?, ?)",
                [VERSIONS_TABLE, ALIASES_TABLE, HISTORY_TABLE],
            ).fetchall()
        }
        if VERSIONS_TABLE not in tables:
            return None
        return LegacyRegistry(
            versions=_rows(con, VERSIONS_TABLE, _VERSION_COLUMNS, "version"),
            aliases=_rows(con, ALIASES_TABLE, _ALIAS_COLUMNS, "alias")
            if ALIASES_TABLE in tables
            else [],
            history=_rows(con, HISTORY_TABLE, _HISTORY_COLUMNS, "seq")
            if HISTORY_TABLE in tables
            else [],
        )
    finally:
        con.close()


def find_legacy_registry(
    data_dir: Path, registry_path: Path, *, lock_timeout_s: float
) -> tuple[Path, LegacyRegistry] | None:
    """The first of :data:`LEGACY_FILES` under ``data_dir`` that holds a registry, and its rows.

    Raises like :func:`read_legacy_registry` for a file that cannot be read.
    """
    for name in LEGACY_FILES:
        path = Path(data_dir) / name
        if path.exists():
            legacy = read_legacy_registry(path, registry_path, lock_timeout_s=lock_timeout_s)
            if legacy is not None:
                return path, legacy
    return None


def _insert(con: sqlite3.Connection, table: str, rows: list[dict[str, Any]]) -> None:
    for row in rows:
        columns = list(row)
        con.execute(
            f"INSERT INTO {_quote(table)} ({', '.join(_quote(c) for c in columns)}) "
            f"VALUES ({', '.join('?' for _ in columns)})",
            [row[c] for c in columns],
        )


def insert_legacy_registry(
    con: sqlite3.Connection, legacy: LegacyRegistry, models_dir: Path
) -> None:
    """Copy ``legacy`` into the registry schema of ``con`` (inside the caller's transaction).

    Alias-history numbers are kept. Each model's last handed-out number is the highest of its
    rows and of the numbered folders under ``models_dir`` (a folder left by a killed
    registration keeps its number retired).
    """
    last_versions: dict[str, int] = {}
    for row in legacy.versions:
        name = row["name"]
        last_versions[name] = max(last_versions.get(name, 0), int(row["version"]))
        if not (Path(models_dir) / row["artifact_path"]).is_dir():
            logger.warning(
                "legacy model %s version %s has no artifact folder %s; loading it will fail",
                name,
                row["version"],
                Path(models_dir) / row["artifact_path"],
            )
    for name in last_versions:
        name_dir = Path(models_dir) / name
        if name_dir.is_dir():
            numbered = [int(p.name) for p in name_dir.iterdir() if p.name.isdigit()]
            last_versions[name] = max([last_versions[name], *numbered])
    _insert(con, "model_names", [{"name": n, "last_version": v} for n, v in last_versions.items()])
    _insert(con, "model_versions", legacy.versions)
    _insert(con, "aliases", legacy.aliases)
    _insert(con, "alias_history", legacy.history)
