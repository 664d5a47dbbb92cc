"""The writers outside the lake the crash trials kill: an online-store group, a training dataset,
the service's inference log; with the inputs they write (deterministic, made in the setups).

A module of its own, importing little: each trial's child process imports it before its ready
line. Inputs are Parquet files the setups put in the trial folder, so the child spends its time
writing, not generating.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from fti_assets.lib.inference.log import InferenceLogger
from fti_assets.lib.store.group_spec import FeatureGroupSpec, FeatureSpec
from fti_assets.lib.store.online import OnlineStore
from fti_assets.lib.training.datasets import SPLIT, BuildInfo, write_dataset

T0 = datetime(2026, 9, 10, tzinfo=UTC)

# ---------------------------------------------------------- the online store

ONLINE_GROUP = FeatureGroupSpec(
    name="card_state",
    version=1,
    entity_keys=("card_id",),
    features=(
        FeatureSpec("amount_mean", "float64", "mean amount"),
        FeatureSpec("tx_count", "int64", "transactions so far"),
        FeatureSpec("last_channel", "string", "channel of the last transaction"),
        FeatureSpec("is_new", "bool", "opened this month"),
        FeatureSpec("last_seen", "timestamp_utc", "time of the last transaction"),
    ),
    description="a card's running state (crash trials)",
    online=True,
)
ONLINE_ENTITIES = 40_000
ONLINE_FILE = "online.sqlite"
ONLINE_INPUT = "online_batch.parquet"


def online_batch(generation: int) -> pl.DataFrame:
    """The rows of a batch write: generation 0 the first, generation 1 a later batch with a
    quarter more entities, a newer row for most, but an OLDER row for every fourth entity (a
    late event: the stored row must win)."""
    n = ONLINE_ENTITIES + generation * ONLINE_ENTITIES // 4
    index = np.arange(n)
    late = (index % 4 == 0) & (index < ONLINE_ENTITIES)
    shift = np.where(late, -3600, 3600) * generation
    rng = np.random.default_rng(generation)
    at = pl.lit(T0, dtype=pl.Datetime("us", "UTC"))
    return pl.DataFrame(
        {
            "card_id": [f"c{i:07d}" for i in index],
            "event_s": index % 86_400 + shift,
            "amount_mean": rng.gamma(2.0, 30.0, n),
            "tx_count": rng.integers(1, 500, n),
            "last_channel": rng.choice(["online", "pos", "atm"], n),
            "is_new": rng.random(n) < 0.1,
            "seen_min": rng.integers(0, 10_000, n),
        }
    ).select(
        "card_id",
        (at + pl.duration(seconds="event_s")).alias("event_time"),
        "amount_mean",
        "tx_count",
        "last_channel",
        "is_new",
        (at - pl.duration(minutes="seen_min")).alias("last_seen"),
    )


def write_online_group(workdir: Path) -> None:
    """The batch write of a group into the SQLite online store, through its public API."""
    store = OnlineStore(workdir / ONLINE_FILE)
    try:
        store.write_group(ONLINE_GROUP, pl.read_parquet(workdir / ONLINE_INPUT))
    finally:
        store.close()


# ---------------------------------------------------------- training datasets

DATASET_NAME = "crash_dataset"
DATASET_ROWS = 150_000
DATASET_INPUT = "dataset_frame.parquet"
NUMERIC_FEATURES = [f"f{i}" for i in range(12)]
CATEGORICAL_FEATURES = ["category", "channel"]
FEATURE_COLUMNS = [*NUMERIC_FEATURES, *CATEGORICAL_FEATURES]


def dataset_frame(seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    n = DATASET_ROWS
    frame = pl.DataFrame(
        {
            "transaction_id": [f"t{seed}-{i:08d}" for i in range(n)],
            "transaction_time": pl.datetime_range(
                T0, T0 + timedelta(seconds=n - 1), "1s", eager=True, time_zone="UTC"
            ),
            **{name: rng.normal(size=n) for name in NUMERIC_FEATURES},
            "category": rng.choice(["grocery", "travel", "digital", "fuel"], n),
            "channel": rng.choice(["online", "pos"], n),
            "is_fraud": (rng.random(n) < 0.02).astype(np.int8),
        }
    )
    share = pl.int_range(pl.len()) / pl.len()
    return frame.with_columns(
        pl.when(share < 0.7)
        .then(pl.lit("train"))
        .when(share < 0.85)
        .then(pl.lit("valid"))
        .otherwise(pl.lit("test"))
        .alias(SPLIT)
    )


def dataset_info() -> BuildInfo:
    end = T0 + timedelta(seconds=DATASET_ROWS)
    return BuildInfo(
        name=DATASET_NAME,
        cutoff=end + timedelta(days=21),
        start=T0,
        end=end,
        label_maturity_days=21,
        warmup_days=7,
        boundaries={"train_start": T0, "end": end},
        rows={},
        positives={},
        feature_groups={},
        feature_view={
            "name": "crash_view",
            "version": 1,
            "fingerprint": "f" * 64,
            "definition": {},
        },
        lake_snapshot=7,
    )


def write_training_dataset(workdir: Path) -> None:
    """The next version of the dataset, as the training asset writes it."""
    write_dataset(
        pl.read_parquet(workdir / DATASET_INPUT),
        dataset_info(),
        workdir / "datasets",
        feature_columns=FEATURE_COLUMNS,
        categorical_columns=CATEGORICAL_FEATURES,
        label="is_fraud",
        code_version="crash-trial",
    )


# ---------------------------------------------------------- the inference log

LOG_RECORDS = 30_000
ACK_EVERY = 1_500  # records acknowledged by one flush
ACK_FILE = "acknowledged"
LOG_DIR = "inference_log"


def log_record(number: int) -> dict[str, Any]:
    """Prediction number ``number``, the same every time (its ``logged_at`` included)."""
    return {
        "transaction_id": f"tx{number:07d}",
        "card_id": f"c{number % 997:07d}",
        "merchant_id": f"m{number % 61:05d}",
        "amount": round(10 + (number * 7919 % 100_000) / 100, 2),
        "category": ("grocery", "travel", "digital")[number % 3],
        "channel": ("online", "pos")[number % 2],
        "transaction_time": T0 + timedelta(seconds=4 * number),
        "lat": 48.0 + number % 100 / 1000,
        "lon": 2.0 + number % 77 / 1000,
        "model_name": "fraud_model",
        "model_version": 1 + number // 10_000,
        "model_sha256": "0" * 64,
        "probability": (number * 104_729 % 10_007) / 10_007,
        "latency_ms": 1.0 + number % 13,
        "fallback": number % 50 == 0,
        "unknown_entities": [] if number % 40 else ["merchant"],
        "stale_groups": [],
        "features": {"amount": number % 1000, "tx_count_1h": number % 7, "note": "x" * 200},
        "logged_at": T0 + timedelta(seconds=4 * number, milliseconds=30),
    }


def acknowledged(workdir: Path) -> int:
    """How many records (numbers 0 to n-1) a flush has acknowledged as written."""
    path = workdir / ACK_FILE
    return int(path.read_text()) if path.exists() else 0


def _acknowledge(workdir: Path, count: int) -> None:
    scratch = workdir / f".{ACK_FILE}.tmp"
    scratch.write_text(str(count))
    os.replace(scratch, workdir / ACK_FILE)


def log_predictions(workdir: Path) -> None:
    """A service worker logging predictions, acknowledging each batch once ``flush`` returns
    (what the logger promises is then on disk). Records not acknowledged yet are logged again,
    as a client resends requests that got no answer: a restarted worker resumes after the last
    acknowledged record."""
    logger = InferenceLogger(workdir / LOG_DIR, flush_interval_s=0.05, max_batch=500)
    try:
        for number in range(acknowledged(workdir), LOG_RECORDS):
            logger.log(log_record(number))
            if (number + 1) % ACK_EVERY == 0:
                logger.flush()
                _acknowledge(workdir, number + 1)
    finally:
        logger.close()
    _acknowledge(workdir, LOG_RECORDS)
