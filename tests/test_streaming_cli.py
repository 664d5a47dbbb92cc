"""`fti stream` as users run it: bootstrapped from the offline store (the lake), then the log."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import polars as pl

from fti_assets.lib.core.settings import PROJECT_ROOT, Settings
from fti_assets.lib.features.groups import CARD_TRANSACTION_FEATURES
from fti_assets.lib.features.windows import build_card_transaction_features
from fti_assets.lib.store.offline import Replacement, connection, replace_partitions
from fti_assets.lib.store.online import open_online_store
from fti_assets.lib.streaming.event_log import open_event_log
from fti_assets.lib.streaming.events import encode_transaction
from tests.processes import fti_env
from tests.unit.test_serving import history_transactions


def _fti_stream(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fti_assets.cli", "stream", *args],
        env=fti_env(FTI_DATA_DIR=str(data_dir)),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_stream_once_bootstraps_the_windows_from_the_lake(tmp_path: Path) -> None:
    settings = Settings.for_data_dir(tmp_path / "data")
    history = history_transactions()
    with connection(settings.lake) as con:
        replace_partitions(con, [Replacement("raw_transactions", history, "true")])
    c1 = history.filter(pl.col("card_id") == "c1").sort("transaction_time")
    live = c1.tail(1).with_columns(
        pl.lit("live-1").alias("transaction_id"),
        pl.col("transaction_time") + timedelta(minutes=30),
    )
    with open_event_log(settings.event_log_url) as log:
        log.append([encode_transaction(row) for row in live.iter_rows(named=True)])

    done = _fti_stream(settings.data_dir, "--once")

    assert done.returncode == 0, done.stderr
    assert "bootstrap: 60 transactions of 3 cards" in done.stderr
    expected = build_card_transaction_features(pl.concat([history, live])).filter(
        pl.col("card_id") == "c1"
    )
    with open_online_store(settings.online_url, readonly=True) as store:
        row = store.get(CARD_TRANSACTION_FEATURES.name, "c1")
    want = expected.row(-1, named=True)
    assert row.event_time == want["event_time"]
    assert row.features == {k: want[k] for k in CARD_TRANSACTION_FEATURES.feature_names}
    assert row.features["tx_count_30d"] == c1.height + 1  # the history counts


def test_stream_without_an_offline_store_says_what_to_do(tmp_path: Path) -> None:
    done = _fti_stream(tmp_path / "empty", "--once")

    assert done.returncode == 2
    assert "cannot bootstrap the card windows" in done.stdout
    assert "--no-bootstrap" in done.stdout or "make demo" in done.stdout
