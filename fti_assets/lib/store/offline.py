"""The offline store: a DuckLake lakehouse (a SQL catalog + Parquet data files) shared by every
process — Dagster runs and their steps, dbt, asset checks, the CLI, the service, notebooks.

Every process opens its own in-memory DuckDB, loads the ``ducklake`` extension (shipped by the
``duckdb-ext-*`` PyPI packages: nothing is downloaded at run time) and ATTACHes the same lake as
``lake``, which becomes the default database, so plain table names (``raw_transactions``) resolve
to lake tables. The catalog is a SQLite file by default (``FTI_LAKE_CATALOG=sqlite:<path>``) or a
PostgreSQL database to scale out (``postgres:<libpq connection string>``); data files live under
``FTI_LAKE_DATA_PATH`` (a local folder, or object storage).

Unlike one DuckDB file, which a single process may open for writing (every other process then
cannot even read it), a lake takes many readers and writers at once: each commit is atomic and
creates a numbered *snapshot* that can be read later (``AT (VERSION => n)``).

* A partition is replaced in ONE commit (delete + insert), never appended twice; several tables
  can be replaced in the same commit (a partition and its quarantined rows).
* Two commits touching the same table at once can conflict. DuckLake retries the commit itself;
  when it gives up, :func:`replace_partitions` re-runs the whole transaction, a bounded number of
  times, then raises :class:`LakeCommitError` naming the table and the attempts.
"""

from __future__ import annotations

import fcntl
import importlib.util
import logging
import random
import re
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import polars as pl

from fti_assets.lib.core.settings import LakeConfig

log = logging.getLogger(__name__)

T = TypeVar("T")

LAKE_ALIAS = "lake"
DEFAULT_COMMIT_ATTEMPTS = 8
# Errors that mean "another writer got there first": the transaction can simply be re-run.
_RETRYABLE = re.compile(
    r"conflict|database is locked|database table is locked|busy|could not serialize|"
    r"deadlock|PRIMARY KEY or UNIQUE constraint|duplicate key",
    re.IGNORECASE,
)
# Processes attaching a new Postgres-catalogued lake at once all try to create its tables (one
# transaction each); one that checks before the winner commits and creates after fails so.
# Attaching again finds the winner's complete catalog.
_POSTGRES_CATALOG_CREATED = re.compile(r'relation "ducklake_\w+" already exists')


class LakeCommitError(RuntimeError):
    """A commit kept conflicting with concurrent writers after every retry."""


class OfflineStoreMissingError(FileNotFoundError):
    """A read-only connection was asked for a lake that has not been created yet."""


class SnapshotNotFoundError(LookupError):
    """A connection was pinned to a snapshot the lake does not have (any more)."""


def extension_directory() -> str:
    """The folder holding the DuckDB extensions shipped by the ``duckdb-ext-*`` packages."""
    spec = importlib.util.find_spec("duckdb_ext")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the duckdb-ext-ducklake / duckdb-ext-sqlite packages are not installed; "
            "run `make install`"
        )
    return str(Path(next(iter(spec.submodule_search_locations))) / "extensions")


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@contextmanager
def _creation_lock(lake: LakeConfig) -> Iterator[bool]:
    """Serialise the first ATTACH of a new SQLite catalog (it creates the metadata tables)
    across processes; yields whether the catalog still has to be created. A no-op once the
    catalog exists, and for a Postgres catalog."""
    if lake.kind != "sqlite" or lake.exists():
        yield False
        return
    path = Path(lake.target)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.create-lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield not path.exists()
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _create_wal_catalog(path: Path) -> None:
    """Create the empty SQLite catalog file in WAL mode (a property of the file), so readers
    of the catalog never wait for a committing writer, nor a writer for readers."""
    with closing(sqlite3.connect(path)) as db:
        mode = db.execute("pragma journal_mode = wal").fetchone()[0]
    if mode != "wal":
        log.warning(
            "catalog %s is in journal mode %r, not WAL: readers wait for writers", path, mode
        )


