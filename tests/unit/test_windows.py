"""Windowed per-card features: the Polars batch path against the exact streaming reference."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from benchmarks.bench_windows import build_card_transaction_features_pandas
from fti_assets.lib.features import windows
from fti_assets.lib.features.windows import (
    CARD_LAST_VALUE_FEATURES,
    CARD_WINDOW_FEATURES,
    LOOKBACK,
    CardWindowState,
    build_card_transaction_features,
    card_transaction_features_schema,
    card_window_feature_columns,
    card_window_nullable_features,
    stream_card_transaction_features,
)

T0 = datetime(2026, 9, 1, tzinfo=UTC)
US = timedelta(microseconds=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
# Gaps between a card's consecutive transactions: ties, window edges hit exactly and missed by
# one microsecond, half hours that add up to edges, and irregular ones.
EDGE_GAPS = [
    timedelta(0),
    US,
    HOUR,
    HOUR - US,
    HOUR + US,
    HOUR / 2,
    DAY,
    DAY - US,
    7 * DAY,
    LOOKBACK,
    LOOKBACK - US,
    LOOKBACK + US,
]
TOLERANCE = {"check_exact": False, "rel_tol": 1e-9, "abs_tol": 1e-6}


def tx(card: str, tx_id: str, time: datetime, amount: float = 10.0, **extra: object) -> dict:
    row = {
        "transaction_id": tx_id,
        "card_id": card,
        "merchant_id": "m1",
        "amount": amount,
        "category": "grocery",
        "channel": "online",
        "transaction_time": time,
        "lat": 40.0,
        "lon": -70.0,
    }
    return row | extra


def frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={
            "transaction_id": pl.String,
            "card_id": pl.String,
            "merchant_id": pl.String,
            "amount": pl.Float64,
            "category": pl.String,
            "channel": pl.String,
            "transaction_time": pl.Datetime("us", "UTC"),
            "lat": pl.Float64,
            "lon": pl.Float64,
        },
    )


def random_transactions(seed: int, n_cards: int = 6, per_card: int = 60) -> pl.DataFrame:
    rng = random.Random(seed)
    rows = []
    for c in range(n_cards):
        time = T0 + timedelta(seconds=rng.randrange(86_400))
        for i in range(rng.randrange(1, per_card)):
            if rng.random() < 0.5:
                time += rng.choice(EDGE_GAPS)
            else:
                time += timedelta(microseconds=rng.randrange(1, 3 * 86_400 * 10**6))
            # Ids whose order differs from time order, so the tie rule is really exercised.
            tx_id = f"tx_{rng.randrange(1000):03d}_{c}_{i}"
            amount = rng.choice([5.0, 5.0, round(rng.lognormvariate(3.5, 1.0), 2)])
            rows.append(
                tx(
                    f"card_{c}",
                    tx_id,
                    time,
                    amount,
                    channel=rng.choice(["online", "in_store"]),
                    category=rng.choice(["grocery", "travel"]),
                    lat=rng.uniform(-90, 90),
                    lon=rng.uniform(-180, 180),
                )
            )
    rng.shuffle(rows)
    return frame(rows)


def reference(transactions: pl.DataFrame) -> pl.DataFrame:
    return stream_card_transaction_features(transactions.iter_rows(named=True))


@pytest.mark.parametrize("seed", range(4))
def test_batch_equals_streaming_reference_on_random_frames(seed: int) -> None:
    transactions = random_transactions(seed)
    batch = build_card_transaction_features(transactions)
    assert_frame_equal(batch, reference(transactions), **TOLERANCE)
    # The frames really contain what the test is about.
    assert transactions.select(
        pl.struct("card_id", "transaction_time").is_duplicated().any()
    ).item()
    assert batch["prev_tx_gap_seconds"].null_count() > transactions["card_id"].n_unique()


def test_window_is_half_open_at_its_edges() -> None:
    rows = [
        tx("a", "1", T0, 1.0),
        tx("a", "2", T0 + HOUR, 2.0),  # the 1 h window no longer holds tx 1
        tx("a", "3", T0 + 2 * HOUR - US, 4.0),  # ... but still holds tx 2, one microsecond inside
        tx("a", "4", T0 + DAY, 8.0),  # the 24 h window no longer holds tx 1
        tx("a", "5", T0 + DAY + LOOKBACK, 16.0),  # 30 days after tx 4: a fresh start
    ]
    out = build_card_transaction_features(frame(rows))
    assert out["tx_count_1h"].to_list() == [1, 1, 2, 1, 1]
    assert out["tx_amount_1h"].to_list() == [1.0, 2.0, 6.0, 8.0, 16.0]
    assert out["tx_count_24h"].to_list() == [1, 2, 3, 3, 1]
    assert out["tx_amount_24h"].to_list() == [1.0, 3.0, 7.0, 14.0, 16.0]
    assert out["amount_max_24h"].to_list() == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert out["tx_count_30d"].to_list() == [1, 2, 3, 4, 1]
    gaps = out["prev_tx_gap_seconds"].to_list()
    assert gaps[0] is None and gaps[4] is None  # first transaction; previous one 30 days back
    assert gaps[1:4] == pytest.approx([3600.0, 3599.999999, 79200.000001], rel=1e-12)
    assert out["amount_std_30d"][0] is None
    assert out["amount_std_30d"][1] == pytest.approx(0.7071067811865476)
    assert out["amount_std_30d"][4] is None


def test_transactions_at_one_instant_give_one_row() -> None:
    rows = [
        tx("a", "tx_09", T0, 1.0),
        tx("a", "tx_10", T0 + HOUR, 2.0, channel="in_store"),
        tx("a", "tx_02", T0 + HOUR, 4.0, channel="online"),
        tx("a", "tx_11", T0 + HOUR, 8.0, channel="online"),
    ]
    out = build_card_transaction_features(frame(rows))
    assert out.select("event_time", "tx_count_1h", "tx_amount_1h").rows() == [
        (T0, 1, 1.0),
        (T0 + HOUR, 3, 14.0),
    ]
    # The state is that after the largest transaction_id of the instant, tx_11.
    assert out["last_amount"].to_list() == [1.0, 8.0]
    assert out["prev_tx_gap_seconds"].to_list() == [None, 0.0]
    assert out["amount_max_24h"][1] == 8.0


@pytest.mark.parametrize("seed", range(2))
def test_card_time_pairs_are_unique(seed: int) -> None:
    out = build_card_transaction_features(random_transactions(seed, n_cards=20))
    assert not out.select(pl.struct("card_id", "event_time").is_duplicated().any()).item()
    assert out.equals(out.sort("card_id", "event_time"))


def test_pandas_implementation_equals_polars() -> None:
    transactions = random_transactions(11, n_cards=10)
    expected = build_card_transaction_features(transactions)
    pandas_out = build_card_transaction_features_pandas(transactions.to_pandas())
    got = pl.from_pandas(pandas_out, nan_to_null=True).cast(dict(expected.schema))
    assert_frame_equal(got, expected, **TOLERANCE)


@pytest.mark.parametrize("seed", range(3))
def test_incremental_build_equals_full_build(seed: int) -> None:
    transactions = random_transactions(seed, n_cards=8)
    full = build_card_transaction_features(transactions)
    times = full["event_time"].sort()
    start, end = times[len(times) // 3], times[2 * len(times) // 3]
    history = transactions.filter(pl.col("transaction_time") >= start - LOOKBACK)
    assert history.height < transactions.height  # the build really lacks older history
    incremental = build_card_transaction_features(history, start=start, end=end)
    expected = full.filter(pl.col("event_time").is_between(start, end, closed="left"))
    assert incremental.height > 0
    assert_frame_equal(incremental, expected)


def test_partitions_add_up_to_the_full_build() -> None:
    transactions = random_transactions(5, n_cards=8)
    full = build_card_transaction_features(transactions)
    edges = [T0 + k * 10 * DAY for k in range(1, 30)]
    parts = [
        build_card_transaction_features(transactions, start=lo, end=hi)
        for lo, hi in zip([None, *edges], [*edges, None], strict=True)
    ]
    assert_frame_equal(pl.concat(parts).sort("card_id", "event_time"), full)


def test_many_cards_split_in_chunks_give_the_same_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    transactions = random_transactions(3, n_cards=9)
    expected = build_card_transaction_features(transactions)
    span = transactions["transaction_time"].max() - transactions["transaction_time"].min()
    # Room for two cards per chunk on the internal key: five chunks for nine cards.
    monkeypatch.setattr(windows, "_MAX_KEY", 2 * ((span + LOOKBACK) // US + 1))
    assert_frame_equal(build_card_transaction_features(transactions), expected)


def test_lazy_input_gives_the_same_rows() -> None:
    transactions = random_transactions(7)
    assert_frame_equal(
        build_card_transaction_features(transactions.lazy()),
        build_card_transaction_features(transactions),
    )


def test_empty_input_gives_an_empty_typed_frame() -> None:
    out = build_card_transaction_features(frame([]).lazy(), start=T0, end=T0 + DAY)
    assert out.is_empty()
    assert out.schema == card_transaction_features_schema()


def test_output_columns_and_dtypes_come_from_the_declaration() -> None:
    out = build_card_transaction_features(random_transactions(1))
    declared = card_window_feature_columns()
    assert out.columns == ["card_id", "event_time", *(name for name, _, _ in declared)]
    assert [name for name, _, _ in declared[: len(CARD_WINDOW_FEATURES)]] == [
        f.name for f in CARD_WINDOW_FEATURES
    ]
    dtypes = {"int64": pl.Int64, "float64": pl.Float64, "string": pl.String}
    assert [out.schema[name] for name, _, _ in declared] == [
        dtypes[dtype] for _, dtype, _ in declared
    ]
    assert all(description for _, _, description in declared)
    assert LOOKBACK == timedelta(days=30)
    # Columns declared non-nullable never are (the feature group contract checks this).
    nullable = card_window_nullable_features()
    assert nullable == {"amount_std_30d", "prev_tx_gap_seconds"}
    assert out.select(pl.all().exclude(*nullable).null_count().sum()).sum_horizontal().item() == 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"agg": "median"}, "agg 'median'"),
        ({"window": timedelta(0)}, "positive"),
        ({"column": "channel"}, "float64"),
    ],
)
def test_a_bad_declaration_is_refused(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        replace(CARD_WINDOW_FEATURES[1], **change)


def test_bad_inputs_are_refused_with_a_clear_message() -> None:
    transactions = random_transactions(0)
    with pytest.raises(ValueError, match="naive"):
        build_card_transaction_features(transactions, start=datetime(2026, 9, 1))
    with pytest.raises(ValueError, match="lack the column"):
        build_card_transaction_features(transactions.drop("lat"))
    naive = transactions.with_columns(pl.col("transaction_time").dt.replace_time_zone(None))
    with pytest.raises(ValueError, match="UTC Datetime"):
        build_card_transaction_features(naive)
    with pytest.raises(ValueError, match="not before"):
        build_card_transaction_features(transactions, start=T0 + DAY, end=T0)


def test_streaming_state_returns_the_batch_row_after_each_event() -> None:
    transactions = random_transactions(2, n_cards=1, per_card=80).sort(
        "transaction_time", "transaction_id"
    )
    batch = build_card_transaction_features(transactions)
    state = CardWindowState("card_0")
    emitted = [state.update(row) for row in transactions.iter_rows(named=True)]
    # What the online store holds after each event; within an instant the last write wins.
    streamed = pl.DataFrame(emitted, schema=card_transaction_features_schema()).unique(
        "event_time", keep="last", maintain_order=True
    )
    assert_frame_equal(streamed, batch, **TOLERANCE)


def test_streaming_state_is_insensitive_to_arrival_order_within_an_instant() -> None:
    rows = [
        tx("a", "tx_1", T0, 1.0),
        tx("a", "tx_3", T0 + HOUR, 3.0),
        tx("a", "tx_2", T0 + HOUR, 2.0),
    ]
    in_order, reversed_tie = CardWindowState("a"), CardWindowState("a")
    for row in rows:
        last_in_order = in_order.update(row)
    for row in [rows[0], rows[2], rows[1]]:
        last_reversed = reversed_tie.update(row)
    assert last_in_order == last_reversed
    assert last_in_order["last_amount"] == 3.0
    assert last_in_order["tx_count_1h"] == 2


def test_streaming_state_refuses_an_older_event_or_another_card() -> None:
    state = CardWindowState("a")
    state.update(tx("a", "tx_1", T0 + HOUR))
    with pytest.raises(ValueError, match="older than the card's latest"):
        state.update(tx("a", "tx_0", T0))
    with pytest.raises(ValueError, match="is for card 'b'"):
        state.update(tx("b", "tx_2", T0 + 2 * HOUR))


def test_last_value_columns_are_those_of_the_latest_transaction() -> None:
    rows = [
        tx("a", "1", T0, 1.0, lat=1.0, lon=2.0, channel="online", category="travel"),
        tx("a", "2", T0 + DAY, 3.0, lat=5.0, lon=6.0, channel="in_store", category="gas"),
    ]
    out = build_card_transaction_features(frame(rows))
    names = [f.name for f in CARD_LAST_VALUE_FEATURES]
    assert out.select(names).row(1) == (3.0, 5.0, 6.0, "in_store", "gas")


def test_cards_beyond_the_internal_key_range_still_get_exact_windows() -> None:
    # 3,000 cards over a century: laid end to end they would overflow an Int64 of microseconds.
    rows = []
    for c in range(3_000):
        first = T0 - timedelta(days=36_500) if c == 0 else T0 + timedelta(seconds=c)
        rows += [
            tx(f"card_{c:04d}", f"{c}a", first, 1.0),
            tx(f"card_{c:04d}", f"{c}b", first + HOUR / 2, float(c)),
        ]
    transactions = frame(rows)
    assert_frame_equal(
        build_card_transaction_features(transactions), reference(transactions), **TOLERANCE
    )
