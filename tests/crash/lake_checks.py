"""What must hold in the offline store however a writer was interrupted, and its summary.

* **No half partition.** Each partition of each table (and each view, and each table's schema)
  is exactly as before the operation or exactly as after it: :func:`partition_contents` hashes
  the sorted rows of every partition, and :func:`mixed_partitions` compares them with the two
  states an uninterrupted run goes through. A table in neither is an error, unless the kind
  allows the writer's scratch tables (dbt's ``__dbt_backup``).
* **The catalog references no missing file**: every data and delete file of every table's
  current snapshot (``ducklake_list_files``), and of every older snapshot still kept, is on
  disk, and reading every table to its last row (the content hashes) succeeds.
* **Orphans are cleaned up.** A writer killed before its commit leaves Parquet files the catalog
  does not reference; :func:`maintain` with ``orphan_age=0`` removes them, after which the files
  on disk are exactly those the catalog knows (in any snapshot) and every partition reads the
  same as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from fti_assets.lib.core.settings import LakeConfig
from fti_assets.lib.store.offline import (
    LAKE_ALIAS,
    connection,
    list_tables,
    maintain,
    quote_ident,
)

# When a row was written: differs between two clean runs, so left out of the content hashes.
VOLATILE_COLUMNS = ("_ingested_at", "quarantined_at")
# How each table is partitioned by its writers (a table not listed is written whole).
PARTITIONS = {
    "raw_transactions": "landing_date",
    "raw_fraud_labels": "landing_date",
    "quarantine": "source || ' ' || coalesce(cast(landing_date as varchar), 'reference data')",
    "card_transaction_features_v1": "cast(event_time as date)",
    "int_card_daily_activity": "activity_date",
    "int_merchant_daily_activity": "activity_date",
    "int_merchant_fraud_reports": "reported_date",
    "card_daily_features_v1": "feature_date",
    "merchant_daily_features_v1": "feature_date",
    "inference_log": "cast(logged_at as date)",
}
ABSENT = "absent"
# Maintenance in the checks expires no snapshot: only orphan files go.
KEEP_EVERY_SNAPSHOT = timedelta(days=36500)
_METADATA = f"__ducklake_metadata_{LAKE_ALIAS}"


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple[str, str]]:
    return con.execute(
        "select column_name, data_type from information_schema.columns where table_catalog = "
        "current_database() and table_schema = 'main' and table_name = ? "
        "order by ordinal_position",
        [table],
    ).fetchall()


def partition_contents(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """``{"table": its columns, "table/partition": "rows:md5 of the sorted rows"}`` over every
    table and view of the lake, without :data:`VOLATILE_COLUMNS`."""
    contents: dict[str, str] = {}
    for table in list_tables(con):
        columns = _columns(con, table)
        contents[table] = ", ".join(f"{name} {dtype}" for name, dtype in columns)
        volatile = [quote_ident(name) for name, _ in columns if name in VOLATILE_COLUMNS]
        exclude = f" exclude ({', '.join(volatile)})" if volatile else ""
        partition = PARTITIONS.get(table, "'whole table'")
        rows = con.execute(
            f"select cast({partition} as varchar) as p, count(*), "
            "md5(string_agg(cast(s as varchar), chr(10) order by cast(s as varchar))) "
            f"from (select *{exclude} from {quote_ident(table)}) as s group by p"
        ).fetchall()
        for key, count, digest in rows:
            contents[f"{table}/{key}"] = f"{count}:{digest}"
    return contents


def mixed_partitions(
    now: Mapping[str, str],
    before: Mapping[str, str],
    after: Mapping[str, str],
    scratch: tuple[str, ...] = (),
) -> tuple[list[str], list[str]]:
    """Every partition that is neither as ``before`` nor as ``after`` the operation, and the
    extra tables named with a ``scratch`` suffix (a writer's leftovers, allowed)."""
    problems, leftovers = [], set()
    for key in sorted({*now, *before, *after}):
        state, old, new = (m.get(key, ABSENT) for m in (now, before, after))
        table = key.split("/", 1)[0]
        if old == new == ABSENT and table.endswith(scratch):
            leftovers.add(table)
        elif state not in (old, new):
            problems.append(f"{key}: {state}, neither the old {old} nor the new {new}")
    return problems, sorted(leftovers)


def current_files(con: duckdb.DuckDBPyConnection) -> set[Path]:
    """The data and delete files the current snapshot of every table reads."""
    files: set[Path] = set()
    for table in list_tables(con):
        if not con.execute(
            "select 1 from information_schema.tables where table_catalog = current_database() "
            "and table_schema = 'main' and table_name = ? and table_type = 'BASE TABLE'",
            [table],
        ).fetchall():
            continue  # a view has no files
        for data_file, delete_file in con.execute(
            "select data_file, delete_file from ducklake_list_files(?, ?)", [LAKE_ALIAS, table]
        ).fetchall():
            files.update(Path(f) for f in (data_file, delete_file) if f is not None)
    return files


def _joined(base: str, path: str, relative: bool) -> str:
    return base + path if relative else path


def catalog_files(con: duckdb.DuckDBPyConnection) -> set[Path]:
    """Every data and delete file the catalog references, in any snapshot it still has (read
    from the catalog's own tables: ``ducklake_list_files`` shows one snapshot at a time)."""
    (data_path,) = con.execute(
        f"select value from {_METADATA}.ducklake_metadata where key = 'data_path'"
    ).fetchone()
    rows = con.execute(
        f"""
        with tables as (
            select distinct t.table_id, s.path as schema_path, s.path_is_relative as schema_rel,
                   t.path as table_path, t.path_is_relative as table_rel
            from {_METADATA}.ducklake_table as t join {_METADATA}.ducklake_schema as s
            using (schema_id)
        ), files as (
            select table_id, path, path_is_relative from {_METADATA}.ducklake_data_file
            union all
            select table_id, path, path_is_relative from {_METADATA}.ducklake_delete_file
        )
        select schema_path, schema_rel, table_path, table_rel, path, path_is_relative
        from files join tables using (table_id)
        """
    ).fetchall()
    files = set()
    for schema_path, schema_rel, table_path, table_rel, path, rel in rows:
        table_dir = _joined(_joined(data_path, schema_path, schema_rel), table_path, table_rel)
        files.add(Path(_joined(table_dir, path, rel)))
    return files


def disk_files(lake: LakeConfig) -> set[Path]:
    return {p for p in Path(lake.data_path).rglob("*") if p.is_file()}


@dataclass(frozen=True)
class LakeCheck:
    orphans: int  # unreferenced files maintenance removed (a kill before a commit leaves them)
    leftovers: list[str]  # scratch tables the writer left (see mixed_partitions)


def check_lake(
    lake: LakeConfig,
    before: Mapping[str, str],
    after: Mapping[str, str],
    scratch: tuple[str, ...] = (),
) -> LakeCheck:
    """Assert the invariants of the module docstring; tables named with a ``scratch`` suffix
    may be there besides (they are read fully too)."""
    with connection(lake) as con:
        missing = sorted(current_files(con) - disk_files(lake))
        assert not missing, f"the current snapshot references missing files: {missing}"
        missing = sorted(catalog_files(con) - disk_files(lake))
        assert not missing, f"older snapshots reference missing files: {missing}"
        contents = partition_contents(con)
        mixed, leftovers = mixed_partitions(contents, before, after, scratch)
        assert not mixed, "half-written partitions:\n" + "\n".join(mixed)
        unreferenced = disk_files(lake) - catalog_files(con)
        report = maintain(con, keep=set(), retention=KEEP_EVERY_SNAPSHOT, orphan_age=timedelta(0))
        referenced, on_disk = catalog_files(con), disk_files(lake)
        assert on_disk == referenced, (
            f"after maintenance, files on disk the catalog does not know: "
            f"{sorted(on_disk - referenced)}; files it references that are missing: "
            f"{sorted(referenced - on_disk)}"
        )
        changed = report.files_after != report.files_before or report.orphans_removed
        if changed or report.files_removed:  # read it all again
            assert partition_contents(con) == contents, "maintenance changed the lake's contents"
    return LakeCheck(len(unreferenced), leftovers)


def lake_summary(lake: LakeConfig) -> dict[str, str]:
    """The lake's contents, as :func:`partition_contents` hashes them."""
    with connection(lake, read_only=True) as con:
        return partition_contents(con)


def check_ingest_counts(lake: LakeConfig, tables: tuple[str, ...]) -> None:
    """Each landed day of each raw table comes from ONE landing file, and every row of that
    file is either accepted or quarantined: rows_in = accepted + quarantined."""
    with connection(lake, read_only=True) as con:
        for table in tables:
            rows = con.execute(
                f"""
                select landing_date, list(distinct file), sum(n)
                from (
                    select landing_date, _source_file as file, count(*) as n
                    from {quote_ident(table)} group by all
                    union all
                    select landing_date, source_file, count(*)
                    from quarantine where source = ? and landing_date is not null group by all
                )
                group by landing_date
                """,
                [table],
            ).fetchall()
            for day, files, landed in rows:
                assert len(files) == 1, f"{table} {day}: rows from several files {files}"
                rows_in = pq.ParquetFile(files[0]).metadata.num_rows
                assert landed == rows_in, (
                    f"{table} {day}: accepted + quarantined = {landed}, but {files[0]} has "
                    f"{rows_in} rows"
                )
