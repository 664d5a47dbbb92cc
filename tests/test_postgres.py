"""The scale-out data layer on a real PostgreSQL server: the DuckLake catalog and the Dagster
instance (dagster-postgres) on one server that a session fixture starts in a temporary folder.

Skipped, saying why, when the PostgreSQL server programs are not installed (`make install` as
root installs Debian's package).
"""

from __future__ import annotations

import multiprocessing
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import closing
from datetime import timedelta
from pathlib import Path

import dagster as dg
import psycopg2
import pytest

from fti_assets.lib.core.settings import PROJECT_ROOT, LakeConfig
from fti_assets.lib.store.offline import connect
from fti_assets.lib.store.postgres_server import LocalPostgres, find_server_binaries
from tests import lake_workers
from tests.conftest import TINY_START, missing_system_program
from tests.test_pipeline import FEATURE_PIPELINES, _run, _tables

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("postgres")]

# The test server listens on 127.0.0.1 only and lives for one session in a temporary folder.
PASSWORD = "fti-test-password"
TABLES = ["raw_cards", "raw_merchants"]  # two unpartitioned assets: two steps


def _free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def postgres() -> Iterator[LocalPostgres]:
    """A real server with password authentication, on a free port."""
    if find_server_binaries() is None:
        missing_system_program("PostgreSQL server binaries not found: run make install as root")
    # Not under pytest's tmp_path: as root, the server runs as another user, who cannot enter
    # pytest's private (0700) folders.
    root = Path(tempfile.mkdtemp(prefix="fti-postgres-"))
    server = LocalPostgres(root, port=_free_port(), password=PASSWORD)
    try:
        server.start(databases=[])
        # A throwaway server: commits need not survive a crash of the machine, and Dagster
        # commits every event (a third of the pipeline test's time with synchronous commits).
        with closing(server.connect()) as con:
            con.autocommit = True
            con.cursor().execute("alter system set synchronous_commit = off")
            con.cursor().execute("select pg_reload_conf()")
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def _new_database(server: LocalPostgres, prefix: str) -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    server.create_databases([name])
    return name


