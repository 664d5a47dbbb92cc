"""The offline store as a DuckLake against one DuckDB file: the same workloads, side by side.

The DuckLake contender is the prepared world's lake (benchmarks/world.py: generated, ingested,
every feature pipeline run); the DuckDB-file contender is one DuckDB file holding a copy of
every base table of that lake (copied once, not timed). Workloads, each on both stores:

* **PIT join**: bench_pit's raw ASOF SQL (labels × features, strictly earlier event_time) over
  tables ``labels`` and ``features`` loaded into a lake of their own and into a DuckDB file;
  a fresh process per measurement, the join timed inside it (result materialised as a Polars
  frame), best of N; peak RSS of the process.
* **Training dataset**: ``build_training_frame`` with the fraud model's dataset settings, label
  spec and feature view (five groups). The lake connection is pinned to the current snapshot,
  as the dataset asset opens it; the file is opened read-only, with a temporary macro answering
  the snapshot id the build records (a file has no snapshots). Fresh process, best of N.
* **dbt build**: the two ``dbt build`` commands of the feature pipelines over every day
  (reference models, then the daily models' window), with dbt_project/profiles.yml attaching the
  lake vs a temporary profiles.yml with ``path: <file>``; wall time of both commands, best of N.
* **One daily partition**: ``dbt build --select tag:daily`` for the last day, then the Polars
  card windows of that day in a fresh process (connect, read 30 days of history, compute,
  replace the day in one transaction); best of N of the sum.

Goal: the lake at most 1.2× the DuckDB file on each.

Run alone: ``python -m benchmarks.bench_lake --scale quick``.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from benchmarks.bench_pit import RAW_DUCKDB_SQL
from benchmarks.common import Section, cli_main, in_fresh_process, machine_load, mib
from benchmarks.world import PitFiles, World, pit_files, prepared, timed
from fti_assets.lib.core.settings import LakeConfig
from fti_assets.lib.features.views import col
from fti_assets.lib.store.offline import connect, connection, current_snapshot, quote_ident

ROOT = Path(__file__).resolve().parents[1]
DBT = str(Path(sys.executable).parent / "dbt")
LAKE, FILE = "lake", "file"
GOAL = "≤ 1.2×"


@dataclass(frozen=True)
class Plan:
    repeats: int  # fresh processes (or dbt runs) per contender and workload


PLANS = {"quick": Plan(repeats=1), "full": Plan(repeats=2)}


@dataclass(frozen=True)
class Store:
    """Where a child process finds a contender: a lake (catalog + data path) or a file."""

    kind: str
    target: str  # the lake's catalog, or the DuckDB file's path
    data_path: str = ""

    def args(self) -> tuple[str, str, str]:
        return self.kind, self.target, self.data_path


def open_store(
    kind: str, target: str, data_path: str, *, write: bool = False
) -> duckdb.DuckDBPyConnection:
    """A connection to a contender, in UTC; read-only unless ``write``."""
    if kind == LAKE:
        return connect(LakeConfig(target, data_path), read_only=not write)
    con = duckdb.connect(target, read_only=not write)
    con.execute("SET TimeZone = 'UTC'")
    return con


# --- children (module level: each runs in a spawned process) --------------------------------


def _write_result(result_path: str, **values: Any) -> None:
    Path(result_path).write_text(json.dumps(values))


def asof_join(kind: str, target: str, data_path: str, result_path: str) -> None:
    """bench_pit's raw ASOF SQL over the store's ``labels`` and ``features`` tables."""
    con = open_store(kind, target, data_path)
    t0, c0 = time.perf_counter(), time.process_time()
    out = con.sql(RAW_DUCKDB_SQL.format(labels="labels", features="features")).pl()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    f0 = out["f0"]
    _write_result(
        result_path,
        seconds=wall,
        cpu_s=cpu,
        check=f"{out.height} rows, {f0.len() - f0.null_count()} matched, f0 sum {f0.sum():.6f}",
    )


def build_dataset(kind: str, target: str, data_path: str, result_path: str) -> None:
    """``build_training_frame`` as the fraud model's dataset asset calls it."""
    from fti_assets.lib.training.datasets import DatasetConfig, build_training_frame
    from fti_assets.specs.feature_views import resolved
    from fti_assets.specs.models import FRAUD_MODEL

    t0, c0 = time.perf_counter(), time.process_time()
    if kind == LAKE:
        lake = LakeConfig(target, data_path)
        with connection(lake, read_only=True) as con:
            snapshot = current_snapshot(con)
        con = connect(lake, snapshot=snapshot)
    else:
        con = open_store(kind, target, data_path)
        con.execute("create temp macro ducklake_current_snapshot(c) as table select 0 as id")
    defaults = FRAUD_MODEL.dataset
    config = DatasetConfig(
        name=FRAUD_MODEL.dataset_name,
        label_maturity_days=defaults.label_maturity_days,
        warmup_days=defaults.warmup_days,
        valid_fraction=defaults.valid_fraction,
        test_fraction=defaults.test_fraction,
    )
    view = resolved(FRAUD_MODEL.feature_view)
    frame, _ = build_training_frame(con, view, FRAUD_MODEL.label, config)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    digest = frame.hash_rows(seed=0).cast(pl.Float64).sum()
    _write_result(
        result_path,
        seconds=wall,
        cpu_s=cpu,
        check=dataset_summary(frame, [group.name for group in view.groups]),
        digest=f"{frame.width} columns, row-hash sum {digest:.6e}",
    )


