"""Predictor overhead over raw LightGBM: single-row latency and batch throughput.

* ``predict_one`` on a dict row vs ``Booster.predict`` on a pre-built 1×n array of the same row
  (calls interleaved so that machine noise hits both alike); goal p99 ≤ 1.5× raw.
* ``Predictor.predict`` on a Polars frame (validation + encoding + scoring) vs
  ``Booster.predict`` on the pre-built float64 matrix; goal throughput ≥ 0.8× raw.

Same model for both: 200 trees (50 at quick scale) trained on synthetic fraud-like data with
10 numeric and 3 categorical features.

    python -m benchmarks.bench_predictor --scale quick|full
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from benchmarks.common import Section, best_of, cli_main, percentiles
from fti_assets.lib.registry.predictor import Predictor
from fti_assets.lib.training.train import TrainParams, train_model

SCALES = {
    "quick": {"train_rows": 5_000, "calls": 300, "batch_rows": 20_000, "trees": 50},
    "full": {"train_rows": 50_000, "calls": 5_000, "batch_rows": 1_000_000, "trees": 200},
}
NUMERIC = [f"num_{i}" for i in range(10)]
CATEGORICAL = ["merchant_category", "channel", "country"]
LEVELS = {
    "merchant_category": [f"mcc_{i}" for i in range(30)],
    "channel": ["web", "pos", "app", "moto"],
    "country": [f"c{i}" for i in range(12)],
}


def synthetic_frame(n: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    columns: dict[str, np.ndarray] = {name: rng.normal(size=n) for name in NUMERIC}
    for name, levels in LEVELS.items():
        columns[name] = rng.choice(levels, n)
    logit = (
        -3.5
        + columns["num_0"]
        + 0.5 * columns["num_1"] * columns["num_2"]
        + 1.2 * (columns["merchant_category"] == "mcc_7")
        + 0.6 * (columns["channel"] == "web")
    )
    columns["is_fraud"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    frame = pl.DataFrame(columns)
    every = pl.int_range(pl.len())
    return frame.with_columns(  # a few nulls, as real features have
        pl.when(every % 53 == 0).then(None).otherwise(pl.col("num_3")).alias("num_3"),
        pl.when(every % 61 == 0).then(None).otherwise(pl.col("country")).alias("country"),
    )


def _single_row(predictor: Predictor, frame: pl.DataFrame, calls: int) -> Section:
    rows = frame.head(1000).to_dicts()
    matrices = [predictor.transform.transform(frame.slice(i, 1)) for i in range(len(rows))]
    booster = predictor.booster
    for row, x in zip(rows, matrices, strict=True):  # same answer, or the timing means nothing
        assert predictor.predict_one(row) == booster.predict(x, num_threads=1)[0]
    contenders = {
        "raw Booster.predict (1×n array, default threads)": lambda i: booster.predict(matrices[i]),
        "raw Booster.predict (1×n array, num_threads=1)": lambda i: booster.predict(
            matrices[i], num_threads=1
        ),
        "Predictor.predict_one (dict row)": lambda i: predictor.predict_one(rows[i]),
    }
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for call in range(calls + 50):
        i = call % len(rows)
        for name, fn in contenders.items():
            t0 = time.perf_counter()
            fn(i)
            elapsed = time.perf_counter() - t0
            if call >= 50:  # warm-up
                samples[name].append(elapsed)
    stats = {name: percentiles(s) for name, s in samples.items()}
    baseline = stats["raw Booster.predict (1×n array, default threads)"]
    section = Section(
        f"Predictor.predict_one vs raw Booster.predict, single row ({calls:,} calls each)",
        ["contender", "p50 µs", "p99 µs", "mean µs", "p50 ratio", "p99 ratio"],
    )
    for name, s in stats.items():
        section.add(
            name,
            s["p50_us"],
            s["p99_us"],
            s["mean_us"],
            s["p50_us"] / baseline["p50_us"],
            s["p99_us"] / baseline["p99_us"],
        )
    section.notes.append(
        f"{booster.num_trees()} trees, {len(predictor.feature_names)} features "
        f"({len(predictor.categorical)} categorical); ratios against the default-threads raw "
        "call; goal p99 ratio ≤ 1.5. predict_one uses num_threads=1 (one row cannot be split)."
    )
    return section


def _batch(predictor: Predictor, frame: pl.DataFrame) -> Section:
    matrix = predictor.transform.transform(frame)
    booster = predictor.booster
    raw_times, our_times = [], []
    for _ in range(3):  # interleaved, so that load from other processes hits both alike
        raw_s, raw = best_of(lambda: booster.predict(matrix), repeat=1)
        ours_s, ours = best_of(lambda: predictor.predict(frame), repeat=1)
        raw_times.append(raw_s)
        our_times.append(ours_s)
    np.testing.assert_array_equal(ours, raw)
    raw_s, ours_s = min(raw_times), min(our_times)
    transform_s, _ = best_of(lambda: predictor.transform.transform(frame))
    n = frame.height
    section = Section(
        f"Predictor.predict vs raw Booster.predict, batch of {n:,} rows",
        ["contender", "seconds", "rows/s", "throughput ratio"],
    )
    section.add("raw Booster.predict (pre-built float64 matrix)", raw_s, n / raw_s, 1.0)
    section.add("Predictor.predict (Polars frame)", ours_s, n / ours_s, raw_s / ours_s)
    section.add("  of which FeatureTransform.transform", transform_s, n / transform_s, "")
    section.notes.append(
        "Best of 3 interleaved runs; both use LightGBM's default thread count. Goal throughput "
        "ratio ≥ 0.8."
    )
    section.notes.append(
        "Scoring is the same LightGBM call on an equal matrix, so Predictor's only extra work is "
        f"the transform: ratio implied by it = raw / (raw + transform) = "
        f"{raw_s / (raw_s + transform_s):.3f} (robust to load from other processes, unlike the "
        "measured ratio)."
    )
    return section


def run(scale: str) -> list[Section]:
    config = SCALES[scale]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "model"
        train_model(
            synthetic_frame(config["train_rows"], 0),
            synthetic_frame(config["train_rows"] // 4, 1),
            "is_fraud",
            NUMERIC,
            CATEGORICAL,
            TrainParams(n_estimators=config["trees"], early_stopping_rounds=None, num_threads=2),
            out,
        )
        predictor = Predictor.load(out)
    scoring = synthetic_frame(config["batch_rows"], 2)
    return [_single_row(predictor, scoring, config["calls"]), _batch(predictor, scoring)]


if __name__ == "__main__":
    cli_main(run, __doc__, SCALES)
