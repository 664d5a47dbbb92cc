"""Runs launched the way users launch them, at the same time, on one lake.

Two `dagster asset materialize` processes (the definitions' multiprocess executor, each step in
its own process, a persistent instance) re-materialize two adjacent days at once while a third
process keeps querying the lake read-only, as a notebook would. With the project's dagster.yaml
(dbt steps in a pool of one) and with a bare instance (no pool limits: concurrent dbt builds
retry their commit conflicts), both runs succeed, the reader never fails, and every feature
group is exactly what one serial run wrote: nothing lost, nothing duplicated.

The days are materialized serially first: a day's trailing windows read the days before it,
so two runs creating adjacent days for the first time race on what the later one reads (as in
any orchestrator); re-materializing them does not, which makes the comparison exact.
"""

import os
import shutil
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest

from fti_assets.lib.core.settings import PROJECT_ROOT, Settings
from fti_assets.lib.store.offline import connection
from tests.conftest import TINY_START
from tests.test_pipeline import FEATURE_PIPELINES, _run, _tables

pytestmark = [pytest.mark.slow]

DAYS = [TINY_START + timedelta(days=2), TINY_START + timedelta(days=3)]
# The daily (partitioned) assets of the feature pipelines: ingest, dbt, Polars, their checks.
DAILY = [
    "raw_transactions",
    "raw_fraud_labels",
    "int_card_daily_activity",
    "int_merchant_daily_activity",
    "int_merchant_fraud_reports",
    "card_transaction_features",
    "card_daily_features",
    "merchant_daily_features",
]

_READER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from fti_assets.lib.store.offline import OfflineStoreMissingError, connection
    from fti_assets.lib.core.settings import LakeConfig

    lake, stop = LakeConfig(sys.argv[1], sys.argv[2]), Path(sys.argv[3])
    reads = 0
    while not stop.exists():
        try:
            with connection(lake, read_only=True) as con:
                tables = {t for (t,) in con.execute("show tables").fetchall()}
                if "raw_transactions" in tables:
                    con.execute(
                        "select card_id, count(*), sum(amount) from raw_transactions "
                        "group by card_id order by 3 desc limit 5"
                    ).fetchall()
                reads += 1
        except OfflineStoreMissingError:
            pass  # the first run has not created the lake yet
        time.sleep(0.05)
    print(reads)
    """
)


def _materialize(day: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [
            str(Path(sys.executable).with_name("dagster")),
            "asset",
            "materialize",
            "-m",
            "fti_assets.definitions",
            "--select",
            ",".join(DAILY),
            "--partition",
            day,
        ],
        env=env,
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.parametrize("instance", ["project dagster.yaml", "bare instance"])
def test_overlapping_runs_and_a_reader(instance: str, data_layer: Path, tmp_path: Path) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    if instance == "project dagster.yaml":
        shutil.copy(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    # The instance's storage exists before the two processes start, as it does for any instance
    # that has run once: two processes creating a new SQLite storage at the same moment race on
    # its alembic version table ("more than one head") — Dagster's, not the lake's.
    dg.DagsterInstance.from_config(str(home)).dispose()
    lake = Settings.from_env().lake
    assert _run(TINY_START, DAYS[-1], selection=FEATURE_PIPELINES).success  # the serial run
    serial = _tables(lake)
    stop = tmp_path / "stop-reader"
    reader = subprocess.Popen(
        [sys.executable, "-c", _READER, lake.catalog, lake.data_path, str(stop)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    runs = [_materialize(day.isoformat(), env) for day in DAYS]
    outputs = [run.communicate(timeout=600)[0] for run in runs]
    stop.touch()
    reads, reader_errors = reader.communicate(timeout=60)
    for run, output in zip(runs, outputs, strict=True):
        assert run.returncode == 0, output[-4000:]
        assert "RUN_SUCCESS" in output
    assert reader.returncode == 0, reader_errors[-3000:]
    assert int(reads) > 0
    assert _tables(lake) == serial
    with connection(lake, read_only=True) as con:
        (duplicates,) = con.execute(
            "select count(*) - count(distinct transaction_id) from raw_transactions"
        ).fetchone()
    assert duplicates == 0
