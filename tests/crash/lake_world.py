"""The small world the offline-store crash trials run on, and the lakes they start from.

The generator writes a 10-day world once; the rewritten days land twice: first a truncated file
(``old_landing``), then the whole one (``landing``), so that a partition written before and after
an operation differ. A trial's starting lake is a copy of a template lake built once per test.
"""

from __future__ import annotations

import shutil
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import polars as pl

from fti_assets.lib.core.settings import LakeConfig
from fti_assets.lib.ingest.raw import (
    fraud_labels_path,
    ingest_cards,
    ingest_fraud_labels_day,
    ingest_merchants,
    ingest_transactions_day,
    transactions_path,
)
from fti_assets.lib.store.offline import connection
from fti_assets.lib.synthetic.generator import GeneratorConfig, generate
from tests.crash.lake_operations import REWRITTEN_DAYS

WORLD = GeneratorConfig(cards=150, merchants=30, days=10, fraud_rate=0.03, bad_rows=1)
OLD_SHARE = 0.6  # of each rewritten file's rows in its first, truncated landing


@dataclass(frozen=True)
class World:
    landing: Path  # the whole landing files
    old_landing: Path  # the same, with the rewritten days truncated


def make_world(folder: Path) -> World:
    generate(WORLD, folder / "data")
    landing, old_landing = folder / "data" / "landing", folder / "old_landing"
    shutil.copytree(landing, old_landing)
    for day in REWRITTEN_DAYS:
        for path in (transactions_path(old_landing, day), fraud_labels_path(old_landing, day)):
            frame = pl.read_parquet(path)
            frame.head(int(frame.height * OLD_SHARE)).write_parquet(path)
    return World(landing, old_landing)


def ingest_world(lake: LakeConfig, world: World) -> None:
    """Every day of the world, the rewritten days from their truncated files."""
    with connection(lake) as con:
        ingest_cards(con, world.landing)
        ingest_merchants(con, world.landing)
        for offset in range(WORLD.days):
            day = WORLD.start + timedelta(days=offset)
            landing = world.old_landing if day in REWRITTEN_DAYS else world.landing
            ingest_transactions_day(con, landing, day)
            ingest_fraud_labels_day(con, landing, day)


def copy_lake(source: Path, target: Path) -> None:
    """Copy the lake in ``source`` (made by ``LakeConfig.under``) to ``target``."""
    shutil.copytree(source, target, symlinks=True)
    _claim_data_path(target)


def move_lake(source: Path, target: Path) -> None:
    shutil.move(source, target)
    _claim_data_path(target)


def _claim_data_path(folder: Path) -> None:
    """DuckLake records its data path in the catalog and refuses to attach with another one: a
    copied or moved lake's catalog gets its own (the ``data_path`` row of
    ``ducklake_metadata``; an attach fails loudly if DuckLake ever moves it). The data files'
    paths are relative to it."""
    lake = LakeConfig.under(folder)
    with closing(sqlite3.connect(lake.target)) as db, db:
        changed = db.execute(
            "update ducklake_metadata set value = ? where key = 'data_path'", [lake.data_path]
        ).rowcount
    assert changed == 1, f"{lake.target}: no data_path in ducklake_metadata"


def lay_out(workdir: Path, template: Path, world: World) -> None:
    """A trial folder: a copy of the template's lake and the shared landing files."""
    copy_lake(template, workdir / "lake")
    (workdir / "landing").symlink_to(world.landing)


DBT_SLOT = "dbt-lake"
_OWNER = ".trial"


def occupy_dbt_slot(slot: Path, template: Path, workdir: Path) -> None:
    """Give ``workdir`` a copy of the lake in ``template`` at the path ``slot``, where every dbt
    trial's lake lives in turn.

    dbt parses the whole project again (seconds) whenever the lake's path in its profile changes;
    at one path a trial's dbt starts from the template's partial parse. The previous trial's lake
    moves into that trial's own folder, to be inspected if it failed.
    """
    if slot.exists():
        owner = Path((slot / _OWNER).read_text())
        (slot / _OWNER).unlink()
        (owner / "lake").unlink()
        move_lake(slot, owner / "lake")
    copy_lake(template, slot)
    (slot / _OWNER).write_text(str(workdir))
    (workdir / "lake").symlink_to(slot)
