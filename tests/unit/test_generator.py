"""The synthetic fraud data generator: determinism, file contracts, labels, bad rows, drift."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from fti_assets.lib.ingest.domain import (
    AGE_BANDS,
    CARD_COLUMNS,
    CATEGORIES,
    CHANNELS,
    FRAUD_LABEL_COLUMNS,
    MAX_AMOUNT,
    MERCHANT_COLUMNS,
    RISK_PROFILES,
    TRANSACTION_COLUMNS,
)
from fti_assets.lib.synthetic.generator import (
    BAD_ROW_KINDS,
    PATTERNS,
    PRODUCER_DEBUG_COLUMN,
    UNKNOWN_CATEGORY,
    GenerationSummary,
    GeneratorConfig,
    generate,
    haversine_km,
)

SMALL = GeneratorConfig(cards=300, merchants=40, days=10, seed=7, fraud_rate=0.02)
POLARS_TYPES = {
    "string": pl.String,
    "float64": pl.Float64,
    "int8": pl.Int8,
    "date": pl.Date,
    "timestamp_utc": pl.Datetime("us", "UTC"),
}


def _days(config: GeneratorConfig) -> list[str]:
    return [(config.start + timedelta(days=d)).isoformat() for d in range(config.days)]


def _hashes(data_dir: Path) -> dict[str, str]:
    return {
        str(p.relative_to(data_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(data_dir.rglob("*"))
        if p.is_file()
    }


def _schema(columns: dict[str, str]) -> dict[str, pl.DataType]:
    return {name: POLARS_TYPES[kind] for name, kind in columns.items()}


def _read_dir(folder: Path) -> pl.DataFrame:
    return pl.concat([pl.read_parquet(p) for p in sorted(folder.glob("*.parquet"))])


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, GenerationSummary]:
    data_dir = tmp_path_factory.mktemp("clean")
    return data_dir, generate(SMALL, data_dir)


@pytest.fixture(scope="module")
def transactions(run: tuple[Path, GenerationSummary]) -> pl.DataFrame:
    return _read_dir(run[0] / "landing" / "transactions")


@pytest.fixture(scope="module")
def oracle(run: tuple[Path, GenerationSummary]) -> pl.DataFrame:
    return pl.read_parquet(run[0] / "oracle" / "transactions_oracle.parquet")


@pytest.fixture(scope="module")
def dirty(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, GenerationSummary]:
    data_dir = tmp_path_factory.mktemp("dirty")
    return data_dir, generate(replace(SMALL, bad_rows=2, days=4), data_dir)


def test_same_config_writes_byte_identical_files(tmp_path: Path) -> None:
    config = replace(SMALL, days=5, bad_rows=1, drift_from=2)
    generate(config, tmp_path / "a")
    generate(config, tmp_path / "b")
    first, second = _hashes(tmp_path / "a"), _hashes(tmp_path / "b")
    world = {k: v for k, v in first.items() if k.startswith("world/")}
    landing = {k: v for k, v in first.items() if k.startswith("landing/")}
    assert len(world) == 2 * config.days + 3  # + the oracle
    assert len(first) == len(world) + len(landing) + 1
    # Every day is released by default: the landing zone is a byte-identical copy of the world.
    assert {k.removeprefix("landing/"): v for k, v in landing.items()} == {
        k.removeprefix("world/"): v for k, v in world.items()
    }
    assert first == second

    generate(replace(config, seed=8), tmp_path / "c")
    other = _hashes(tmp_path / "c")
    day = f"landing/transactions/{config.start.isoformat()}.parquet"
    assert other[day] != first[day]


def test_rerun_into_same_dir_removes_days_of_the_longer_run(tmp_path: Path) -> None:
    generate(replace(SMALL, days=6), tmp_path)
    summary = generate(replace(SMALL, days=3), tmp_path)
    short = replace(SMALL, days=3)
    for folder in ("transactions", "fraud_labels"):
        names = sorted(p.stem for p in (tmp_path / "landing" / folder).glob("*.parquet"))
        assert names == _days(short)
    manifest = json.loads((tmp_path / "landing" / "_manifest.json").read_text())
    assert manifest["end"] == summary.end.isoformat() == _days(short)[-1]


def test_reference_files_have_the_domain_schema_and_values(
    run: tuple[Path, GenerationSummary],
) -> None:
    landing = run[0] / "landing"
    cards = pl.read_parquet(landing / "cards.parquet")
    merchants = pl.read_parquet(landing / "merchants.parquet")
    assert dict(cards.schema) == _schema(CARD_COLUMNS)
    assert dict(merchants.schema) == _schema(MERCHANT_COLUMNS)
    assert cards.height == SMALL.cards and merchants.height == SMALL.merchants
    assert cards["card_id"].str.contains(r"^c\d{7}$").all() and cards["card_id"].is_unique().all()
    assert merchants["merchant_id"].str.contains(r"^m\d{5}$").all()
    assert set(cards["age_band"]) <= set(AGE_BANDS)
    assert (cards["account_open_date"] < SMALL.start).all()
    assert (cards["credit_limit"] > 0).all()
    assert set(merchants["category"]) == set(CATEGORIES)
    assert set(merchants["risk_profile"]) <= set(RISK_PROFILES)
    # Homes cluster around a handful of cities rather than spreading uniformly.
    assert cards.select(pl.col("home_lat").round(0), pl.col("home_lon").round(0)).n_unique() < 20


def test_one_typed_transactions_file_per_day_with_times_inside_that_day(
    run: tuple[Path, GenerationSummary],
) -> None:
    tx_dir = run[0] / "landing" / "transactions"
    assert sorted(p.stem for p in tx_dir.glob("*.parquet")) == _days(SMALL)
    for day in _days(SMALL):
        path = tx_dir / f"{day}.parquet"
        frame = pl.read_parquet(path)
        assert dict(frame.schema) == _schema(TRANSACTION_COLUMNS)
        assert str(pq.read_schema(path).field("transaction_time").type) == "timestamp[us, tz=UTC]"
        assert frame.height > 0
        assert (frame["transaction_time"].dt.date() == date.fromisoformat(day)).all()


def test_transaction_values_are_plausible(
    run: tuple[Path, GenerationSummary], transactions: pl.DataFrame
) -> None:
    landing = run[0] / "landing"
    cards = pl.read_parquet(landing / "cards.parquet")
    merchants = pl.read_parquet(landing / "merchants.parquet")
    assert transactions["transaction_id"].str.contains(r"^t\d{12}$").all()
    assert transactions["transaction_id"].is_unique().all()
    assert transactions.height == run[1].transactions
    assert set(transactions["card_id"]) <= set(cards["card_id"])
    assert set(transactions["category"]) <= set(CATEGORIES)
    assert set(transactions["channel"]) == set(CHANNELS)
    amount = transactions["amount"]
    assert (amount > 0).all() and (amount <= MAX_AMOUNT).all()
    assert ((amount * 100).round(0) - amount * 100).abs().max() < 1e-6
    # A transaction's category is its merchant's; an in-store one happens at the merchant.
    joined = transactions.join(merchants, on="merchant_id", suffix="_m", how="left")
    assert (joined["category"] == joined["category_m"]).all()
    in_store = joined.filter(pl.col("channel") == "in_store")
    assert ((in_store["lat"] == in_store["lat_m"]) & (in_store["lon"] == in_store["lon_m"])).all()
    online_share = (transactions["channel"] == "online").mean()
    assert 0.2 < online_share < 0.4


def test_labels_arrive_one_to_thirty_days_later_in_the_file_of_their_day(
    run: tuple[Path, GenerationSummary], transactions: pl.DataFrame, oracle: pl.DataFrame
) -> None:
    labels_dir = run[0] / "landing" / "fraud_labels"
    assert sorted(p.stem for p in labels_dir.glob("*.parquet")) == _days(SMALL)
    for day in _days(SMALL):
        frame = pl.read_parquet(labels_dir / f"{day}.parquet")
        assert dict(frame.schema) == _schema(FRAUD_LABEL_COLUMNS)
        assert (frame["reported_at"].dt.date() == date.fromisoformat(day)).all()
    # Nothing can be reported on the first day: every delay is at least a day.
    assert pl.read_parquet(labels_dir / f"{SMALL.start.isoformat()}.parquet").height == 0

    labels = _read_dir(labels_dir)
    assert labels.height == run[1].labels_written > 0
    assert labels["transaction_id"].is_unique().all()
    joined = labels.join(transactions, on="transaction_id", how="left").join(
        oracle, on="transaction_id", how="left", suffix="_true"
    )
    assert joined["transaction_time"].null_count() == 0
    delay = joined["reported_at"] - joined["transaction_time"]
    assert (delay >= timedelta(days=1)).all() and (delay <= timedelta(days=30)).all()
    assert (joined["is_fraud"] == joined["is_fraud_true"]).all()
    window_end = datetime.combine(run[1].end + timedelta(days=1), datetime.min.time(), UTC)
    assert (labels["reported_at"] < window_end).all()
    # Fraud not yet reported when the window closes is known only to the oracle.
    fraud_labelled = labels.filter(pl.col("is_fraud") == 1).height
    assert fraud_labelled < run[1].fraud == oracle["is_fraud"].sum()


def test_oracle_holds_true_probability_and_label_of_every_good_transaction(
    run: tuple[Path, GenerationSummary], transactions: pl.DataFrame, oracle: pl.DataFrame
) -> None:
    assert dict(oracle.schema) == {
        "transaction_id": pl.String,
        "fraud_probability": pl.Float64,
        "is_fraud": pl.Int8,
        "pattern": pl.String,
    }
    assert oracle["transaction_id"].sort().equals(transactions["transaction_id"].sort())
    p = oracle["fraud_probability"]
    assert (p > 0).all() and (p < 1).all()
    assert p.mean() == pytest.approx(SMALL.fraud_rate, rel=1e-4)
    assert set(oracle["pattern"]) <= set(PATTERNS) and "stolen_card_burst" in set(oracle["pattern"])
    n = oracle.height
    spread = 4 * math.sqrt(SMALL.fraud_rate * n)
    assert abs(oracle["is_fraud"].sum() - SMALL.fraud_rate * n) < spread


def test_fraud_rate_follows_the_knob(tmp_path: Path) -> None:
    low = generate(replace(SMALL, fraud_rate=0.01), tmp_path / "low")
    high = generate(replace(SMALL, fraud_rate=0.05), tmp_path / "high")
    assert high.fraud / high.transactions > 3 * low.fraud / low.transactions
    assert high.oracle_mean_probability == pytest.approx(0.05, rel=1e-4)


def _velocity_and_distance(data_dir: Path) -> pl.DataFrame:
    """Observable quantities recomputed from the landing files, as a feature pipeline would."""
    landing = data_dir / "landing"
    tx = _read_dir(landing / "transactions").sort("card_id", "transaction_time")
    velocity = (
        tx.rolling(index_column="transaction_time", period="1h", group_by="card_id")
        .agg(pl.col("transaction_id").last(), (pl.len() - 1).alias("count_1h"))
        .drop("card_id", "transaction_time")
    )
    cards = pl.read_parquet(landing / "cards.parquet")
    tx = tx.join(velocity, on="transaction_id").join(cards, on="card_id")
    distance = haversine_km(
        tx["lat"].to_numpy(),
        tx["lon"].to_numpy(),
        tx["home_lat"].to_numpy(),
        tx["home_lon"].to_numpy(),
    )
    return tx.with_columns(distance_km=distance)


def test_fraud_is_learnable_from_observable_quantities(
    run: tuple[Path, GenerationSummary], oracle: pl.DataFrame
) -> None:
    tx = _velocity_and_distance(run[0]).join(oracle, on="transaction_id")
    means = tx.group_by("is_fraud").agg(
        pl.col("count_1h").mean(),
        pl.col("distance_km").mean(),
        pl.col("fraud_probability").mean(),
    )
    fraud = means.filter(pl.col("is_fraud") == 1).row(0, named=True)
    genuine = means.filter(pl.col("is_fraud") == 0).row(0, named=True)
    assert fraud["count_1h"] > 3 * genuine["count_1h"]
    assert fraud["distance_km"] > 3 * genuine["distance_km"]
    assert fraud["fraud_probability"] > 10 * genuine["fraud_probability"]


def _defects(frame: pl.DataFrame, cards: set[str], merchants: set[str]) -> pl.DataFrame:
    amount = pl.col("amount")
    card, merchant = pl.col("card_id"), pl.col("merchant_id")
    time = pl.col("transaction_time")
    return frame.with_columns(
        null_transaction_id=pl.col("transaction_id").is_null(),
        null_card_id=card.is_null(),
        negative_amount=amount < 0,
        nonfinite_amount=~amount.is_finite(),
        absurd_amount=amount.is_finite() & (amount > MAX_AMOUNT),
        unknown_card=card.is_not_null() & ~card.is_in(sorted(cards)),
        unknown_merchant=~merchant.is_in(sorted(merchants)),
        future_timestamp=time.str.slice(0, 4).cast(pl.Int32) >= 2100,
        unknown_category=~pl.col("category").is_in(CATEGORIES),
        naive_timestamp=~time.str.ends_with("+00:00"),
    )


def test_bad_rows_of_each_kind_are_injected_and_recorded_per_day(
    dirty: tuple[Path, GenerationSummary],
) -> None:
    data_dir, summary = dirty
    landing = data_dir / "landing"
    config = replace(SMALL, bad_rows=2, days=4)
    cards = set(pl.read_parquet(landing / "cards.parquet")["card_id"])
    merchants = set(pl.read_parquet(landing / "merchants.parquet")["merchant_id"])
    manifest = json.loads((landing / "_manifest.json").read_text())
    oracle = pl.read_parquet(data_dir / "oracle" / "transactions_oracle.parquet")
    single_kinds = [k for k in BAD_ROW_KINDS if k != "duplicate_transaction_id"]
    amounts = []
    good_total = 0
    for day in _days(config):
        frame = pl.read_parquet(landing / "transactions" / f"{day}.parquet")
        assert frame.columns == [*TRANSACTION_COLUMNS, PRODUCER_DEBUG_COLUMN]
        assert frame.schema["transaction_time"] == pl.String
        assert manifest["bad_rows"][day] == dict.fromkeys(BAD_ROW_KINDS, 2)
        flagged = _defects(frame, cards, merchants)
        n_defects = flagged.select(pl.sum_horizontal(single_kinds)).to_series()
        assert n_defects.max() == 1  # each bad row has exactly one defect
        for kind in single_kinds:
            assert flagged[kind].sum() == 2, kind
        ids = frame["transaction_id"].drop_nulls()
        duplicated = frame.filter(pl.col("transaction_id").is_in(ids.filter(ids.is_duplicated())))
        assert duplicated.height == 4 and duplicated.unique().height == 2  # exact copies
        assert (
            n_defects.filter(frame["transaction_id"].is_in(duplicated["transaction_id"])) == 0
        ).all()
        good = flagged.filter(n_defects == 0).unique("transaction_id")
        good_total += good.height
        assert (
            good["transaction_time"].str.to_datetime(time_zone="UTC").dt.date()
            == date.fromisoformat(day)
        ).all()
        amounts.append(frame.filter(~pl.col("amount").is_finite())["amount"])
    nonfinite = pl.concat(amounts)
    assert nonfinite.is_nan().any() and nonfinite.is_infinite().any()
    assert frame.filter(pl.col("category") == UNKNOWN_CATEGORY).height == 2
    # Bad rows are neither in the oracle nor labelled.
    assert good_total == oracle.height == summary.transactions
    assert summary.bad_rows == dict.fromkeys(BAD_ROW_KINDS, 2 * config.days)
    labels = _read_dir(landing / "fraud_labels")
    assert labels["transaction_id"].is_in(oracle["transaction_id"]).all()


def test_drift_changes_data_only_from_the_drift_day(tmp_path: Path) -> None:
    base = replace(SMALL, days=8)
    drift_day = 4
    generate(base, tmp_path / "base")
    generate(replace(base, drift_from=drift_day), tmp_path / "drift")
    before, after = _hashes(tmp_path / "base"), _hashes(tmp_path / "drift")
    for i, day in enumerate(_days(base)):
        for folder in ("transactions", "fraud_labels"):
            name = f"landing/{folder}/{day}.parquet"
            if i < drift_day:
                assert before[name] == after[name], name
            elif folder == "transactions":
                assert before[name] != after[name], name

    def stats(data_dir: Path) -> pl.DataFrame:
        tx = _read_dir(data_dir / "landing" / "transactions").join(
            pl.read_parquet(data_dir / "oracle" / "transactions_oracle.parquet"),
            on="transaction_id",
        )
        return (
            tx.group_by(
                drifted=pl.col("transaction_time").dt.date() >= base.start + timedelta(drift_day)
            )
            .agg(
                online=(pl.col("channel") == "online").mean(),
                median_amount=pl.col("amount").filter(pl.col("amount") >= 5).median(),
                card_testing=(pl.col("pattern") == "card_testing").sum(),
            )
            .sort("drifted")
        )

    base_stats, drift_stats = stats(tmp_path / "base"), stats(tmp_path / "drift")
    assert base_stats.row(0) == drift_stats.row(0)
    pre, post = drift_stats.row(0, named=True), drift_stats.row(1, named=True)
    no_drift_post = base_stats.row(1, named=True)
    assert post["online"] > 0.5 > 0.4 > no_drift_post["online"]
    assert post["median_amount"] > 1.25 * no_drift_post["median_amount"]
    assert pre["card_testing"] == 0 == no_drift_post["card_testing"] < post["card_testing"]


def _without_ids(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.drop("transaction_id").sort("transaction_time", "card_id", "amount")


def test_drift_kinds_split_covariate_shift_from_the_new_fraud_pattern(tmp_path: Path) -> None:
    base = replace(SMALL, days=6)
    drift_day = 3
    generate(base, tmp_path / "base")
    for kind in ("covariate", "concept"):
        generate(replace(base, drift_from=drift_day, drift_kind=kind), tmp_path / kind)

    def after_drift(data_dir: Path) -> pl.DataFrame:
        tx = _read_dir(data_dir / "landing" / "transactions").join(
            pl.read_parquet(data_dir / "oracle" / "transactions_oracle.parquet"),
            on="transaction_id",
        )
        return tx.filter(pl.col("transaction_time").dt.date() >= base.start + timedelta(drift_day))

    plain = after_drift(tmp_path / "base")
    covariate = after_drift(tmp_path / "covariate")
    concept = after_drift(tmp_path / "concept")
    # covariate: amounts up, channel mix online, and no new fraud pattern
    assert covariate.filter(pl.col("pattern") == "card_testing").height == 0
    assert (
        (covariate["channel"] == "online").mean()
        > 0.5
        > 0.4
        > (plain["channel"] == "online").mean()
    )
    assert covariate["amount"].median() > 1.25 * plain["amount"].median()
    # concept: card testing appears, everything else is the transactions of the plain world
    testing = concept.filter(pl.col("pattern") == "card_testing")
    assert testing.height > 0
    assert (
        _without_ids(concept.filter(pl.col("pattern") != "card_testing"))
        .select("card_id", "merchant_id", "amount", "channel", "transaction_time")
        .equals(
            _without_ids(plain).select(
                "card_id", "merchant_id", "amount", "channel", "transaction_time"
            )
        )
    )
    manifest = json.loads((tmp_path / "concept" / "world" / "_manifest.json").read_text())
    assert manifest["drift"] == {
        "kind": "concept",
        "from_day_index": drift_day,
        "from": (base.start + timedelta(drift_day)).isoformat(),
    }


def test_unknown_drift_kind_is_rejected_naming_the_kinds() -> None:
    with pytest.raises(ValueError, match=r"drift_kind='label'.*covariate"):
        GeneratorConfig(drift_from=1, drift_kind="label")


def test_card_testing_is_tiny_online_digital_goods_with_high_fraud_probability(
    tmp_path: Path,
) -> None:
    generate(replace(SMALL, drift_from=0, days=4), tmp_path)
    tx = _read_dir(tmp_path / "landing" / "transactions").join(
        pl.read_parquet(tmp_path / "oracle" / "transactions_oracle.parquet"), on="transaction_id"
    )
    testing = tx.filter(pl.col("pattern") == "card_testing")
    assert testing.height > 0
    assert (testing["amount"] < 5).all()
    assert set(testing["channel"]) == {"online"} and set(testing["category"]) == {"digital_goods"}
    others = tx.filter(pl.col("pattern") == "none")
    assert testing["fraud_probability"].mean() > 20 * others["fraud_probability"].mean()


def test_manifest_describes_the_run(run: tuple[Path, GenerationSummary]) -> None:
    data_dir, summary = run
    manifest = json.loads((data_dir / "landing" / "_manifest.json").read_text())
    assert manifest["start"] == SMALL.start.isoformat() == summary.start.isoformat()
    assert manifest["end"] == (SMALL.start + timedelta(days=SMALL.days - 1)).isoformat()
    assert manifest["config"]["cards"] == SMALL.cards
    assert manifest["config"]["seed"] == SMALL.seed
    assert manifest["counts"]["transactions"] == summary.transactions
    assert manifest["counts"]["fraud"] == summary.fraud
    assert manifest["counts"]["labels_written"] == summary.labels_written
    assert manifest["bad_rows"] == {}
    assert manifest["drift"] is None
    world_and_oracle = [k for k in _hashes(data_dir) if k.startswith(("world/", "oracle/"))]
    assert summary.files == len(world_and_oracle)
    assert summary.released_days == SMALL.days


@pytest.mark.parametrize(
    ("field", "value"),
    [("cards", 0), ("merchants", 3), ("days", 0), ("fraud_rate", 0.0), ("bad_rows", -1)],
)
def test_invalid_config_is_rejected_with_the_bad_value(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=f"{field}={value}"):
        GeneratorConfig(**{field: value})


def test_haversine_matches_a_known_distance() -> None:
    # New York to Los Angeles is about 3940 km.
    km = haversine_km(np.array([40.71]), np.array([-74.01]), np.array([34.05]), np.array([-118.24]))
    assert km[0] == pytest.approx(3940, rel=0.01)