def connect(
    lake: LakeConfig,
    *,
    read_only: bool = False,
    snapshot: int | None = None,
    snapshot_time: datetime | None = None,
    timeout_s: float = 60.0,
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the lake attached as the default database, in UTC.

    ``read_only`` attaches the lake read-only: such a connection can never write, and it fails
    with :class:`OfflineStoreMissingError` if the lake does not exist yet. ``snapshot`` (an id)
    or ``snapshot_time`` (a commit time) pins the connection to the lake as it was then: every
    query sees that snapshot, and the connection is read-only. Attaching retries while a
    concurrent writer holds the catalog's lock.
    """
    pinned = _pin_option(snapshot, snapshot_time)
    if (read_only or pinned) and not lake.exists():
        raise OfflineStoreMissingError(
            f"the offline store {lake.describe()} does not exist yet; run `make demo` (or "
            "materialize the ingest assets) first"
        )
    if lake.is_local:
        Path(lake.data_path).mkdir(parents=True, exist_ok=True)
    options = [f"DATA_PATH {_literal(lake.data_path)}"]
    if pinned:
        options.append(pinned)
    elif read_only:
        options.append("READ_ONLY")
    attach = f"ATTACH {_literal('ducklake:' + lake.catalog)} AS {LAKE_ALIAS} ({', '.join(options)})"
    con = duckdb.connect(
        config={
            "extension_directory": extension_directory(),
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            # The extension files come from the duckdb-ext-* packages in this environment;
            # checking their signatures costs ~100 ms per extension on every connection
            # (230 ms -> 5 ms per connect measured here), and every asset, check and CLI call
            # opens one.
            "allow_unsigned_extensions": True,
        }
    )
    # A query longer than 2 s would draw DuckDB's progress bar on stdout, into the output of
    # `fti sql --json` or of whatever process embeds this connection (a session setting).
    con.execute("SET enable_progress_bar = false")
    try:
        con.execute(f"LOAD ducklake; LOAD {'sqlite' if lake.kind == 'sqlite' else 'postgres'}")
        # Timestamps come back in the session time zone: make it UTC whatever the machine's is.
        con.execute("SET TimeZone = 'UTC'")
        with _creation_lock(lake) as new_catalog:
            if new_catalog:
                _create_wal_catalog(Path(lake.target))
            retryable = _postgres_attach_retryable if lake.kind == "postgres" else is_retryable
            _retry(lambda: con.execute(attach), f"attach {lake.describe()}", timeout_s, retryable)
        con.execute(f"USE {LAKE_ALIAS}")
    except duckdb.InvalidInputException as exc:
        con.close()
        if pinned and "No snapshot found" in str(exc):
            raise SnapshotNotFoundError(
                f"the offline store {lake.describe()} has no snapshot "
                + (f"{snapshot}" if snapshot is not None else f"at {snapshot_time}")
                + " (never made, or expired by lake maintenance); list them with "
                '`fti sql "from lake.snapshots()"`'
            ) from exc
        raise
    except BaseException:
        con.close()
        raise
    return con


def _pin_option(snapshot: int | None, snapshot_time: datetime | None) -> str:
    """The ATTACH option pinning a connection to a snapshot id or commit time, or ``""``."""
    if snapshot is not None and snapshot_time is not None:
        raise ValueError("give a snapshot id or a snapshot time, not both")
    if snapshot is not None:
        if isinstance(snapshot, bool) or not isinstance(snapshot, int) or snapshot < 0:
            raise ValueError(f"snapshot {snapshot!r} is not valid; expected an integer >= 0")
        return f"SNAPSHOT_VERSION {snapshot}"
    if snapshot_time is not None:
        if snapshot_time.utcoffset() is None:
            raise ValueError(f"snapshot time {snapshot_time} is naive; expected a UTC time")
        return f"SNAPSHOT_TIME {_literal(snapshot_time.isoformat())}"
    return ""


@contextmanager
def connection(
    lake: LakeConfig,
    *,
    read_only: bool = False,
    snapshot: int | None = None,
    snapshot_time: datetime | None = None,
) -> Iterator[duckdb.DuckDBPyConnection]:
    con = connect(lake, read_only=read_only, snapshot=snapshot, snapshot_time=snapshot_time)
    try:
        yield con
    finally:
        con.close()


def seal(con: duckdb.DuckDBPyConnection, lake: LakeConfig) -> None:
    """Close the connection off from the file system for user-written SQL (``fti sql``): no
    ``COPY ... TO``, ``ATTACH``, ``read_csv('/etc/...')`` or extension install; only the lake's
    data files stay readable. Locked, so the query cannot switch it back on. (A read-only lake
    connection alone still lets a query write files elsewhere.)"""
    allowed = [lake.data_path] if lake.is_local else []
    con.execute("SET allowed_directories = ?", [allowed])
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def is_retryable(exc: BaseException) -> bool:
    """A conflict with a concurrent writer (as opposed to a real error)."""
    return isinstance(exc, duckdb.Error) and bool(_RETRYABLE.search(str(exc)))


def _postgres_attach_retryable(exc: BaseException) -> bool:
    return is_retryable(exc) or bool(_POSTGRES_CATALOG_CREATED.search(str(exc)))


def _retry(
    operation: Callable[[], T],
    what: str,
    timeout_s: float,
    retryable: Callable[[BaseException], bool] = is_retryable,
) -> T:
    deadline = time.monotonic() + timeout_s
    delay = 0.02
    while True:
        try:
            return operation()
        except duckdb.Error as exc:
            if not retryable(exc) or time.monotonic() > deadline:
                raise
            log.debug("%s: %s; retrying", what, exc)
            time.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 1.0)


# Tables are found through duckdb_columns(), not information_schema.tables / duckdb_tables():
# those ask every DuckLake table for its storage statistics, and DuckLake 1.4.4 can fail on a
# table another process is creating at that moment ("INTERNAL Error: Calling GetValueInternal
# on a value that is NULL", after which the process aborts); seen in the two-writer test.
# Every table and view has at least one column.
def table_exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    rows = con.execute(
        "select 1 from duckdb_columns() where database_name = current_database() "
        "and schema_name = 'main' and table_name = ? limit 1",
        [table],
    ).fetchall()
    return bool(rows)


def list_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Every table and view of the lake's main schema, sorted."""
    rows = con.execute(
        "select distinct table_name from duckdb_columns() where database_name = "
        "current_database() and schema_name = 'main' order by table_name"
    ).fetchall()
    return [name for (name,) in rows]


@dataclass(frozen=True)
class Replacement:
    """Replace the rows of ``table`` matching ``where`` (SQL with ``?`` params) by ``frame``."""

    table: str
    frame: pl.DataFrame
    where: str
    params: Sequence[Any] = field(default_factory=tuple)
    # False: a frame that cannot define the table (an empty day without the feature columns)
    # only deletes, and does nothing when the table does not exist yet.
    create_if_missing: bool = True


class LakeSchemaError(ValueError):
    """A lake table lacks columns the code writes (it was created by an earlier release)."""


def _check_columns(con: duckdb.DuckDBPyConnection, table: str, columns: Sequence[str]) -> None:
    existing = [  # from the catalog, not by planning a scan (see table_exists)
        name
        for (name,) in con.execute(
            "select column_name from duckdb_columns() where database_name = current_database() "
            "and schema_name = 'main' and table_name = ? order by column_index",
            [table],
        ).fetchall()
    ]
    missing = [c for c in columns if c not in existing]
    if missing:
        raise LakeSchemaError(
            f"lake table {table!r} has no column(s) {missing} that this code writes; it has "
            f"{existing}. It was created by an earlier release of this table: rebuild the data "
            "folder (`make clean && make demo`), or drop the table from a lake connection "
            f"(`drop table {quote_ident(table)}`) and materialize it again."
        )


def replace_partitions(
    con: duckdb.DuckDBPyConnection,
    replacements: Sequence[Replacement],
    *,
    message: str | None = None,
    max_attempts: int = DEFAULT_COMMIT_ATTEMPTS,
) -> int:
    """Apply every replacement in ONE commit: all of them land, or none does.

    A table that does not exist yet is created from its frame's schema (so its first write
    defines it) unless the replacement says otherwise; later frames are inserted by column
    name. Returns the lake snapshot id the commit created. A conflict with a concurrent commit
    re-runs the transaction, at most ``max_attempts`` times in all.
    """
    tables = ", ".join(sorted({r.table for r in replacements}))

    def apply() -> None:
        for rep in replacements:
            ident = quote_ident(rep.table)
            incoming = rep.frame.to_arrow()  # noqa: F841 - referenced by name in the SQL below
            if not table_exists(con, rep.table):
                if not rep.create_if_missing:
                    continue  # nothing to replace, and this frame does not define the table
                # A new table is created with its rows in one statement: nothing to delete.
                con.execute(f"create table {ident} as select * from incoming")
                continue
            _check_columns(con, rep.table, rep.frame.columns)
            con.execute(f"delete from {ident} where {rep.where}", list(rep.params))
            con.execute(f"insert into {ident} by name select * from incoming")

    return commit(
        con, apply, message=message or f"replace partitions of {tables}", max_attempts=max_attempts
    )


def commit(
    con: duckdb.DuckDBPyConnection,
    apply: Callable[[], None],
    *,
    message: str,
    max_attempts: int = DEFAULT_COMMIT_ATTEMPTS,
) -> int:
    """Run ``apply`` inside one transaction and commit it as one lake snapshot, labelled with
    ``message``; re-run it on a conflict with a concurrent writer (bounded). Returns the id of
    the snapshot the commit created."""
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
    token = uuid.uuid4().hex
    delay = 0.05
    for attempt in range(1, max_attempts + 1):
        con.execute("begin transaction")
        try:
            con.execute(
                "call ducklake_set_commit_message(?, ?, ?, extra_info => ?)",
                [LAKE_ALIAS, "fti", message, token],
            )
            apply()
            con.execute("commit")
        except BaseException as exc:
            _rollback(con)
            if not (isinstance(exc, duckdb.Error) and is_retryable(exc)):
                raise
            if attempt == max_attempts:
                raise LakeCommitError(
                    f"commit {message!r} conflicted with concurrent writers {attempt} times; "
                    f"last error: {exc}"
                ) from exc
            log.info("commit %r conflicted (attempt %d): %s; retrying", message, attempt, exc)
            time.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 2.0)
            continue
        return snapshot_of_commit(con, token)
    raise AssertionError("unreachable")


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    """Roll back the open transaction; a commit that failed has already ended it."""
    try:
        con.execute("rollback")
    except duckdb.TransactionException as exc:
        if "no transaction is active" not in str(exc):
            raise