def dataset_summary(frame: pl.DataFrame, groups: Sequence[str]) -> str:
    """Rows and, per feature group, the rows a feature row was joined to."""
    matched = (
        f"{name} {frame.height - frame[col(name, 'event_time')].null_count()}" for name in groups
    )
    return f"{frame.height} rows; matched per group: {', '.join(matched)}"


# What refresh_card_transaction_features reads: the day plus LOOKBACK of history.
_HISTORY_SQL = (
    "select transaction_id, card_id, amount, category, channel, transaction_time, lat, lon "
    "from raw_transactions where transaction_time >= ? and transaction_time < ?"
)


def refresh_day(kind: str, target: str, data_path: str, day: str, result_path: str) -> None:
    """The Polars card windows of one day, written to the store in one transaction: through
    the library on the lake; the same read, compute and delete + insert on the file."""
    from fti_assets.lib.features.groups import CARD_TRANSACTION_FEATURES
    from fti_assets.lib.features.pipelines import refresh_card_transaction_features
    from fti_assets.lib.features.windows import LOOKBACK, build_card_transaction_features
    from fti_assets.lib.store.offline import read_frame

    start = datetime.fromisoformat(day).replace(tzinfo=UTC)
    end = start + timedelta(days=1)
    t0 = time.perf_counter()
    con = open_store(kind, target, data_path, write=True)
    if kind == LAKE:
        rows, _ = refresh_card_transaction_features(con, start, end)
    else:
        history = read_frame(con, _HISTORY_SQL, [start - LOOKBACK, end])
        rows = build_card_transaction_features(history.lazy(), start, end)
        table = quote_ident(CARD_TRANSACTION_FEATURES.table)
        con.execute("begin transaction")
        con.execute(f"delete from {table} where event_time >= ? and event_time < ?", [start, end])
        con.execute(f"insert into {table} by name select * from rows")
        con.execute("commit")
    con.close()
    _write_result(result_path, seconds=time.perf_counter() - t0, check=f"{rows.height} rows")


# --- measuring -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measure:
    seconds: float
    peak_mib: float | None
    check: str  # what the contenders must agree on
    digest: str = ""  # more of the result, for contenders returning the same frame


Child = Callable[..., None]


def fresh(fn: Child, store: Store, *args: str, repeats: int, work: Path) -> Measure:
    """Best time over ``repeats`` fresh processes running ``fn(*store, *args, result_path)``;
    the largest peak RSS among them."""
    runs = []
    for _ in range(repeats):
        result_path = work / f"{fn.__name__}-{uuid.uuid4().hex}.json"
        _, peak = in_fresh_process(fn, *store.args(), *args, str(result_path))
        runs.append((json.loads(result_path.read_text()), mib(peak)))
    best = min(runs, key=lambda run: run[0]["seconds"])[0]
    peak_mib = max(peak for _, peak in runs)
    return Measure(best["seconds"], peak_mib, best["check"], best.get("digest", ""))


