"""The offline store as a DuckLake: atomic partition replacement, snapshots, concurrency."""

import subprocess
import sys
import textwrap
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

from fti_assets.lib.core.settings import LakeConfig, LegacySettingError, Settings, lake_from_env
from fti_assets.lib.store.offline import (
    LakeCommitError,
    LakeSchemaError,
    OfflineStoreMissingError,
    Replacement,
    SnapshotNotFoundError,
    commit,
    connect,
    connection,
    current_snapshot,
    list_tables,
    maintain,
    read_frame,
    replace_partitions,
    snapshots,
)


def _day(day: int, values: list[float]) -> pl.DataFrame:
    return pl.DataFrame({"day": [day] * len(values), "v": values})


def _write(con: duckdb.DuckDBPyConnection, day: int, values: list[float]) -> int:
    return replace_partitions(con, [Replacement("t", _day(day, values), "day = ?", [day])])


@pytest.fixture
def lake(tmp_path: Path) -> LakeConfig:
    return LakeConfig.under(tmp_path / "lake")


def test_a_partition_is_replaced_never_appended_and_old_snapshots_stay_readable(
    lake: LakeConfig,
) -> None:
    with connection(lake) as con:
        first = _write(con, 1, [1.0, 2.0])
        _write(con, 2, [3.0])
        last = _write(con, 1, [5.0])  # day 1 again: replaces its two rows
        assert read_frame(con, "select day, v from t order by all").rows() == [(1, 5.0), (2, 3.0)]
        assert current_snapshot(con) == last > first
    with connection(lake, snapshot=first) as old:
        assert read_frame(old, "select day, v from t order by all").rows() == [
            (1, 1.0),
            (1, 2.0),
        ]
        with pytest.raises(duckdb.Error, match="read-only"):
            old.execute("insert into t values (9, 9.0)")


def test_replacing_several_tables_is_one_commit(lake: LakeConfig) -> None:
    with connection(lake) as con:
        snapshot = replace_partitions(
            con,
            [
                Replacement("a", _day(1, [1.0]), "day = ?", [1]),
                Replacement("b", _day(1, [2.0]), "day = ?", [1]),
            ],
            message="a and b",
        )
        log = snapshots(con)
    assert list_tables(connect(lake, read_only=True)) == ["a", "b"]
    row = log.filter(pl.col("snapshot_id") == snapshot).row(0, named=True)
    assert row["commit_message"] == "a and b"


def test_a_failing_replacement_leaves_nothing_behind(lake: LakeConfig) -> None:
    with connection(lake) as con:
        _write(con, 1, [1.0])
        bad = Replacement("t", _day(2, [2.0]), "no_such_column = ?", [2])
        with pytest.raises(duckdb.Error, match="no_such_column"):
            replace_partitions(con, [Replacement("t", _day(1, [7.0]), "day = ?", [1]), bad])
        assert read_frame(con, "select day, v from t").rows() == [(1, 1.0)]


def test_a_conflicting_commit_is_rerun_and_the_bound_gives_a_clear_error(
    lake: LakeConfig,
) -> None:
    ours, theirs = connect(lake), connect(lake)
    _write(ours, 1, [1.0])
    attempts = []

    def replace_day_1(interfere_on: set[int]):
        def apply() -> None:
            attempts.append(1)
            ours.execute("delete from t where day = 1")
            ours.execute("insert into t values (1, 10.0)")
            if len(attempts) in interfere_on:  # another writer commits the same rows first
                theirs.execute("begin; delete from t where day = 1; insert into t values (1, 20.0)")
                theirs.execute("commit")

        return apply

    commit(ours, replace_day_1({1}), message="retried once")
    assert len(attempts) == 2
    assert read_frame(ours, "select v from t").rows() == [(10.0,)]

    attempts.clear()
    with pytest.raises(LakeCommitError, match=r"'always beaten' conflicted .* 3 times"):
        commit(ours, replace_day_1({1, 2, 3}), message="always beaten", max_attempts=3)
    assert read_frame(ours, "select v from t").rows() == [(20.0,)]  # theirs landed, ours not


_WRITER = textwrap.dedent(
    """
    import sys
    import polars as pl
    from fti_assets.lib.store.offline import Replacement, connect, replace_partitions
    from fti_assets.lib.core.settings import LakeConfig

    lake = LakeConfig(sys.argv[1], sys.argv[2])
    worker, days = int(sys.argv[3]), int(sys.argv[4])
    con = connect(lake)
    for i in range(days):
        day = worker * 1000 + i
        frame = pl.DataFrame({"day": [day] * 50, "v": [float(day)] * 50})
        both = [Replacement(t, frame, "day = ?", [day]) for t in ("t", "u")]
        replace_partitions(con, both)
    """
)

