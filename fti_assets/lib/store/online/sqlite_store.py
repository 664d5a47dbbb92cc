"""The embedded online store backend: a SQLite file in WAL mode.

Readers never block writers nor see a half-written batch, and another process (the HTTP
service, ``fti stream``) can read and write the file while Dagster writes it. Selected by an
``FTI_ONLINE_URL`` of the form ``sqlite:///abs/path/online.sqlite`` (the default, under
``FTI_DATA_DIR``); see :func:`fti_assets.lib.store.online.open_online_store`.

Layout of the file (storage layout 2; rows encoded as described in
:mod:`fti_assets.lib.store.online.codec`):

- one ``WITHOUT ROWID`` table per group version, ``fg__<name>_v<version>``, with the entity key
  as PRIMARY KEY, the event time as integer microseconds since the epoch (UTC) and the packed
  features in one BLOB column ``fti_values``. In the ``sqlite3`` shell, read a value with
  ``json_extract(CAST(fti_values AS TEXT), '$[0]')``;
- ``fti_online_group_versions``: the spec of every written group version, its row count, newest
  event time and last write time;
- ``fti_online_current``: which version of each group ``get`` reads. A version bump writes a new
  table and switches this pointer in the same transaction; old versions stay readable;
- ``fti_stream_consumers``, ``fti_stream_entries``, ``fti_stream_dead_letters``: the checkpoint
  of each streaming consumer (offset, counters), the events its window state holds and the
  events it could not apply, written in the same transaction as the rows of each micro-batch.

A group version written with another storage layout (layout 1 had one column per feature) is
refused with :class:`OnlineStoreLayoutError` instead of being misread; ``replace_group`` rewrites
it. SQLite's own errors reach callers as :class:`OnlineStoreError`.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import orjson
import polars as pl

from fti_assets.lib.store.group_spec import FeatureGroupSpec
from fti_assets.lib.store.online.base import (
    DeadLetter,
    NotFound,
    OnlineRow,
    OnlineStoreError,
    OnlineStoreLayoutError,
    OnlineStoreUnavailableError,
    StateEntry,
    StreamCheckpoint,
    StreamCommit,
    StreamFencedError,
    WriteResult,
)
from fti_assets.lib.store.online.codec import (
    LAYOUT,
    VALUES_COLUMN,
    GroupCodec,
    GroupMeta,
    GroupSchema,
    from_us,
    latest_per_entity,
    now_us,
    pack_rows,
    rows_to_frame,
    schema_for,
    schema_for_row,
)

logger = logging.getLogger(__name__)
T = TypeVar("T")

_VERSIONS_TABLE = "fti_online_group_versions"
_CURRENT_TABLE = "fti_online_current"
# One row, one counter: bumped whenever a group's spec or current version changes.
_GENERATION_TABLE = "fti_online_generation"
_CONSUMERS_TABLE = "fti_stream_consumers"
_ENTRIES_TABLE = "fti_stream_entries"
_DEAD_LETTERS_TABLE = "fti_stream_dead_letters"
_KEY_SQL_TYPES = {"int64": "INTEGER", "string": "TEXT"}
# Largest number of entities looked up by one SELECT; longer get_many calls run several
# statements inside one read transaction, so they still see a single snapshot.
_MAX_BATCH = 512
_MMAP_BYTES = 1 << 30
_CACHE_KIB = 64 * 1024
_WAL_LIMIT_BYTES = 64 << 20
# Copy the WAL back into the file every 10,000 pages (40 MB) rather than SQLite's 1,000: a page a
# streaming micro-batch rewrites again before the checkpoint is copied once. 2,000 random row
# updates + window entries per commit cost 9.8 instead of 16 ms of CPU in COMMIT (measured).
_CHECKPOINT_PAGES = 10_000
_BUSY_TIMEOUT_S = 30.0
_WRITE_SLICE_ROWS = 100_000
_READ_SLICE_ROWS = 16_384


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


class _GroupReader(GroupCodec):
    """Prepared SQL, key normalisation and a row decoder for the current version of one group."""

    __slots__ = ("_columns_sql", "_table_sql", "_key_on_sql", "sql_one", "_sql_many")

    def __init__(self, schema: GroupSchema) -> None:
        super().__init__(schema)
        self._columns_sql = ", ".join(f"t.{_quote(c)}" for c in schema.stored_columns)
        self._table_sql = _quote(schema.table)
        where = " AND ".join(f"t.{_quote(k)} = ?" for k in schema.entity_keys)
        self.sql_one = f"SELECT {self._columns_sql} FROM {self._table_sql} AS t WHERE {where}"
        self._key_on_sql = " AND ".join(
            f"t.{_quote(k)} = v.column{i}" for i, k in enumerate(schema.entity_keys, start=1)
        )
        self._sql_many: dict[int, str] = {}

    def params(self, keys: list[Any]) -> list[Any]:
        """SQL parameters for keys from :meth:`normalize_many`."""
        return keys if self.single_key else [value for key in keys for value in key]

    def sql_many(self, n_keys: int) -> str:
        """SELECT for a power-of-two number of keys, so few distinct statements get cached."""
        sql = self._sql_many.get(n_keys)
        if sql is None:
            if self.single_key:
                marks = ", ".join("?" * n_keys)
                where = f"t.{_quote(self.key_names[0])} IN ({marks})"
                sql = f"SELECT {self._columns_sql} FROM {self._table_sql} AS t WHERE {where}"
            else:
                row = "(" + ", ".join("?" * len(self.key_names)) + ")"
                values = ", ".join([row] * n_keys)
                # CROSS JOIN keeps the VALUES list as the outer loop: one primary-key seek per
                # requested entity, whatever the planner's statistics say.
                sql = (
                    f"SELECT {self._columns_sql} FROM (VALUES {values}) AS v "
                    f"CROSS JOIN {self._table_sql} AS t ON {self._key_on_sql}"
                )
            self._sql_many[n_keys] = sql
        return sql


def _connect(path: Path, readonly: bool) -> sqlite3.Connection:
    if readonly:
        if not path.exists():
            raise OnlineStoreUnavailableError(
                f"online store {path} does not exist; write a group first (e.g. `make demo`)"
            )
        con = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro",
            uri=True,
            isolation_level=None,
            check_same_thread=False,
            timeout=_BUSY_TIMEOUT_S,
            cached_statements=512,
        )
    else:
        con = sqlite3.connect(
            path,
            isolation_level=None,
            check_same_thread=False,
            timeout=_BUSY_TIMEOUT_S,
            cached_statements=512,
        )
        con.execute("PRAGMA journal_mode=WAL").fetchall()
        con.execute("PRAGMA synchronous=NORMAL")
        con.execute(f"PRAGMA journal_size_limit={_WAL_LIMIT_BYTES}")
        con.execute(f"PRAGMA wal_autocheckpoint={_CHECKPOINT_PAGES}")
    con.execute(f"PRAGMA mmap_size={_MMAP_BYTES}").fetchall()
    con.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
    return con


class OnlineStore:
    """SQLite online store; see the module docstring for the layout.

    Thread-safe: one long-lived read connection guarded by a lock serves ``get``/``get_many``
    from any thread, and writes go through a second connection, so a write from this object
    does not stall its readers. Other processes may read (and write) the same file at once.
    """

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path).resolve()
        self.url = f"sqlite://{self.path}"
        self.readonly = readonly
        self._read_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._data_version: int | None = None
        self._generation: int | None = None
        self._readers: dict[str, _GroupReader] = {}
        # Current group versions stored with another layout: group name -> error message.
        self._stale: dict[str, str] = {}
        self._closed = False
        try:
            if not readonly:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._writer = _connect(self.path, readonly=False)
                self._create_metadata_tables(self._writer)
            self._reader = _connect(self.path, readonly=readonly)
            self._cursor = self._reader.cursor()
            if readonly:
                # A reader (the HTTP service) refuses such a file up front, not at each lookup.
                self._refresh_if_changed()
                if self._stale:
                    raise OnlineStoreLayoutError(" ".join(self._stale.values()))
        except BaseException as exc:
            self._close_connections()
            if isinstance(exc, sqlite3.Error | OSError):
                raise OnlineStoreUnavailableError(
                    f"online store {self.path} cannot be opened: {exc}"
                ) from exc
            raise

    # -- writes -----------------------------------------------------------------------------

    def write_group(self, spec: FeatureGroupSpec, frame: pl.DataFrame) -> WriteResult:
        """Upsert the latest row per entity of ``frame``; a stored newer row is kept.

        One transaction per call: readers see all of this batch or none of it. A ``spec`` with a
        higher version than the stored one starts the new version's table and makes it current.
        """
        return self._write(spec, frame, replace=False)

    def replace_group(self, spec: FeatureGroupSpec, frame: pl.DataFrame) -> WriteResult:
        """Rebuild ``spec``'s version of the group from ``frame`` alone and make it current.

        For backfills and version bumps (or an explicit rollback to an older version); done in one
        transaction, so readers see the old contents until the new ones are complete.
        """
        return self._write(spec, frame, replace=True)

    def _write(self, spec: FeatureGroupSpec, frame: pl.DataFrame, *, replace: bool) -> WriteResult:
        schema = schema_for(spec, frame)
        latest = latest_per_entity(schema, frame)
        started = time.perf_counter()

        def write(writer: sqlite3.Connection) -> int:
            self._check_against_stored(writer, schema, replace=replace)
            table = _quote(schema.table)
            if replace:
                writer.execute(f"DROP TABLE IF EXISTS {table}")
            writer.execute(_create_table_sql(schema))
            # Slices bound the Python objects alive at once (a 1M-row frame as tuples is ~0.5 GB);
            # they all go into the one transaction.
            written = sum(
                _upsert(writer, schema, part.iter_rows())
                for part in latest.iter_slices(_WRITE_SLICE_ROWS)
            )
            count, max_us = writer.execute(
                f"SELECT count(*), max({_quote(schema.event_time)}) FROM {table}"
            ).fetchone()
            _record_version(writer, schema, spec.description, count, max_us)
            return written

        written = self._in_write_transaction(spec.name, write)
        result = WriteResult(
            group=schema.name,
            version=schema.version,
            rows_in=frame.height,
            entities_written=written,
            entities_skipped_older=latest.height - written,
        )
        logger.info(
            "online store %s: %s %s in %.2fs",
            self.path,
            "replaced" if replace else "wrote",
            result,
            time.perf_counter() - started,
        )
        return result

    def commit_stream(self, commit: StreamCommit) -> None:
        """Write one streaming micro-batch and its checkpoint in ONE transaction.

        Refused with :class:`StreamFencedError` (nothing written) when the consumer's stored
        offset is not ``commit.expected_offset``.
        """
        spec = commit.spec
        schema = schema_for_row(spec, commit.rows[0]) if commit.rows else None
        rows = pack_rows(schema, commit.rows) if schema is not None else []

        def write(writer: sqlite3.Connection) -> None:
            _check_offset(writer, commit)
            if schema is not None:
                self._check_against_stored(writer, schema, replace=False)
                writer.execute(_create_table_sql(schema))
                _upsert_stream_rows(writer, schema, spec.description, rows)
            _write_stream_state(writer, commit)

        self._in_write_transaction(spec.name, write)

    def _in_write_transaction(self, group: str, write: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``write`` inside BEGIN IMMEDIATE ... COMMIT on the writer connection."""
        writer = self._require_writer(group)
        with self._write_lock:
            try:
                writer.execute("BEGIN IMMEDIATE")
                try:
                    result = write(writer)
                    self._commit(writer)
                except BaseException:
                    if writer.in_transaction:
                        writer.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise OnlineStoreError(f"online store {self.path}: write failed: {exc}") from exc
        return result

    def _commit(self, writer: sqlite3.Connection) -> None:
        writer.execute("COMMIT")

    def _require_writer(self, group: str) -> sqlite3.Connection:
        self._require_open()
        if self._writer is None:
            raise PermissionError(
                f"online store {self.path} is open read-only; cannot write group {group!r} "
                f"(open it with readonly=False)"
            )
        return self._writer

    @staticmethod
    def _create_metadata_tables(con: sqlite3.Connection) -> None:
        con.execute(
            f"CREATE TABLE IF NOT EXISTS {_VERSIONS_TABLE} ("
            "name TEXT NOT NULL, version INTEGER NOT NULL, spec TEXT NOT NULL, "
            "row_count INTEGER NOT NULL, max_event_time_us INTEGER, "
            "last_write_us INTEGER NOT NULL, PRIMARY KEY (name, version)) WITHOUT ROWID"
        )
        con.execute(
            f"CREATE TABLE IF NOT EXISTS {_CURRENT_TABLE} ("
            "name TEXT NOT NULL PRIMARY KEY, version INTEGER NOT NULL) WITHOUT ROWID"
        )
        con.execute(f"CREATE TABLE IF NOT EXISTS {_GENERATION_TABLE} (n INTEGER NOT NULL)")
        con.execute(
            f"INSERT INTO {_GENERATION_TABLE} (n) SELECT 0 "
            f"WHERE NOT EXISTS (SELECT 1 FROM {_GENERATION_TABLE})"
        )
        con.execute(
            f"CREATE TABLE IF NOT EXISTS {_CONSUMERS_TABLE} ("
            "consumer TEXT NOT NULL PRIMARY KEY, log_offset INTEGER NOT NULL, "
            "counters TEXT NOT NULL, info TEXT NOT NULL, updated_at_us INTEGER NOT NULL"
            ") WITHOUT ROWID"
        )
        con.execute(
            f"CREATE TABLE IF NOT EXISTS {_ENTRIES_TABLE} ("
            "consumer TEXT NOT NULL, entity TEXT NOT NULL, time_us INTEGER NOT NULL, "
            "entry_id TEXT NOT NULL, payload BLOB NOT NULL, "
            "PRIMARY KEY (consumer, entity, time_us, entry_id)) WITHOUT ROWID"
        )
        con.execute(
            f"CREATE TABLE IF NOT EXISTS {_DEAD_LETTERS_TABLE} ("
            "consumer TEXT NOT NULL, log_offset INTEGER NOT NULL, entity TEXT, event_id TEXT, "
            "reason TEXT NOT NULL, payload BLOB NOT NULL, recorded_at_us INTEGER NOT NULL, "
            "PRIMARY KEY (consumer, log_offset)) WITHOUT ROWID"
        )

    def _check_against_stored(
        self, con: sqlite3.Connection, schema: GroupSchema, *, replace: bool
    ) -> None:
        current = con.execute(
            f"SELECT version FROM {_CURRENT_TABLE} WHERE name = ?", (schema.name,)
        ).fetchone()
        if current is not None and schema.version < current[0] and not replace:
            raise ValueError(
                f"feature group {schema.name!r}: cannot write version {schema.version}, the "
                f"store already serves version {current[0]}; use replace_group to roll back"
            )
        stored = con.execute(
            f"SELECT spec FROM {_VERSIONS_TABLE} WHERE name = ? AND version = ?",
            (schema.name, schema.version),
        ).fetchone()
        if stored is None or replace:
            return
        stored_schema = _parsed_spec(stored[0])
        if stored_schema.layout != schema.layout:
            raise OnlineStoreLayoutError(self._layout_message(stored_schema))
        if stored_schema != schema:
            raise ValueError(
                f"feature group {schema.name!r} version {schema.version} is stored with "
                f"{stored_schema}, which differs from the incoming {schema}; bump the version "
                f"for a breaking change"
            )

    def _layout_message(self, schema: GroupSchema) -> str:
        return (
            f"online store {self.path}: feature group {schema.name!r} version {schema.version} "
            f"is stored with storage layout {schema.layout}, but this code reads and writes "
            f"layout {LAYOUT}; rewrite the group (replace_group, or delete the file and rerun "
            f"the pipeline, e.g. `make demo`)"
        )

    # -- reads ------------------------------------------------------------------------------

    def get(self, group: str, keys: dict[str, Any] | Any) -> OnlineRow | NotFound:
        """The stored row of one entity; ``keys`` may be a scalar when the group has one key."""
        with self._read_lock:
            reader = self._group_reader(group)
            params = reader.normalize(keys)
            try:
                row = self._cursor.execute(reader.sql_one, params).fetchone()
            except sqlite3.Error as exc:
                raise self._read_error(exc) from exc
        if row is None:
            return NotFound(group, dict(zip(reader.key_names, params, strict=True)))
        return reader.decode(row)

    def get_many(
        self, group: str, keys: Sequence[dict[str, Any] | Any]
    ) -> list[OnlineRow | NotFound]:
        """Rows for many entities, in request order, all from one consistent snapshot."""
        with self._read_lock:
            reader = self._group_reader(group)
            requested = reader.normalize_many(keys)
            if not requested:
                return []
            try:
                rows = self._fetch_many(reader, requested)
            except sqlite3.Error as exc:
                raise self._read_error(exc) from exc
        return reader.results(rows, requested)

    def _read_error(self, exc: sqlite3.Error) -> OnlineStoreError:
        return OnlineStoreError(f"online store {self.path}: read failed: {exc}")

    def _fetch_many(self, reader: _GroupReader, requested: list[Any]) -> list[tuple]:
        unique = list(dict.fromkeys(requested))
        chunks = [unique[i : i + _MAX_BATCH] for i in range(0, len(unique), _MAX_BATCH)]
        cursor = self._cursor
        if len(chunks) == 1:
            return self._fetch_chunk(cursor, reader, chunks[0])
        # Several statements: one read transaction keeps them on a single snapshot.
        cursor.execute("BEGIN")
        try:
            rows = [row for chunk in chunks for row in self._fetch_chunk(cursor, reader, chunk)]
        finally:
            cursor.execute("COMMIT")
        return rows

    @staticmethod
    def _fetch_chunk(cursor: sqlite3.Cursor, reader: _GroupReader, chunk: list[Any]) -> list[tuple]:
        size = 1 << (len(chunk) - 1).bit_length()
        # Pad with the first key up to a power of two: a repeated key matches the same row once.
        padded = chunk + [chunk[0]] * (size - len(chunk))
        return cursor.execute(reader.sql_many(size), reader.params(padded)).fetchall()

    def _group_reader(self, group: str) -> _GroupReader:
        """Reader for the current version of ``group``; call with the read lock held."""
        self._require_open()
        try:
            self._refresh_if_changed()
        except sqlite3.Error as exc:
            raise self._read_error(exc) from exc
        try:
            return self._readers[group]
        except KeyError:
            if group in self._stale:
                raise OnlineStoreLayoutError(self._stale[group]) from None
            raise KeyError(
                f"unknown online feature group {group!r}; known groups: {sorted(self._readers)}"
            ) from None

    def _refresh_if_changed(self) -> None:
        # data_version changes whenever another connection (this object's writer included)
        # commits, so a version bump made by another process is seen by the next lookup. Most
        # commits only change rows (a streaming pipeline commits many times a second): the
        # readers are rebuilt only when the generation, bumped with every spec or current
        # version change, moved (a rebuild compiles a decoder per group, about a millisecond).
        version = self._cursor.execute("PRAGMA data_version").fetchone()[0]
        if version == self._data_version:
            return
        generation = _generation(self._cursor)
        if generation is not None and generation == self._generation:
            self._data_version = version
            return
        metas = self._current_metas(self._cursor)
        self._readers = {
            m.schema.name: _GroupReader(m.schema) for m in metas if m.schema.layout == LAYOUT
        }
        self._stale = {
            m.schema.name: self._layout_message(m.schema)
            for m in metas
            if m.schema.layout != LAYOUT
        }
        self._data_version, self._generation = version, generation

    @staticmethod
    def _current_metas(cursor: sqlite3.Cursor) -> list[GroupMeta]:
        if not _tables_exist(cursor, _VERSIONS_TABLE, _CURRENT_TABLE):
            return []
        rows = cursor.execute(
            f"SELECT v.spec, v.row_count, v.max_event_time_us, v.last_write_us "
            f"FROM {_CURRENT_TABLE} AS c JOIN {_VERSIONS_TABLE} AS v "
            f"ON v.name = c.name AND v.version = c.version ORDER BY c.name"
        ).fetchall()
        return [GroupMeta.from_stored(*r) for r in rows]

    def groups(self) -> list[dict[str, Any]]:
        """The registered groups at their current version, with row counts and write times."""
        with self._read_lock:
            self._require_open()
            try:
                metas = self._current_metas(self._cursor)
                stored = self._cursor.execute(
                    f"SELECT name, version FROM {_VERSIONS_TABLE} ORDER BY name, version"
                ).fetchall()
            except sqlite3.Error as exc:
                raise self._read_error(exc) from exc
        versions: dict[str, list[int]] = {}
        for name, version in stored:
            versions.setdefault(name, []).append(version)
        return [m.describe(versions.get(m.schema.name, [])) for m in metas]

    def latest(self, group: str, version: int | None = None) -> pl.DataFrame:
        """Every stored row of ``group`` (its current version unless ``version`` is given).

        Columns and dtypes follow the group's spec: keys, event time (UTC), features.
        """
        with self._read_lock:
            current = self._group_reader(group)
            wanted = current.version if version is None else version
            try:
                return self._read_all(group, wanted)
            except sqlite3.Error as exc:
                raise self._read_error(exc) from exc

    def _read_all(self, group: str, version: int) -> pl.DataFrame:
        spec_row = self._cursor.execute(
            f"SELECT spec FROM {_VERSIONS_TABLE} WHERE name = ? AND version = ?",
            (group, version),
        ).fetchone()
        if spec_row is None:
            raise KeyError(f"online feature group {group!r} has no stored version {version}")
        schema = GroupSchema.from_json(spec_row[0])
        if schema.layout != LAYOUT:
            raise OnlineStoreLayoutError(self._layout_message(schema))
        columns = ", ".join(_quote(c) for c in schema.stored_columns)
        # One statement, so one snapshot; decoded in slices, which bounds the Python objects
        # alive at once and keeps the garbage collector from rescanning millions of them. Its
        # own cursor: closing it ends the read even if decoding fails half-way.
        cursor = self._connection().cursor()
        try:
            cursor.execute(f"SELECT {columns} FROM {_quote(schema.table)}")
            frames = []
            while rows := cursor.fetchmany(_READ_SLICE_ROWS):
                frames.append(rows_to_frame(schema, rows))
        finally:
            cursor.close()
        return pl.concat(frames) if frames else rows_to_frame(schema, [])

    # -- streaming checkpoints --------------------------------------------------------------

    def stream_checkpoint(self, consumer: str) -> StreamCheckpoint | None:
        """The committed offset and counters of a streaming consumer (None: never committed)."""
        with self._read_lock:
            self._require_open()
            try:
                if not _tables_exist(self._cursor, _CONSUMERS_TABLE):
                    return None
                row = self._cursor.execute(
                    f"SELECT log_offset, counters, info, updated_at_us FROM {_CONSUMERS_TABLE} "
                    "WHERE consumer = ?",
                    (consumer,),
                ).fetchone()
            except sqlite3.Error as exc:
                raise self._read_error(exc) from exc
        if row is None:
            return None
        offset, counters, info, updated_at_us = row
        return StreamCheckpoint(
            consumer, offset, orjson.loads(counters), orjson.loads(info), from_us(updated_at_us)
        )

    def stream_entries(self, consumer: str) -> Iterator[StateEntry]:
        """Every persisted window-state entry of a consumer, by entity then time."""
        with self._read_lock:
            self._require_open()
            try:
                if not _tables_exist(self._cursor, _ENTRIES_TABLE):
                    return iter(())
                rows = self._cursor.execute(
                    f"SELECT entity, time_us, entry_id, payload FROM {_ENTRIES_TABLE} "
                    "WHERE consumer = ? ORDER BY entity, time_us, entry_id",
                    (consumer,),
                ).fetchall()
            except sqlite3.Error as exc:
                raise self._read_error(exc) from exc
        return (StateEntry(*row) for row in rows)

    def dead_letters(self, consumer: str) -> list[DeadLetter]:
        """The events a consumer could not apply, in log order."""
        with self._read_lock:
            self._require_open()
            try:
                if not _tables_exist(self._cursor, _DEAD_LETTERS_TABLE):
                    return []
                rows = self._cursor.execute(
                    f"SELECT log_offset, entity, event_id, reason, payload "
                    f"FROM {_DEAD_LETTERS_TABLE} WHERE consumer = ? ORDER BY log_offset",
                    (consumer,),
                ).fetchall()
            except sqlite3.Error as exc:
                raise self._read_error(exc) from exc
        return [DeadLetter(*row) for row in rows]

    # -- lifecycle --------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._reader is None:
            raise RuntimeError(f"online store {self.path} is closed")
        return self._reader

    def _require_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"online store {self.path} is closed")

    def _close_connections(self) -> None:
        for con in (self._reader, self._writer):
            if con is not None:
                con.close()
        self._reader = self._writer = None

    def close(self) -> None:
        """Close both connections; further calls raise. Safe to call twice."""
        with self._read_lock, self._write_lock:
            if self._closed:
                return
            self._closed = True
            self._cursor.close()
            self._close_connections()

    def __enter__(self) -> OnlineStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _tables_exist(cursor: sqlite3.Cursor, *tables: str) -> bool:
    marks = ", ".join("?" * len(tables))
    found = cursor.execute(
        f"SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ({marks})", tables
    ).fetchone()[0]
    return found == len(tables)