def snapshot_of_commit(con: duckdb.DuckDBPyConnection, token: str) -> int:
    """The snapshot a commit labelled with ``token`` created. A commit that changed nothing
    (no rows deleted or inserted) creates none: the data it wrote is then visible in the
    current snapshot."""
    rows = con.execute(
        f"select snapshot_id from {LAKE_ALIAS}.snapshots() where commit_extra_info = ?", [token]
    ).fetchall()
    return int(rows[0][0]) if rows else current_snapshot(con)


def current_snapshot(con: duckdb.DuckDBPyConnection) -> int:
    """The newest committed snapshot id this connection can see."""
    (snapshot,) = con.execute(
        f"select id from ducklake_current_snapshot({_literal(LAKE_ALIAS)})"
    ).fetchone()
    return int(snapshot)


def read_frame(
    con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] = ()
) -> pl.DataFrame:
    """Run a parameterised query and return a Polars frame (UTC timestamps stay UTC).

    Parameters go through ``execute``, never ``con.sql(sql, params=...)``: on DuckDB 1.4.4 a
    relation built with parameters materializes through a slow path, 40-60x slower on a
    lake table of 9M rows (75 s against 1.3-2 s; benchmarks/bench_monitoring.py's dataset
    build spent 150 of its 200 s there).
    """
    if not params:
        return con.sql(sql).pl()
    return con.execute(sql, list(params)).pl()