_READER = textwrap.dedent(
    """
    import sys, time
    from fti_assets.lib.store.offline import connection
    from fti_assets.lib.core.settings import LakeConfig

    lake = LakeConfig(sys.argv[1], sys.argv[2])
    reads, deadline = 0, time.monotonic() + float(sys.argv[3])
    while time.monotonic() < deadline:
        with connection(lake, read_only=True) as con:
            n, days = con.execute("select count(*), count(distinct day) from t").fetchone()
        assert n == 50 * days, (n, days)  # a reader never sees half a partition
        reads += 1
    print(reads)
    """
)


# DuckLake 1.4.4 can fail a query planned while another process commits, with an internal
# error on a table's statistics (upstream: duckdb/ducklake PR #1370, issue #1473); the process
# then aborts. Seen about once in 5-15 runs of this test. A round that died of exactly that is
# run again on a fresh lake (at most 3 rounds); any other failure fails the test at once.
DUCKLAKE_STATS_BUG = "Calling GetValueInternal on a value that is NULL"


def _two_writers_and_a_reader(lake: LakeConfig) -> tuple[list[int], list[str], Any]:
    with connection(lake) as con:
        _write(con, 0, [0.0] * 50)  # "t" exists before the writers start; they race to create "u"
    args = [lake.catalog, lake.data_path]
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, *args, str(w), "25"],
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in (1, 2)
    ]
    reader = subprocess.run(
        [sys.executable, "-c", _READER, *args, "4"], capture_output=True, text=True, check=False
    )
    errors = [w.communicate(timeout=120)[1] for w in writers]
    return [w.returncode for w in writers], errors, reader


@pytest.mark.slow
def test_two_writer_processes_and_a_reader_share_one_lake(tmp_path: Path) -> None:
    for attempt in range(3):
        lake = LakeConfig.under(tmp_path / f"lake{attempt}")
        codes, errors, reader = _two_writers_and_a_reader(lake)
        stderr = "".join(errors) + reader.stderr
        if (codes != [0, 0] or reader.returncode != 0) and DUCKLAKE_STATS_BUG in stderr:
            continue  # the upstream bug above, not ours: a fresh round
        break
    assert codes == [0, 0], "".join(errors)[-3000:]
    assert reader.returncode == 0, reader.stderr[-3000:]
    assert int(reader.stdout) > 0
    with connection(lake, read_only=True) as con:
        per_day = read_frame(con, "select day, count(*) as n, sum(v) as s from t group by day")
    assert per_day.height == 51 and set(per_day["n"]) == {50}
    with connection(lake, read_only=True) as con:
        assert read_frame(con, "select count(*) from u").item() == 50 * 50
    assert per_day["s"].sum() == pytest.approx(
        50 * sum(w * 1000 + i for w in (1, 2) for i in range(25))
    )


def test_read_only_and_pinned_connections_fail_clearly(lake: LakeConfig) -> None:
    with pytest.raises(OfflineStoreMissingError, match="does not exist yet; run `make demo`"):
        connect(lake, read_only=True)
    with connection(lake) as con:
        _write(con, 1, [1.0])
    with pytest.raises(SnapshotNotFoundError, match="has no snapshot 999"):
        connect(lake, snapshot=999)
    with pytest.raises(ValueError, match="expected an integer >= 0"):
        connect(lake, snapshot=-1)
    with pytest.raises(ValueError, match="naive"):
        connect(lake, snapshot_time=datetime(2026, 1, 1))


def test_maintenance_merges_files_and_keeps_the_snapshots_datasets_use(lake: LakeConfig) -> None:
    with connection(lake) as con:
        written = [_write(con, day, [float(day)] * 3) for day in range(6)]
        kept = written[2]
        report = maintain(con, keep={kept}, retention=timedelta(0))
        assert report.files_before == 6 and report.files_after == 1
        assert kept not in report.snapshots_expired and written[0] in report.snapshots_expired
        assert read_frame(con, "select count(*) from t").item() == 18
    with connection(lake, snapshot=kept) as old:  # a dataset built at `kept` can be rebuilt
        assert read_frame(old, "select count(*) from t").item() == 9
    with pytest.raises(SnapshotNotFoundError):
        connect(lake, snapshot=written[0])


def test_recent_snapshots_survive_maintenance(lake: LakeConfig) -> None:
    with connection(lake) as con:
        written = [_write(con, day, [1.0]) for day in range(3)]
        report = maintain(con, keep=set(), retention=timedelta(days=1))
    assert report.snapshots_expired == []
    for snapshot in written:
        connect(lake, snapshot=snapshot).close()


