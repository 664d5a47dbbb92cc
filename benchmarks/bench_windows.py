"""Windowed per-card features: the Polars batch path against pandas and other Polars constructs.

Data (generated with numpy, written once to Parquet in a temp dir): N transactions of 100k cards
over 90 days, card activity gamma-distributed (a few busy cards, many quiet ones), times at whole
seconds (so a few cards have ties). Every contender runs in a fresh spawned process that reads
the Parquet file itself and builds all the declared features; its peak RSS covers reading plus
computing. Times are measured inside the child (wall, and CPU seconds of the whole process: the
CPU figure helps to read a run on a busy machine).

Two sections:

1. End to end, ``build_card_transaction_features`` (read, sort, windows, gap, last values, ties)
   against the obvious alternative in pandas, ``groupby("card_id").rolling(<offset>)`` per
   declared feature (:func:`build_card_transaction_features_pandas`).
2. The Polars constructs that could compute the window columns, all built from the same
   declaration, timed alone on a frame already sorted in memory: the library's ``rolling`` over
   one Int64 key that lays the cards end to end (``window_columns``); ``rolling_*_by`` on that
   key; ``rolling(index_column=time, group_by="card_id")``; ``rolling_*_by(time).over(card_id)``.
   This is the measurement behind the library's choice.

Run alone: ``python -m benchmarks.bench_windows --scale quick``.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl

from benchmarks.common import Section, cli_main, in_fresh_process, mib
from fti_assets.lib.features.windows import (
    CARD_ID,
    CARD_LAST_VALUE_FEATURES,
    CARD_WINDOW_FEATURES,
    EVENT_TIME,
    LOOKBACK,
    PREV_TX_GAP_SECONDS,
    TRANSACTION_ID,
    TRANSACTION_TIME,
    WindowFeature,
    build_card_transaction_features,
    window_columns,
)
from fti_assets.lib.ingest.domain import CATEGORIES, CHANNELS

N_CARDS = 100_000
DAYS = 90
START = np.datetime64("2026-06-01T00:00:00", "us").astype(np.int64)


@dataclass(frozen=True)
class Plan:
    n_transactions: int
    n_cards: int
    repeats: int


PLANS = {
    "quick": Plan(n_transactions=200_000, n_cards=2_000, repeats=1),
    "full": Plan(n_transactions=10_000_000, n_cards=N_CARDS, repeats=2),
}


# --- data ------------------------------------------------------------------------------------


def generate_transactions(n_transactions: int, n_cards: int, seed: int) -> pl.DataFrame:
    """Synthetic transactions in the landing layout (TRANSACTION_COLUMNS), in time order."""
    rng = np.random.default_rng(seed)
    activity = rng.gamma(1.0, 1.0, n_cards)
    cards = rng.choice(n_cards, size=n_transactions, p=activity / activity.sum())
    seconds = np.sort(rng.integers(0, DAYS * 86_400, n_transactions))
    ids = pl.Series(np.arange(n_transactions)).cast(pl.String).str.zfill(10)
    return pl.DataFrame(
        {
            "transaction_id": "tx_" + ids,
            "card_id": "card_" + pl.Series(cards).cast(pl.String).str.zfill(6),
            "merchant_id": "m_"
            + pl.Series(rng.integers(0, 20_000, n_transactions)).cast(pl.String),
            "amount": np.round(rng.lognormal(3.5, 1.0, n_transactions), 2),
            "category": pl.Series(
                np.array(CATEGORIES)[rng.integers(0, len(CATEGORIES), n_transactions)]
            ),
            "channel": pl.Series(
                np.array(CHANNELS)[rng.integers(0, len(CHANNELS), n_transactions)]
            ),
            TRANSACTION_TIME: pl.Series(START + seconds * 1_000_000).cast(pl.Datetime("us", "UTC")),
            "lat": rng.uniform(25.0, 49.0, n_transactions),
            "lon": rng.uniform(-124.0, -67.0, n_transactions),
        }
    )


# --- pandas: the obvious alternative -----------------------------------------------------------


def build_card_transaction_features_pandas(df: pd.DataFrame) -> pd.DataFrame:
    """The same rows as ``build_card_transaction_features`` (no bounds) with pandas.

    ``groupby("card_id").rolling(<time offset>)`` per declared window feature, on the frame sorted
    by (card_id, transaction_time, transaction_id); ties collapse to their last row.
    """
    value_columns = list(
        dict.fromkeys(
            [f.column for f in CARD_WINDOW_FEATURES if f.agg != "count"]
            + [f.column for f in CARD_LAST_VALUE_FEATURES]
        )
    )
    df = df[[CARD_ID, TRANSACTION_TIME, TRANSACTION_ID, *value_columns]].sort_values(
        [CARD_ID, TRANSACTION_TIME, TRANSACTION_ID], kind="stable", ignore_index=True
    )
    by_card = df.assign(_one=1.0).set_index(TRANSACTION_TIME).groupby(CARD_ID, sort=True)
    out = pd.DataFrame({CARD_ID: df[CARD_ID], EVENT_TIME: df[TRANSACTION_TIME]})
    for feature in CARD_WINDOW_FEATURES:
        # Groups come out sorted by card_id, rows in time order: the frame's own order.
        out[feature.name] = _pandas_window(by_card, feature).to_numpy()
    time = df[TRANSACTION_TIME]
    gap = (time - time.shift(1)).where(df[CARD_ID] == df[CARD_ID].shift(1))
    out[PREV_TX_GAP_SECONDS] = (gap / pd.Timedelta(seconds=1)).where(gap < LOOKBACK)
    for feature in CARD_LAST_VALUE_FEATURES:
        out[feature.name] = df[feature.column]
    last_of_instant = ~df.duplicated([CARD_ID, TRANSACTION_TIME], keep="last")
    return out[last_of_instant].reset_index(drop=True)


def _pandas_window(by_card: pd.api.typing.DataFrameGroupBy, feature: WindowFeature) -> pd.Series:
    window = pd.Timedelta(feature.window)
    if feature.agg == "count":
        return by_card["_one"].rolling(window, closed="right").sum().astype("int64")
    rolling = by_card[feature.column].rolling(window, closed="right")
    return getattr(rolling, feature.agg)()


# --- Polars constructs for the window columns, built from the same declaration ----------------


def _count_or_column(feature: WindowFeature, by: str) -> pl.Expr:
    if feature.agg == "count":
        return pl.col(by).is_not_null().cast(pl.Int64)
    return pl.col(feature.column)


def windows_over(df: pl.DataFrame) -> pl.DataFrame:
    """``rolling_*_by`` on the time column inside ``.over("card_id")``."""
    exprs = []
    for f in CARD_WINDOW_FEATURES:
        agg = "sum" if f.agg == "count" else f.agg
        values = _count_or_column(f, TRANSACTION_TIME)
        expr = getattr(values, f"rolling_{agg}_by")(TRANSACTION_TIME, f.window)
        exprs.append(expr.over(CARD_ID).alias(f.name))
    return df.lazy().select(exprs).collect()


def windows_rolling_group_by(df: pl.DataFrame) -> pl.DataFrame:
    """``rolling(index_column=time, group_by=card_id)``, one per window length, stacked."""
    parts = []
    for window in sorted({f.window for f in CARD_WINDOW_FEATURES}):
        aggs = [
            (
                pl.len().cast(pl.Int64) if f.agg == "count" else getattr(pl.col(f.column), f.agg)()
            ).alias(f.name)
            for f in CARD_WINDOW_FEATURES
            if f.window == window
        ]
        rolling = df.lazy().rolling(index_column=TRANSACTION_TIME, period=window, group_by=CARD_ID)
        parts.append(rolling.agg(aggs))
    keys = parts[0].select(CARD_ID, TRANSACTION_TIME)
    stacked = pl.concat(
        [keys, *(p.drop(CARD_ID, TRANSACTION_TIME) for p in parts)], how="horizontal"
    )
    out = stacked.collect()
    # With group_by, the output order is not documented: check that it is the input's.
    if not out.select(CARD_ID, TRANSACTION_TIME).equals(df.select(CARD_ID, TRANSACTION_TIME)):
        raise RuntimeError("rolling(group_by=card_id) returned rows in another order")
    return out.select(f.name for f in CARD_WINDOW_FEATURES)


def windows_int_key(df: pl.DataFrame) -> pl.DataFrame:
    """``rolling_*_by`` without ``over`` on the library's Int64 key (card rank x stride + time).

    The stride exceeds the time span plus the longest window, so no window reaches another card
    (no chunking: the benchmark's key fits in an Int64).
    """
    micros = pl.col(TRANSACTION_TIME).dt.epoch("us")
    stride = micros.max() - micros.min() + LOOKBACK // timedelta(microseconds=1) + 1
    card = pl.col(CARD_ID)
    rank = (card != card.shift(1)).fill_null(True).cum_sum().cast(pl.Int64)
    exprs = []
    for f in CARD_WINDOW_FEATURES:
        agg = "sum" if f.agg == "count" else f.agg
        size = f"{f.window // timedelta(microseconds=1)}i"
        values = _count_or_column(f, "_key")
        exprs.append(getattr(values, f"rolling_{agg}_by")("_key", size).alias(f.name))
    return (
        df.lazy().with_columns(_key=rank * stride + micros - micros.min()).select(exprs).collect()
    )


# --- children: one contender per fresh process -------------------------------------------------


def _summary(out: pl.DataFrame, **timings: float) -> dict[str, float]:
    sums = out.select(pl.col(f.name).cast(pl.Float64).sum() for f in CARD_WINDOW_FEATURES)
    return {**timings, "rows": out.height, **sums.row(0, named=True)}


def run_construct(path: str, result_path: str, construct: str) -> None:
    """Read and sort (untimed), then time the window columns alone."""
    df = pl.read_parquet(path).sort(CARD_ID, TRANSACTION_TIME, TRANSACTION_ID)
    t0, c0 = time.perf_counter(), time.process_time()
    out = CONSTRUCTS[construct](df)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    Path(result_path).write_text(json.dumps(_summary(out, compute_s=wall, cpu_s=cpu)))


def run_polars(path: str, result_path: str) -> None:
    """The library end to end: lazy scan of the Parquet file, features, one DataFrame."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = build_card_transaction_features(pl.scan_parquet(path))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    Path(result_path).write_text(json.dumps(_summary(out, compute_s=wall, cpu_s=cpu)))


def run_pandas(path: str, result_path: str) -> None:
    """pandas end to end: read the Parquet file, features."""
    t0, c0 = time.perf_counter(), time.process_time()
    df = pd.read_parquet(path)
    out = build_card_transaction_features_pandas(df)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    polars_out = pl.from_pandas(out, nan_to_null=True)
    Path(result_path).write_text(json.dumps(_summary(polars_out, compute_s=wall, cpu_s=cpu)))


LIBRARY_CONSTRUCT = "rolling(index_column=Int64 card+time key) per window length (library)"
CONSTRUCTS: dict[str, Callable[[pl.DataFrame], pl.DataFrame]] = {
    LIBRARY_CONSTRUCT: window_columns,
    "rolling_*_by(Int64 card+time key), no over": windows_int_key,
    "rolling(index_column=time, group_by=card_id) per window length": windows_rolling_group_by,
    "rolling_*_by(time).over(card_id)": windows_over,
}


@dataclass(frozen=True)
class Measure:
    compute_s: float
    cpu_s: float
    peak_mib: float
    summary: dict[str, float]


def measure(fn: Callable[..., None], work: Path, repeats: int, data: Path, *extra: str) -> Measure:
    """Best time of ``fn(data, result_path, *extra)`` over ``repeats`` fresh processes.

    The peak RSS is the largest among them.
    """
    runs = []
    for i in range(repeats):
        result_path = work / f"{fn.__name__}_{i}.json"
        _, peak = in_fresh_process(fn, str(data), str(result_path), *extra)
        runs.append((json.loads(result_path.read_text()), mib(peak)))
    summary = min(runs, key=lambda run: run[0]["compute_s"])[0]
    return Measure(
        compute_s=summary["compute_s"],
        cpu_s=summary["cpu_s"],
        peak_mib=max(peak for _, peak in runs),
        summary=summary,
    )


def _check_agreement(results: dict[str, Measure], section: Section) -> None:
    names = ["rows", *(f.name for f in CARD_WINDOW_FEATURES)]
    first = next(iter(results.values())).summary
    for name, m in results.items():
        for key in names:
            if not math.isclose(m.summary[key], first[key], rel_tol=1e-9, abs_tol=1e-6):
                raise RuntimeError(f"{name} disagrees on {key}: {m.summary[key]} vs {first[key]}")
    section.notes.append(
        f"All contenders agree: {int(first['rows']):,} rows and the same sum of every window "
        "column."
    )


# --- sections --------------------------------------------------------------------------------


def constructs_section(plan: Plan, data: Path, work: Path) -> Section:
    results = {name: measure(run_construct, work, plan.repeats, data, name) for name in CONSTRUCTS}
    base = results[LIBRARY_CONSTRUCT]
    section = Section(
        title=f"Polars constructs for the window columns: {plan.n_transactions:,} transactions",
        columns=[
            "construct",
            "compute s",
            "CPU s",
            "peak RSS MiB",
            "time vs library",
            "CPU vs library",
        ],
    )
    for name, m in results.items():
        section.add(
            name,
            m.compute_s,
            m.cpu_s,
            m.peak_mib,
            m.compute_s / base.compute_s,
            m.cpu_s / base.cpu_s,
        )
    section.notes += [
        f"{len(CARD_WINDOW_FEATURES)} window columns over "
        f"{len({f.window for f in CARD_WINDOW_FEATURES})} window lengths, on a frame already "
        "sorted by (card_id, transaction_time, transaction_id) in memory; reading and sorting are "
        "not timed. Best of "
        f"{plan.repeats} fresh process(es).",
    ]
    _check_agreement(results, section)
    return section


def versus_pandas_section(plan: Plan, data: Path, work: Path) -> Section:
    results = {
        "Polars: build_card_transaction_features (lazy scan)": measure(
            run_polars, work, plan.repeats, data
        ),
        "pandas: groupby(card_id).rolling(offset)": measure(run_pandas, work, 1, data),
    }
    polars_m, pandas_m = results.values()
    section = Section(
        title=f"Card window features end to end: {plan.n_transactions:,} transactions, "
        f"{plan.n_cards:,} cards, {DAYS} days",
        columns=["implementation", "read+compute s", "CPU s", "peak RSS MiB"],
    )
    for name, m in results.items():
        section.add(name, m.compute_s, m.cpu_s, m.peak_mib)
    section.add(
        "ratio pandas / Polars",
        pandas_m.compute_s / polars_m.compute_s,
        pandas_m.cpu_s / polars_m.cpu_s,
        pandas_m.peak_mib / polars_m.peak_mib,
    )
    section.notes += [
        "Both read the same Parquet file and return every declared column (windows, "
        "prev_tx_gap_seconds, last_*), one row per (card_id, event_time); the time covers "
        "reading the file.",
        f"Polars: best of {plan.repeats} fresh process(es); pandas: one.",
    ]
    _check_agreement(results, section)
    return section


def run(scale: str) -> list[Section]:
    plan = PLANS[scale]
    with tempfile.TemporaryDirectory(prefix="bench_windows_") as tmp:
        work = Path(tmp)
        data = work / "transactions.parquet"
        generate_transactions(plan.n_transactions, plan.n_cards, seed=7).write_parquet(data)
        return [versus_pandas_section(plan, data, work), constructs_section(plan, data, work)]


if __name__ == "__main__":
    cli_main(run, __doc__, PLANS)