def as_utc(column: str) -> pl.Expr:
    """The column as Datetime("us", "UTC") whatever the connection's session time zone."""
    return pl.col(column).dt.convert_time_zone("UTC").cast(pl.Datetime("us", "UTC"))


def lake_environment(lake: LakeConfig) -> dict[str, str]:
    """The variables the dbt profile reads to attach the same lake (see dbt_project/)."""
    return {
        "FTI_LAKE_CATALOG": lake.catalog,
        "FTI_LAKE_DATA_PATH": lake.data_path,
        "FTI_DUCKDB_EXTENSION_DIR": extension_directory(),
        "FTI_LAKE_EXTENSION": "sqlite" if lake.kind == "sqlite" else "postgres",
    }


@dataclass(frozen=True)
class MaintenanceReport:
    files_before: int
    files_after: int
    bytes_before: int
    bytes_after: int
    snapshots_before: int
    snapshots_expired: list[int]
    snapshots_kept_for_datasets: list[int]
    files_removed: int
    orphans_removed: int


def _file_stats(con: duckdb.DuckDBPyConnection) -> tuple[int, int]:
    """(data files, bytes) the current snapshot reads, over every table of the lake."""
    files = size = 0
    for table in list_tables(con):
        ((n, b),) = con.execute(
            "select count(*), coalesce(sum(data_file_size_bytes), 0) "
            "from ducklake_list_files(?, ?)",
            [LAKE_ALIAS, table],
        ).fetchall()
        files, size = files + n, size + int(b)
    return files, size