@pytest.fixture
def pg_lake(postgres: LocalPostgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LakeConfig:
    """A lake not created yet, whose catalog is a new database on the server; DuckDB (libpq)
    takes the password from PGPASSWORD, as a deployment would."""
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    return LakeConfig(
        catalog=postgres.lake_catalog(_new_database(postgres, "lake")),
        data_path=f"{tmp_path / 'lake_data'}/",
    )


def _dbname(lake: LakeConfig) -> str:
    """The database of a lake's Postgres catalog (LocalPostgres.dsn puts it first)."""
    return lake.target.split()[0].removeprefix("dbname=")


def _catalog_rows(
    server: LocalPostgres, dbname: str, query: str, params: tuple = ()
) -> list[tuple]:
    """Rows of a query run straight on the server (not through DuckDB)."""
    with closing(server.connect(dbname)) as con, con.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall()


def test_server_refuses_a_wrong_password_and_listens_on_loopback_only(
    postgres: LocalPostgres,
) -> None:
    wrong = LocalPostgres(postgres.root, port=postgres.port, password="not-the-password")
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        wrong.connect().close()
    settings = _catalog_rows(
        postgres,
        "postgres",
        "select name, setting from pg_settings "
        "where name in ('listen_addresses', 'unix_socket_directories') order by name",
    )
    assert settings == [("listen_addresses", "127.0.0.1"), ("unix_socket_directories", "")]


def test_two_writer_processes_and_a_reader_share_a_lake_on_postgres(
    postgres: LocalPostgres, pg_lake: LakeConfig
) -> None:
    """Both writers create the (new) lake at once, then commit partition after partition
    while a read-only reader counts rows: every row lands once, no commit is seen half done."""
    batches = 12
    ctx = multiprocessing.get_context("spawn")
    lake_ready, reader_saw_rows, writers_done = ctx.Event(), ctx.Event(), ctx.Event()
    results = ctx.Queue()
    writers = [
        ctx.Process(
            target=lake_workers.write,
            args=(pg_lake, writer, batches, lake_ready, reader_saw_rows, results),
        )
        for writer in (1, 2)
    ]
    reader = ctx.Process(
        target=lake_workers.read, args=(pg_lake, lake_ready, writers_done, reader_saw_rows, results)
    )
    for process in [*writers, reader]:
        process.start()
    try:
        outcomes = [results.get(timeout=120) for _ in writers]
        writers_done.set()
        outcomes.append(results.get(timeout=120))
    finally:
        for process in [*writers, reader]:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    errors = [outcome for outcome in outcomes if outcome[0] == "error"]
    assert not errors, errors
    snapshots = {who: values for kind, who, values in outcomes if kind == "writer"}
    counts = next(values for kind, _, values in outcomes if kind == "reader")

    total = 2 * batches * lake_workers.ROWS_PER_BATCH
    with connect(pg_lake, read_only=True) as con:
        rows, distinct = con.execute(
            "select count(*), count(distinct (writer, batch, row)) from events"
        ).fetchone()
    assert rows == distinct == total
    # Each commit is a new snapshot: increasing for each writer, never shared by the two.
    assert all(values == sorted(set(values)) for values in snapshots.values())
    assert not set(snapshots[1]) & set(snapshots[2])
    # The reader saw whole commits only, never going back, and saw the writers mid-way.
    assert all(count % lake_workers.ROWS_PER_BATCH == 0 for count in counts), counts
    assert counts == sorted(counts) and counts[-1] == total
    assert any(0 < count < total for count in counts)
    # The catalog really is in PostgreSQL: one snapshot row per commit (and the creation).
    (catalog_snapshots,) = _catalog_rows(
        postgres, _dbname(pg_lake), "select count(*) from ducklake_snapshot"
    )
    assert catalog_snapshots[0] >= 2 * batches + 1


def _postgres_instance_home(
    postgres: LocalPostgres, home: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """A DAGSTER_HOME set up as `make dev-postgres` does (the project's dagster.yaml followed
    by dagster-postgres.yaml), its FTI_PG_* variables pointing at a new database; returns the
    database's name."""
    home.mkdir()
    (home / "dagster.yaml").write_text(
        (PROJECT_ROOT / "dagster.yaml").read_text()
        + (PROJECT_ROOT / "dagster-postgres.yaml").read_text()
    )
    dbname = _new_database(postgres, "dagster")
    for name, value in postgres.client_environment().items():
        if name.startswith("FTI_PG_"):
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("FTI_PG_DB", dbname)
    monkeypatch.setenv("FTI_PG_PASSWORD", PASSWORD)
    return dbname


def test_a_day_of_feature_pipelines_on_a_postgres_lake_and_instance(
    data_layer: Path,
    postgres: LocalPostgres,
    pg_lake: LakeConfig,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ingest, dbt and the feature groups for one day, with the lake's catalog and the Dagster
    instance on the server: the same feature groups as on the embedded SQLite catalog, and the
    run's events readable from a fresh instance on the same database."""
    day = TINY_START + timedelta(days=1)
    assert _run(day, day, selection=FEATURE_PIPELINES).success  # the default SQLite lake
    expected = _tables(LakeConfig.under(data_layer / "lake"))

    monkeypatch.setenv("FTI_LAKE_CATALOG", pg_lake.catalog)
    monkeypatch.setenv("FTI_LAKE_DATA_PATH", pg_lake.data_path)
    home = tmp_path / "dagster_home"
    dagster_db = _postgres_instance_home(postgres, home, monkeypatch)
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        result = _run(day, day, selection=FEATURE_PIPELINES, instance=instance)
    finally:
        instance.dispose()
    assert result.success

    assert _tables(pg_lake) == expected
    assert all(rows for rows in expected.values())
    # dbt's models went into the same lake: its tables are in the PostgreSQL catalog.
    lake_tables = {
        name
        for (name,) in _catalog_rows(
            postgres,
            _dbname(pg_lake),
            "select table_name from ducklake_table where end_snapshot is null",
        )
    }
    assert {"raw_transactions", "int_card_daily_activity", "card_daily_features_v1"} <= lake_tables

    # The run and its materializations, read back by a new instance object on the database.
    materialized = {event.asset_key for event in result.get_asset_materialization_events()}
    fresh = dg.DagsterInstance.from_config(str(home))
    try:
        assert type(fresh.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert fresh.get_run_by_id(result.run_id).is_success
        for key in materialized:
            assert fresh.get_latest_materialization_event(key) is not None, key
        daily = dg.AssetKey("card_daily_features")
        assert fresh.get_materialized_partitions(daily) == {day.isoformat()}
    finally:
        fresh.dispose()
    (events,) = _catalog_rows(
        postgres, dagster_db, "select count(*) from event_logs where run_id = %s", (result.run_id,)
    )
    assert events[0] > len(materialized)
    assert not (home / "history").exists()  # nothing fell back to the SQLite storage


def test_postgres_up_and_down_are_idempotent_and_print_what_to_export(tmp_path: Path) -> None:
    """`make postgres-up` / `postgres-down` (scripts/postgres.py) on a server of their own,
    without a password (trust on 127.0.0.1); the data survives a restart."""
    if find_server_binaries() is None:
        missing_system_program("PostgreSQL server binaries not found: run make install as root")
    root = Path(tempfile.mkdtemp(prefix="fti-postgres-up-"))
    env = {
        **os.environ,
        "FTI_PG_DIR": str(root),
        "FTI_PG_PORT": str(_free_port()),
        "FTI_DATA_DIR": str(tmp_path / "data"),
    }
    for name in ("FTI_PG_PASSWORD", "FTI_PG_USER", "FTI_LAKE_DATA_PATH"):
        env.pop(name, None)
    script = [sys.executable, str(PROJECT_ROOT / "scripts" / "postgres.py")]

    def run(command: str) -> str:
        done = subprocess.run([*script, command], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    server = LocalPostgres(root, port=int(env["FTI_PG_PORT"]))
    try:
        first = run("up")
        assert run("up") == first
        exported = dict(
            shlex.split(line, comments=True)[1].split("=", 1) for line in first.splitlines()
        )
        assert exported == {
            "FTI_PG_HOST": "127.0.0.1",
            "FTI_PG_PORT": env["FTI_PG_PORT"],
            "FTI_PG_USER": "fti",
            "FTI_PG_DB": "dagster",
            "FTI_LAKE_CATALOG": server.lake_catalog(),
            "FTI_LAKE_DATA_PATH": f"{tmp_path / 'data' / 'lake_postgres' / 'data'}/",
            "FTI_PG_PASSWORD": "",
        }
        with closing(server.connect("dagster")) as con, con.cursor() as cur:
            cur.execute("create table kept (x int)")
            con.commit()
        run("down")
        assert server.running_port() is None
        run("down")
        run("up")
        assert _catalog_rows(server, "dagster", "select count(*) from kept") == [(0,)]
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_printed_variables_never_hold_the_password(tmp_path: Path) -> None:
    env = {**os.environ, "FTI_PG_DIR": str(tmp_path), "FTI_PG_PASSWORD": "s3cret-value"}
    done = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "scripts" / "postgres.py"), "env"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "s3cret-value" not in done.stdout + done.stderr
    assert 'export PGPASSWORD="$FTI_PG_PASSWORD"' in done.stdout


def test_a_cli_run_with_steps_in_their_own_processes_uses_the_postgres_instance_and_lake(
    data_layer: Path,
    postgres: LocalPostgres,
    pg_lake: LakeConfig,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`dagster asset materialize` in a new process, as a user or `dagster dev` launches a run:
    the definitions' multiprocess executor runs each step in a process of its own, which loads
    the instance from DAGSTER_HOME's yaml and attaches the lake itself."""
    monkeypatch.setenv("FTI_LAKE_CATALOG", pg_lake.catalog)
    monkeypatch.setenv("FTI_LAKE_DATA_PATH", pg_lake.data_path)
    home = tmp_path / "dagster_home"
    dagster_db = _postgres_instance_home(postgres, home, monkeypatch)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    command = [
        str(Path(sys.executable).with_name("dagster")), "asset", "materialize",
        "-m", "fti_assets.definitions", "--select", ",".join(TABLES),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]

    with connect(pg_lake, read_only=True) as con:
        counts = [con.execute(f"select count(*) from {t}").fetchone()[0] for t in TABLES]
    assert counts == [400, 40]  # the tiny data set's cards and merchants
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        (run,) = instance.get_runs()
        assert run.is_success
        step_pids = {
            entry.dagster_event.pid
            for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_START)
        }
    finally:
        instance.dispose()
    assert len(step_pids) == 2  # each step ran in a process of its own
    steps = _catalog_rows(
        postgres,
        dagster_db,
        "select distinct step_key from event_logs where run_id = %s and "
        "dagster_event_type = 'ASSET_MATERIALIZATION' order by 1",
        (run.run_id,),
    )
    assert steps == [(t,) for t in TABLES]
