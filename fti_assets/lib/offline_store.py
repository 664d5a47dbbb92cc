"""The offline store: one DuckDB file, written in atomic partition replacements.

A partition is replaced inside one transaction (delete + insert), so re-materializing never
duplicates rows and a reader never sees a half-written partition. Several tables can be replaced
in the same transaction (an ingested partition and its quarantined rows, say).
"""

from __future__ import annotations

import logging
import os
import random
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

log = logging.getLogger(__name__)


def ensure_database_file(path: str | Path) -> None:
    """Create the DuckDB file at ``path`` atomically if it does not exist yet.

    DuckDB creates a new file, then locks it, then writes its header: a second process opening
    the path in between finds "a file that is not a valid DuckDB database" and fails (seen with ten
    processes starting at once on a loaded machine). So a new database is built under a unique
    temporary name and hard-linked into place; the link fails if the path exists, and the winner's
    complete file is what everybody opens.
    """
    if str(path) == "" or str(path).startswith(":memory:"):
        return  # an in-memory database: no file to create
    path = Path(path)
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.creating")
    try:
        duckdb.connect(str(tmp)).close()
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process won the race: its file is complete
        except OSError as exc:  # a file system without hard links: let DuckDB create it in place
            log.debug("cannot hard-link %s (%s); DuckDB will create %s itself", tmp, exc, path)
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
            leftover.unlink(missing_ok=True)


def connect(
    path: str | Path, *, read_only: bool = False, timeout_s: float = 60.0
) -> duckdb.DuckDBPyConnection:
    """Open the DuckDB file with UTC session time, retrying while another process holds its lock.

    DuckDB lets one process write a file at a time; a second writer gets an IOException
    ("Could not set lock") that we wait out rather than fail the run.
    """
    path = Path(path)
    if not read_only:
        ensure_database_file(path)
    deadline = time.monotonic() + timeout_s
    delay = 0.05
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                raise
            time.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 1.0)
            continue
        # Timestamps come back in the session time zone: make it UTC whatever the machine's is.
        con.execute("set TimeZone = 'UTC'")
        return con


@contextmanager
def connection(path: str | Path, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    con = connect(path, read_only=read_only)
    try:
        yield con
    finally:
        con.close()


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def table_exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    rows = con.execute(
        "select 1 from information_schema.tables where table_name = ? and table_schema = 'main'",
        [table],
    ).fetchall()
    return bool(rows)


@dataclass(frozen=True)
class Replacement:
    """Replace the rows of ``table`` matching ``where`` (SQL with ``?`` params) by ``frame``."""

    table: str
    frame: pl.DataFrame
    where: str
    params: Sequence[Any] = field(default_factory=tuple)


def replace_partitions(con: duckdb.DuckDBPyConnection, replacements: Sequence[Replacement]) -> None:
    """Apply every replacement in ONE transaction: all of them land, or none does.

    A table that does not exist yet is created from its frame's schema (so its first write
    defines it); later frames are inserted by column name.
    """
    con.execute("begin transaction")
    try:
        for rep in replacements:
            ident = quote_ident(rep.table)
            incoming = rep.frame.to_arrow()  # noqa: F841 - referenced by name in the SQL below
            if not table_exists(con, rep.table):
                con.execute(f"create table {ident} as select * from incoming limit 0")
            con.execute(f"delete from {ident} where {rep.where}", list(rep.params))
            con.execute(f"insert into {ident} by name select * from incoming")
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise


def read_frame(
    con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] = ()
) -> pl.DataFrame:
    """Run a parameterised query and return a Polars frame (UTC timestamps stay UTC)."""
    return con.sql(sql, params=list(params) if params else None).pl()