def copy_lake_to_file(lake: LakeConfig, path: Path) -> list[str]:
    """Copy every base table of the lake into a new DuckDB file; the tables copied."""
    with connection(lake, read_only=True) as con:
        tables = [
            name
            for (name,) in con.execute(
                "select table_name from information_schema.tables where table_catalog = 'lake' "
                "and table_schema = 'main' and table_type = 'BASE TABLE' order by table_name"
            ).fetchall()
        ]
        con.execute(f"attach '{path}' as copy")
        for table in tables:
            ident = quote_ident(table)
            con.execute(f"create table copy.main.{ident} as select * from lake.main.{ident}")
        con.execute("detach copy")
    return tables


def _pit_stores(files: PitFiles, work: Path) -> dict[str, Store]:
    """The PIT data loaded as tables ``labels`` and ``features`` into a lake and a file."""
    lake = LakeConfig.under(work / "pit_lake")
    file = work / "pit.duckdb"
    loads = {LAKE: connect(lake), FILE: duckdb.connect(str(file))}
    for con in loads.values():
        for table, path in (("labels", files.labels), ("features", files.features)):
            con.execute(f"create table {table} as select * from read_parquet(?)", [str(path)])
        con.close()
    return {LAKE: Store(LAKE, lake.catalog, lake.data_path), FILE: Store(FILE, str(file))}


def _dbt(
    args: list[str],
    env: dict[str, str],
    profiles: list[str],
    target: Path,
    window: tuple[date, date],
) -> float:
    """Wall seconds of one ``dbt build`` over the days ``window`` (first, last)."""
    first, last = window
    env = {**env, "FTI_WINDOW_START": first.isoformat(), "FTI_WINDOW_END": last.isoformat()}
    cmd = [DBT, "build", *args, "--target-path", str(target), *profiles]
    return timed(cmd, env, ROOT / "dbt_project")