# A streaming pipeline checks and records its group version with every commit, many times a
# second: the spec's JSON is parsed and written once per text, not per commit.
@functools.lru_cache(maxsize=64)
def _parsed_spec(spec_json: str) -> GroupSchema:
    return GroupSchema.from_json(spec_json)


@functools.lru_cache(maxsize=64)
def _spec_json(schema: GroupSchema, description: str) -> str:
    return schema.to_json(description)


def _record_version(
    con: sqlite3.Connection,
    schema: GroupSchema,
    description: str,
    row_count: int,
    max_event_time_us: int | None,
) -> None:
    """Store the version's spec and figures and make it the group's current version."""
    spec = _spec_json(schema, description)
    stored = con.execute(
        f"SELECT spec FROM {_VERSIONS_TABLE} WHERE name = ? AND version = ?",
        (schema.name, schema.version),
    ).fetchone()
    current = con.execute(
        f"SELECT version FROM {_CURRENT_TABLE} WHERE name = ?", (schema.name,)
    ).fetchone()
    con.execute(
        f"INSERT OR REPLACE INTO {_VERSIONS_TABLE} "
        "(name, version, spec, row_count, max_event_time_us, last_write_us) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (schema.name, schema.version, spec, row_count, max_event_time_us, now_us()),
    )
    if stored != (spec,) or current != (schema.version,):
        con.execute(
            f"INSERT OR REPLACE INTO {_CURRENT_TABLE} (name, version) VALUES (?, ?)",
            (schema.name, schema.version),
        )
        con.execute(f"UPDATE {_GENERATION_TABLE} SET n = n + 1")