def snapshots(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Every live snapshot: id, commit time, the commit message and what it changed."""
    return read_frame(
        con,
        f"select snapshot_id, snapshot_time, commit_message, changes "
        f"from {LAKE_ALIAS}.snapshots() order by snapshot_id",
    )


MAINTENANCE_RETRY_S = 120.0


def maintain(
    con: duckdb.DuckDBPyConnection,
    *,
    keep: set[int],
    retention: timedelta,
    orphan_age: timedelta = timedelta(hours=6),
    now: datetime | None = None,
) -> MaintenanceReport:
    """Merge small data files, expire old snapshots and delete files nothing reads any more.

    Snapshots newer than ``retention`` and every snapshot in ``keep`` (those training datasets
    were built from) stay readable; the newest snapshot always stays. Orphan files — written by
    a process killed before its commit — are deleted only when older than ``orphan_age``, so a
    commit still in flight never loses its files.
    """
    now = now or datetime.now(UTC)
    files_before, bytes_before = _file_stats(con)
    live = snapshots(con)
    newest = int(live["snapshot_id"].max())
    horizon = now - retention
    expire = [
        int(row["snapshot_id"])
        for row in live.iter_rows(named=True)
        if row["snapshot_time"] < horizon
        and row["snapshot_id"] not in keep
        and row["snapshot_id"] != newest
    ]

    def run(sql: str, params: list | None = None) -> list[tuple]:
        # Each call is its own commit and runs beside the day's writers (a "Materialize all"
        # includes this asset): a conflict or a locked catalog is retried, as commits are.
        return _retry(
            lambda: con.execute(sql, params).fetchall(), f"lake maintenance: {sql}",
            MAINTENANCE_RETRY_S,
        )  # fmt: skip

    run(f"call ducklake_merge_adjacent_files({_literal(LAKE_ALIAS)})")
    if expire:
        run("select * from ducklake_expire_snapshots(?, versions => ?)", [LAKE_ALIAS, expire])
    removed = run(
        "select count(*) from ducklake_cleanup_old_files(?, cleanup_all => true)", [LAKE_ALIAS]
    )[0][0]
    orphans = run(
        "select count(*) from ducklake_delete_orphaned_files(?, older_than => ?)",
        [LAKE_ALIAS, now - orphan_age],
    )[0][0]
    files_after, bytes_after = _file_stats(con)
    return MaintenanceReport(
        files_before=files_before,
        files_after=files_after,
        bytes_before=bytes_before,
        bytes_after=bytes_after,
        snapshots_before=live.height,
        snapshots_expired=expire,
        snapshots_kept_for_datasets=sorted(keep & set(live["snapshot_id"].to_list())),
        files_removed=int(removed),
        orphans_removed=int(orphans),
    )