def _file_profile(path: Path, folder: Path) -> list[str]:
    """A dbt profile ``fti`` on the DuckDB file, as ``--profiles-dir`` arguments."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "profiles.yml").write_text(
        "fti:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n"
        f'      path: "{path}"\n      threads: 1\n      schema: main\n'
        "      settings:\n        TimeZone: UTC\n"
    )
    return ["--profiles-dir", str(folder)]


def _same(a: str, b: str) -> str:
    return "yes" if a == b else f"no: {a} vs {b}"


def run(scale: str) -> list[Section]:
    plan = PLANS[scale]
    world = prepared(scale)
    files = pit_files(scale)
    section = Section(
        f"Offline store: DuckLake vs one DuckDB file ({world.size}; PIT join {files.size})",
        [
            "workload",
            "DuckLake s",
            "DuckDB file s",
            "ratio (lake ÷ file)",
            "goal",
            "DuckLake peak RSS MiB",
            "DuckDB file peak RSS MiB",
            "same result",
        ],
    )
    section.notes.append(machine_load())
    with tempfile.TemporaryDirectory(prefix="fti-bench-lake-") as tmp:
        work = Path(tmp)
        _pit_row(section, files, work, plan)
        copied = _file_copy(world, work, section)
        _dataset_row(section, world, copied, work, plan)
        _dbt_rows(section, world, copied, work, plan)
    section.notes += [
        f"Times are the best of {plan.repeats} run(s) per contender; the PIT join and the "
        "dataset build run in fresh processes (peak RSS is that process's, reading included; "
        "the dataset build's time includes opening the store). dbt times are whole `dbt` "
        "processes (start-up and partial parse included), identical on both stores except "
        "the profile.",
        "The daily partition: `dbt build --select tag:daily` for the last day, then the Polars "
        "card windows for that day (connect, read 30 days of history, compute, replace the "
        "day in one transaction: refresh_card_transaction_features on the lake, the same "
        "read/compute and delete + insert on the file).",
    ]
    return [section]


def _pit_row(section: Section, files: PitFiles, work: Path, plan: Plan) -> None:
    stores = _pit_stores(files, work)
    repeats = plan.repeats + 1
    lake = fresh(asof_join, stores[LAKE], repeats=repeats, work=work)
    file = fresh(asof_join, stores[FILE], repeats=repeats, work=work)
    section.add(
        "PIT join: raw DuckDB ASOF SQL over stored tables",
        lake.seconds,
        file.seconds,
        lake.seconds / file.seconds,
        GOAL,
        lake.peak_mib,
        file.peak_mib,
        _same(lake.check, file.check),
    )
    section.notes.append(f"PIT join result on both: {lake.check}; best of {repeats}.")


def _file_copy(world: World, work: Path, section: Section) -> Store:
    path = work / "offline.duckdb"
    t0 = time.perf_counter()
    tables = copy_lake_to_file(world.lake, path)
    elapsed = time.perf_counter() - t0
    lake_bytes = sum(p.stat().st_size for p in Path(world.lake.data_path).rglob("*") if p.is_file())
    section.notes.append(
        f"The DuckDB file is a copy of the lake's {len(tables)} base tables made before "
        f"measuring ({elapsed:.1f} s, not timed): {path.stat().st_size / 2**20:,.0f} MiB, against "
        f"{lake_bytes / 2**20:,.0f} MiB of lake Parquet files (every live snapshot's)."
    )
    return Store(FILE, str(path))


def _dataset_row(section: Section, world: World, file: Store, work: Path, plan: Plan) -> None:
    lake = Store(LAKE, world.lake.catalog, world.lake.data_path)
    ours = fresh(build_dataset, lake, repeats=plan.repeats, work=work)
    theirs = fresh(build_dataset, file, repeats=plan.repeats, work=work)
    section.add(
        "training dataset: build_training_frame (labels, PIT joins of the fraud model's view, "
        "on-demand features, split)",
        ours.seconds,
        theirs.seconds,
        ours.seconds / theirs.seconds,
        GOAL,
        ours.peak_mib,
        theirs.peak_mib,
        _same(f"{ours.check}; {ours.digest}", f"{theirs.check}; {theirs.digest}"),
    )
    section.notes.append(f"Training dataset on both: {ours.check}; {ours.digest}.")


def _dbt_rows(section: Section, world: World, file: Store, work: Path, plan: Plan) -> None:
    profiles = {LAKE: [], FILE: _file_profile(Path(file.target), work / "profile")}
    stores = {LAKE: Store(LAKE, world.lake.catalog, world.lake.data_path), FILE: file}
    builds: dict[str, list[float]] = {LAKE: [], FILE: []}
    days: dict[str, list[float]] = {LAKE: [], FILE: []}
    checks: dict[str, str] = {}
    day = world.end
    for _ in range(plan.repeats):
        for kind in (LAKE, FILE):
            target = work / f"dbt-target-{kind}"
            every_day = (world.start, world.end)
            builds[kind].append(
                sum(
                    _dbt(args, world.env, profiles[kind], target, every_day)
                    for args in (["--exclude", "tag:daily"], ["--select", "tag:daily"])
                )
            )
            dbt_s = _dbt(["--select", "tag:daily"], world.env, profiles[kind], target, (day, day))
            polars = fresh(refresh_day, stores[kind], day.isoformat(), repeats=1, work=work)
            days[kind].append(dbt_s + polars.seconds)
            checks[kind] = polars.check
    for label, times in (
        (f"dbt build, every model over {world.plan.days} days", builds),
        ("one daily partition: dbt daily models + Polars card windows", days),
    ):
        lake_s, file_s = min(times[LAKE]), min(times[FILE])
        same = _same(checks[LAKE], checks[FILE]) if "daily" in label else ""
        section.add(label, lake_s, file_s, lake_s / file_s, GOAL, "", "", same)
    section.notes.append(
        f"Daily partition {day}: the Polars step wrote {checks[LAKE]} (lake) and {checks[FILE]} "
        "(file); dbt runs with dbt_project/profiles.yml (the lake) or a profiles.yml with the "
        "file's path."
    )


if __name__ == "__main__":
    cli_main(run, __doc__, PLANS)