def _generation(cursor: sqlite3.Cursor) -> int | None:
    """The schema generation (None in a file written before the counter existed)."""
    try:
        row = cursor.execute(f"SELECT n FROM {_GENERATION_TABLE}").fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return None
        raise
    return None if row is None else row[0]


def _check_offset(con: sqlite3.Connection, commit: StreamCommit) -> None:
    row = con.execute(
        f"SELECT log_offset FROM {_CONSUMERS_TABLE} WHERE consumer = ?", (commit.consumer,)
    ).fetchone()
    stored = 0 if row is None else row[0]
    if stored != commit.expected_offset:
        raise StreamFencedError.for_offsets(commit.consumer, stored, commit.expected_offset)


def _count_existing(
    con: sqlite3.Connection, schema: GroupSchema, rows: list[tuple[Any, ...]]
) -> int:
    """How many of the entities of ``rows`` (stored tuples) already have a row in the table."""
    n_keys = len(schema.entity_keys)
    on = " AND ".join(
        f"t.{_quote(k)} = v.column{i}" for i, k in enumerate(schema.entity_keys, start=1)
    )
    found = 0
    for start in range(0, len(rows), _MAX_BATCH):
        part = rows[start : start + _MAX_BATCH]
        row = "(" + ", ".join("?" * n_keys) + ")"
        values = ", ".join([row] * len(part))
        params = [value for stored in part for value in stored[:n_keys]]
        found += con.execute(
            f"SELECT count(*) FROM (VALUES {values}) AS v "
            f"CROSS JOIN {_quote(schema.table)} AS t ON {on}",
            params,
        ).fetchone()[0]
    return found