def test_settings_name_the_lake_and_refuse_the_old_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FTI_LAKE_CATALOG", raising=False)
    monkeypatch.delenv("FTI_LAKE_DATA_PATH", raising=False)
    default = lake_from_env(tmp_path)
    assert default.catalog == f"sqlite:{tmp_path / 'lake' / 'catalog.sqlite'}"
    assert default.data_path == f"{tmp_path / 'lake' / 'data'}/"

    monkeypatch.setenv("FTI_LAKE_CATALOG", "postgres:dbname=lake host=127.0.0.1")
    alone = lake_from_env(tmp_path)  # a catalog without a data path gets its own data folder
    assert alone.data_path.startswith(f"{tmp_path / 'lake'}/postgres-")
    assert alone.data_path != default.data_path

    monkeypatch.setenv("FTI_LAKE_CATALOG", str(tmp_path / "cat.sqlite"))  # a bare path: SQLite
    assert lake_from_env(tmp_path).data_path == f"{tmp_path / 'cat_data'}/"
    monkeypatch.setenv("FTI_LAKE_DATA_PATH", "s3://bucket/lake/")
    custom = lake_from_env(tmp_path)
    assert custom == LakeConfig(f"sqlite:{tmp_path / 'cat.sqlite'}", "s3://bucket/lake/")
    assert not custom.is_local

    monkeypatch.setenv("FTI_DUCKDB_PATH", "/old/offline.duckdb")
    with pytest.raises(LegacySettingError, match="FTI_LAKE_CATALOG .* FTI_LAKE_DATA_PATH"):
        Settings.from_env()


@pytest.mark.parametrize("catalog", ["offline.duckdb", "mysql:db=x", "sqlite:"])
def test_a_bad_catalog_is_named(catalog: str) -> None:
    with pytest.raises(ValueError, match="expected 'sqlite:<path>' or 'postgres:"):
        LakeConfig(catalog, "/tmp/x/")


def test_a_postgres_password_is_masked_when_described() -> None:
    lake = LakeConfig("postgres:dbname=lake host=127.0.0.1 password=hunter2", "/srv/lake/")
    assert "hunter2" not in lake.describe() and "password=***" in lake.describe()


def test_connections_draw_no_progress_bar(lake: LakeConfig) -> None:
    """A long query must not write DuckDB's progress bar into a CLI's or a subprocess's stdout."""
    with connection(lake) as con:
        assert con.execute("select current_setting('enable_progress_bar')").fetchone() == (False,)


def test_maintenance_retries_a_locked_catalog(lake: LakeConfig) -> None:
    """Maintenance runs beside the day's writers: a commit that meets a locked catalog or a
    conflict is retried, not a failed step (seen when "Materialize all" included
    lake_maintenance: "Failed to flush changes into DuckLake: database is locked")."""

    class Busy:  # the lake connection, whose first merge meets a locked catalog
        def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
            self.con, self.failures = con, 0

        def execute(self, sql: str, *args: object) -> duckdb.DuckDBPyConnection:
            if "merge_adjacent" in sql and self.failures == 0:
                self.failures += 1
                raise duckdb.TransactionException(
                    "Failed to commit DuckLake transaction: database is locked"
                )
            return self.con.execute(sql, *args)

        def __getattr__(self, name: str) -> object:
            return getattr(self.con, name)

    with connection(lake) as con:
        for day in range(4):
            _write(con, day, [float(day)])
        busy = Busy(con)
        report = maintain(busy, keep=set(), retention=timedelta(0))  # type: ignore[arg-type]
        assert busy.failures == 1 and report.files_after == 1
        assert read_frame(con, "select count(*) from t").item() == 4


def test_a_table_of_an_earlier_release_is_named_with_what_it_lacks(lake: LakeConfig) -> None:
    """A lake table created by an earlier release (here without the partition column) gets an
    error naming the table, the missing columns and how to rebuild; nothing is written."""
    with connection(lake) as con:
        old = pl.DataFrame({"scored_at": [1], "probability": [0.5]})
        replace_partitions(con, [Replacement("predictions", old, "scored_at = ?", (1,))])
        before = current_snapshot(con)
        new = pl.DataFrame({"score_day": [2], "probability": [0.7]})
        with pytest.raises(LakeSchemaError, match=r"'predictions'.*\['score_day'\].*make clean"):
            replace_partitions(con, [Replacement("predictions", new, "score_day = ?", (2,))])
        assert current_snapshot(con) == before
