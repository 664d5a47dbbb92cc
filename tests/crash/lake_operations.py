"""The offline-store writers the crash trials kill: writing feature-group partitions, the dbt
build (the ingest is in ``ingest_operations``: its validation imports Pandera, a second per
child that the others need not pay).

A module of its own, importing little: each trial's child process imports it before its ready
line. Every operation works on a trial folder laid out by ``tests/crash/lake_world.py``:
``lake/`` (the DuckLake, possibly a symlink), ``landing`` (a symlink to the shared landing files,
resolved so that the ``_source_file`` the ingest records is the same in every folder) and, for
dbt, ``target/`` (dbt's state, with a partial parse made for the same lake path).
"""

import os
import subprocess
import sys
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from fti_assets.lib.core.settings import PROJECT_ROOT, LakeConfig
from fti_assets.lib.features.pipelines import refresh_card_transaction_features
from fti_assets.lib.store.offline import connection, lake_environment

# The days of the world that land twice: first a truncated file, then the whole one.
REWRITTEN_DAYS = (date(2026, 9, 8), date(2026, 9, 9))
DBT_PROJECT = PROJECT_ROOT / "dbt_project"
DBT = Path(sys.executable).with_name("dbt")


def lake_of(workdir: Path) -> LakeConfig:
    return LakeConfig.under(workdir / "lake")


def landing_of(workdir: Path) -> Path:
    return (workdir / "landing").resolve()


def midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def dbt_command(workdir: Path, command: str) -> list[str]:
    return [
        str(DBT), command, "--quiet",
        "--project-dir", str(DBT_PROJECT), "--profiles-dir", str(DBT_PROJECT),
        "--target-path", str(workdir / "target"), "--log-path", str(workdir / "logs"),
    ]  # fmt: skip


def dbt_environment(lake: LakeConfig, window: tuple[date, date] | None) -> dict[str, str]:
    """What the Dagster dbt assets give dbt: the lake, the partition window (unset: every
    day) and the "cautious" selection of tests."""
    env = {**os.environ, **lake_environment(lake), "DBT_INDIRECT_SELECTION": "cautious"}
    env.pop("FTI_WINDOW_START", None)
    env.pop("FTI_WINDOW_END", None)
    if window is not None:
        env["FTI_WINDOW_START"], env["FTI_WINDOW_END"] = (d.isoformat() for d in window)
    return env


def run_dbt(workdir: Path, command: str, window: tuple[date, date] | None) -> None:
    result = subprocess.run(
        dbt_command(workdir, command),
        env=dbt_environment(lake_of(workdir), window),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"dbt {command} failed:\n{result.stdout[-4000:]}{result.stderr[-4000:]}")


# ---------------------------------------------------------- operations (run in the child)


def refresh_feature_partitions(workdir: Path) -> None:
    """Rewrite the daily partitions of card_transaction_features for the rewritten days, one
    commit per day, as the partitioned feature asset does."""
    with connection(lake_of(workdir)) as con:
        for day in REWRITTEN_DAYS:
            refresh_card_transaction_features(con, midnight(day), midnight(day + timedelta(1)))


def dbt_build(workdir: Path) -> None:
    """``dbt build`` over the rewritten days, the way the Dagster dbt assets run it: the
    dbt CLI in a subprocess (in the child's process group: the kill reaches it)."""
    run_dbt(workdir, "build", (REWRITTEN_DAYS[0], REWRITTEN_DAYS[-1]))