def _upsert_stream_rows(
    con: sqlite3.Connection, schema: GroupSchema, description: str, rows: list[tuple[Any, ...]]
) -> None:
    """Upsert a micro-batch's rows and update the version's figures without a table scan."""
    existing = _count_existing(con, schema, rows)
    _upsert(con, schema, rows)
    stored = con.execute(
        f"SELECT row_count, max_event_time_us FROM {_VERSIONS_TABLE} "
        "WHERE name = ? AND version = ?",
        (schema.name, schema.version),
    ).fetchone()
    row_count, max_us = (0, None) if stored is None else stored
    batch_max = max(row[len(schema.entity_keys)] for row in rows)
    max_us = batch_max if max_us is None else max(max_us, batch_max)
    _record_version(con, schema, description, row_count + len(rows) - existing, max_us)


def _write_stream_state(con: sqlite3.Connection, commit: StreamCommit) -> None:
    consumer = commit.consumer
    # Most commits have no trims or dead letters (and an idle heartbeat no entries): no
    # statement for those.
    if commit.entries:
        con.executemany(
            f"INSERT OR REPLACE INTO {_ENTRIES_TABLE} "
            "(consumer, entity, time_us, entry_id, payload) VALUES (?, ?, ?, ?, ?)",
            [(consumer, *entry) for entry in commit.entries],
        )
    if commit.trims:
        con.executemany(
            f"DELETE FROM {_ENTRIES_TABLE} WHERE consumer = ? AND entity = ? AND time_us <= ?",
            [(consumer, entity, up_to) for entity, up_to in commit.trims.items()],
        )
    recorded_at = now_us()
    if commit.dead_letters:
        con.executemany(
            f"INSERT OR REPLACE INTO {_DEAD_LETTERS_TABLE} "
            "(consumer, log_offset, entity, event_id, reason, payload, recorded_at_us) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(consumer, *letter, recorded_at) for letter in commit.dead_letters],
        )
    con.execute(
        f"INSERT OR REPLACE INTO {_CONSUMERS_TABLE} "
        "(consumer, log_offset, counters, info, updated_at_us) VALUES (?, ?, ?, ?, ?)",
        (
            consumer,
            commit.offset,
            orjson.dumps(dict(commit.counters)).decode(),
            orjson.dumps(dict(commit.info)).decode(),
            recorded_at,
        ),
    )


def _create_table_sql(schema: GroupSchema) -> str:
    key_cols = [
        f"{_quote(k)} {_KEY_SQL_TYPES[d]} NOT NULL"
        for k, d in zip(schema.entity_keys, schema.key_dtypes, strict=True)
    ]
    pk = ", ".join(_quote(k) for k in schema.entity_keys)
    cols = ", ".join(
        [
            *key_cols,
            f"{_quote(schema.event_time)} INTEGER NOT NULL",
            f"{_quote(VALUES_COLUMN)} BLOB NOT NULL",
        ]
    )
    return (
        f"CREATE TABLE IF NOT EXISTS {_quote(schema.table)} ({cols}, PRIMARY KEY ({pk})) "
        f"WITHOUT ROWID"
    )


def _upsert(con: sqlite3.Connection, schema: GroupSchema, rows: Iterable[tuple[Any, ...]]) -> int:
    """Insert or update stored tuples (keys, event time, packed values); returns how many
    entities were written.

    A stored row with a newer event time is left alone (its update is filtered out by the
    ``WHERE``), so a late batch never moves an entity back in time. Equal event times overwrite,
    which keeps re-running a write idempotent and lets a same-time correction through.
    """
    table, event_time, values = (
        _quote(schema.table),
        _quote(schema.event_time),
        _quote(VALUES_COLUMN),
    )
    columns = [_quote(c) for c in schema.stored_columns]
    keys = ", ".join(_quote(k) for k in schema.entity_keys)
    sql = (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
        f"ON CONFLICT ({keys}) DO UPDATE SET "
        f"{event_time} = excluded.{event_time}, {values} = excluded.{values} "
        f"WHERE excluded.{event_time} >= {table}.{event_time}"
    )
    before = con.total_changes
    con.executemany(sql, rows)
    return con.total_changes - before
