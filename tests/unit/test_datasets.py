"""Training datasets: labels as known at the cutoff, PIT features, time split, immutable versions.

Most tests use a hand-made offline store (two cards, two merchants, ten transactions, a few
labels) where every expected value can be worked out by hand; one slow test builds a dataset
from generated, ingested data with the real dbt feature groups.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest

from fti_assets.lib.core.settings import LakeConfig
from fti_assets.lib.features.views import FeatureSelection, FeatureView, ResolvedView, resolve
from fti_assets.lib.features.windows import (
    build_card_transaction_features,
    card_window_feature_columns,
)
from fti_assets.lib.store.group_spec import FeatureGroupSpec, FeatureSpec
from fti_assets.lib.store.offline import connect, lake_environment
from fti_assets.lib.training import datasets
from fti_assets.lib.training.datasets import (
    DatasetConfig,
    build_training_frame,
    list_datasets,
    load_dataset,
    write_dataset,
)
from fti_assets.specs.feature_groups import (
    CARD_PROFILE_FEATURES,
    FEATURE_GROUPS,
    MERCHANT_DAILY_FEATURES,
)
from fti_assets.specs.feature_views import CARD_TRANSACTION_CONTEXT, FRAUD_FEATURES, resolved
from fti_assets.specs.labels import FRAUD_LABEL, landed_cutoff

LABEL_REPORTED_AT = "label__reported_at"

UTC_US = pl.Datetime("us", "UTC")


def at(day: int, hour: int = 0, minute: int = 0) -> datetime:
    """An instant in September 2026 (UTC)."""
    return datetime(2026, 9, day, hour, minute, tzinfo=UTC)


# id, card, merchant, time, amount, category, channel, lat, lon
TRANSACTIONS = [
    ("t01", "c1", "m1", at(1, 10), 20.0, "grocery", "in_store", 40.71, -74.00),
    ("t02", "c1", "m1", at(2, 9), 35.0, "grocery", "in_store", 40.72, -74.01),
    ("t03", "c2", "m2", at(2, 12), 12.5, "restaurant", "online", 51.50, -0.12),
    ("t04", "c1", "m2", at(3, 8), 80.0, "restaurant", "online", 40.73, -74.02),
    ("t05", "c2", "m1", at(3, 15), 15.0, "grocery", "in_store", 51.51, -0.13),
    ("t06", "c1", "m1", at(4, 11), 22.0, "grocery", "in_store", 40.70, -74.03),
    ("t07", "c2", "m1", at(5, 10), 640.0, "grocery", "online", 48.85, 2.35),
    ("t08", "c1", "m2", at(6, 9), 18.0, "restaurant", "in_store", 40.71, -74.00),
    ("t09", "c2", "m2", at(7, 13), 900.0, "restaurant", "online", 35.68, 139.69),
    ("t10", "c1", "m1", at(8, 10), 25.0, "grocery", "in_store", 40.71, -74.00),
]
# transaction, is_fraud, reported_at
LABELS = [
    ("t01", 1, at(2, 8)),
    ("t02", 1, at(3, 10)),
    ("t05", 1, at(11, 9)),  # reported after the cutoff: not known yet
    ("t06", 1, at(5, 9)),
    ("t06", 0, at(7, 9)),  # ... then retracted before the cutoff
    ("t07", 0, at(6, 9)),
    ("t07", 1, at(8, 9)),  # ... then confirmed before the cutoff
    ("t09", 1, at(9, 9)),
]
CUTOFF = at(10)
# First day 09-01 + 1 warm-up day = 09-02; cutoff 09-10 - 2 maturity days = 09-08.
ELIGIBLE = ["t02", "t03", "t04", "t05", "t06", "t07", "t08", "t09"]
KNOWN_FRAUD_AT_CUTOFF = {"t02", "t07", "t09"}

CARD_TX = FeatureGroupSpec(
    name="card_transaction_features",
    version=1,
    entity_keys=("card_id",),
    features=tuple(FeatureSpec(n, d, text) for n, d, text in card_window_feature_columns()),
    description="Card state after each transaction (test copy of the lead's spec).",
    source="polars",
)
SMALL_GROUPS = (CARD_TX.name, CARD_PROFILE_FEATURES.name, MERCHANT_DAILY_FEATURES.name)
CATALOG = {**FEATURE_GROUPS, CARD_TX.name: CARD_TX}


def small_view(
    groups: tuple[str, ...] = SMALL_GROUPS, ttl: dict[str, timedelta] | None = None
) -> ResolvedView:
    """A view selecting every feature of ``groups`` (with the fraud view's request and
    on-demand features), resolved against the test catalog."""
    selections = tuple(
        FeatureSelection(g, CATALOG[g].version, tuple(CATALOG[g].feature_names), (ttl or {}).get(g))
        for g in groups
    )
    view = FeatureView(
        "test_view", 1, "test", selections,
        request_features=FRAUD_FEATURES.request_features, on_demand=CARD_TRANSACTION_CONTEXT,
    )  # fmt: skip
    return resolve(view, CATALOG)


VIEW = small_view()


def build(con: duckdb.DuckDBPyConnection, config: DatasetConfig, view: ResolvedView = VIEW):
    return build_training_frame(con, view, FRAUD_LABEL, config)


def small_config(**overrides: object) -> DatasetConfig:
    settings: dict[str, object] = {
        "name": "fraud_training_dataset",
        "cutoff": CUTOFF,
        "warmup_days": 1,
        "label_maturity_days": 2,
        "valid_fraction": 0.25,
        "test_fraction": 0.25,
    }
    settings.update(overrides)
    return DatasetConfig(**settings)  # type: ignore[arg-type]


def transactions_frame() -> pl.DataFrame:
    columns = ["transaction_id", "card_id", "merchant_id", "transaction_time", "amount"]
    columns += ["category", "channel", "lat", "lon"]
    frame = pl.DataFrame(TRANSACTIONS, schema=columns, orient="row")
    return frame.with_columns(
        pl.col("transaction_time").cast(UTC_US),
        pl.col("transaction_time").dt.date().alias("landing_date"),
    )


def labels_frame() -> pl.DataFrame:
    frame = pl.DataFrame(LABELS, schema=["transaction_id", "is_fraud", "reported_at"], orient="row")
    return frame.with_columns(
        pl.col("is_fraud").cast(pl.Int8),
        pl.col("reported_at").cast(UTC_US),
        pl.col("reported_at").dt.date().alias("landing_date"),
    )


def card_profile_frame() -> pl.DataFrame:
    # c2's account opened on 09-03: its first transaction (t03, 09-02) has no profile yet.
    return pl.DataFrame(
        {
            "card_id": ["c1", "c2"],
            "event_time": [datetime(2026, 1, 1, tzinfo=UTC), at(3)],
            "home_lat": [40.71, 51.50],
            "home_lon": [-74.00, -0.12],
            "credit_limit": [5000.0, 2000.0],
            "age_band": ["26-35", "51-65"],
            "account_open_date": [date(2026, 1, 1), date(2026, 9, 3)],
        }
    ).with_columns(pl.col("event_time").cast(UTC_US))


def merchant_daily_frame(*, all_labels: bool = False) -> pl.DataFrame:
    """merchant_daily_features rows for 09-01..09-09, computed the way the dbt model does.

    ``all_labels=True`` is the classic leak: counting every fraud label, whenever it arrived.
    """
    first_fraud_report: dict[str, datetime] = {}
    for tx, is_fraud, reported in LABELS:
        if is_fraud and (tx not in first_fraud_report or reported < first_fraud_report[tx]):
            first_fraud_report[tx] = reported
    rows = []
    for merchant in ("m1", "m2"):
        for d in range(1, 10):
            day = date(2026, 9, d)
            event_time = at(d) + timedelta(days=1)

            def in_window(tx_time: datetime, days: int, day: date = day) -> bool:
                return day - timedelta(days=days - 1) <= tx_time.date() <= day

            month = [t for t in TRANSACTIONS if t[2] == merchant and in_window(t[3], 30)]
            week = [t for t in TRANSACTIONS if t[2] == merchant and in_window(t[3], 7)]
            known = [
                t
                for t in month
                if t[0] in first_fraud_report
                and (all_labels or first_fraud_report[t[0]] < event_time)
            ]
            rows.append(
                {
                    "merchant_id": merchant,
                    "event_time": event_time,
                    "feature_date": day,
                    "tx_count_7d": len(week),
                    "tx_count_30d": len(month),
                    "amount_mean_30d": sum(t[4] for t in month) / len(month) if month else None,
                    "known_fraud_30d": len(known),
                    "fraud_rate_30d": len(known) / len(month) if month else None,
                }
            )
    return pl.DataFrame(rows).with_columns(pl.col("event_time").cast(UTC_US))


def make_store(folder: Path, *, leaky_merchant_fraud: bool = False) -> LakeConfig:
    """A hand-made offline store (a lake in ``folder``) with raw tables and three feature
    group tables."""
    lake = LakeConfig.under(folder)
    tables = {
        "raw_transactions": transactions_frame(),
        "raw_fraud_labels": labels_frame(),
        CARD_TX.table: build_card_transaction_features(transactions_frame()),
        CARD_PROFILE_FEATURES.table: card_profile_frame(),
        MERCHANT_DAILY_FEATURES.table: merchant_daily_frame(all_labels=leaky_merchant_fraud),
    }
    con = connect(lake)
    try:
        for table, frame in tables.items():
            arrow = frame.to_arrow()  # noqa: F841 - read by name in the SQL below
            con.execute(f'create or replace table "{table}" as select * from arrow')
    finally:
        con.close()
    return lake


@pytest.fixture
def store(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    con = connect(make_store(tmp_path / "lake"), read_only=True)
    yield con
    con.close()


def by_id(frame: pl.DataFrame) -> dict[str, dict[str, object]]:
    return {row["transaction_id"]: row for row in frame.iter_rows(named=True)}


# --------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------


def test_one_row_per_eligible_transaction_in_time_order(store: duckdb.DuckDBPyConnection) -> None:
    frame, info = build(store, small_config())

    # t01 falls in the warm-up day, t10 is younger than the label maturity: both left out.
    assert frame.get_column("transaction_id").to_list() == ELIGIBLE
    assert info.start == at(2) and info.end == at(8) and info.cutoff == CUTOFF
    assert info.rows["total"] == len(ELIGIBLE)
    assert frame.columns[:9] == [
        "transaction_id", "card_id", "merchant_id", "transaction_time",
        "amount", "category", "channel", "lat", "lon",
    ]  # fmt: skip
    assert frame.columns[-3:] == ["is_fraud", LABEL_REPORTED_AT, "split"]
    assert "distance_from_home_km" in frame.columns


def test_labels_are_those_known_at_the_cutoff(store: duckdb.DuckDBPyConnection) -> None:
    frame, info = build(store, small_config())
    rows = by_id(frame)

    fraud = {tx for tx, row in rows.items() if row["is_fraud"] == 1}
    # t05's report came after the cutoff; t06 was retracted, t07 confirmed, before it.
    assert fraud == KNOWN_FRAUD_AT_CUTOFF
    assert rows["t06"][LABEL_REPORTED_AT] == at(7, 9)
    assert rows["t05"][LABEL_REPORTED_AT] is None
    assert info.positives["total"] == 3

    # Two days later (same label window thanks to a longer maturity) t05's report is known.
    later, _ = build(store, small_config(cutoff=at(12), label_maturity_days=4))
    assert later.get_column("transaction_id").to_list() == ELIGIBLE
    assert by_id(later)["t05"]["is_fraud"] == 1


def test_features_come_from_rows_strictly_before_the_transaction(
    store: duckdb.DuckDBPyConnection,
) -> None:
    frame, _ = build(store, small_config())
    rows = by_id(frame)

    for group in SMALL_GROUPS:
        used = frame.get_column(f"{group}__event_time")
        assert (used.is_null() | (used < frame.get_column("transaction_time"))).all(), group
    # c1's card state before t04 is the state after t02, not after t04 itself.
    assert rows["t04"]["card_transaction_features__event_time"] == at(2, 9)
    assert rows["t04"]["card_transaction_features__last_amount"] == 35.0
    # c2's profile starts on 09-03: null for t03 (09-02), present for t05 (09-03 15:00).
    assert rows["t03"]["card_profile_features__home_lat"] is None
    assert rows["t03"]["distance_from_home_km"] is None
    assert rows["t05"]["card_profile_features__home_lat"] == 51.50
    # t07 (09-05 10:00) sees m1's row of 09-04: t06's fraud report arrived only on 09-05.
    assert rows["t07"]["merchant_daily_features__feature_date"] == date(2026, 9, 4)
    assert rows["t07"]["merchant_daily_features__known_fraud_30d"] == 2


def test_ttl_turns_stale_feature_rows_into_nulls(store: duckdb.DuckDBPyConnection) -> None:
    view = small_view(ttl={CARD_TX.name: timedelta(days=1)})
    rows = by_id(build(store, small_config(), view)[0])

    # t04's previous c1 transaction is 23 h old: kept. t06's is 27 h old: dropped.
    assert rows["t04"]["card_transaction_features__event_time"] == at(2, 9)
    assert rows["t06"]["card_transaction_features__event_time"] is None
    assert rows["t06"]["seconds_since_last_tx"] is None


def test_split_is_by_time_with_ordered_non_overlapping_boundaries(
    store: duckdb.DuckDBPyConnection,
) -> None:
    frame, info = build(store, small_config())
    bounds = info.boundaries

    assert bounds["train_start"] <= bounds["valid_start"] <= bounds["test_start"] <= bounds["end"]
    assert frame.get_column("split").to_list() == ["train"] * 4 + ["valid"] * 2 + ["test"] * 2
    for split, lo, hi in (
        ("train", "train_start", "valid_start"),
        ("valid", "valid_start", "test_start"),
        ("test", "test_start", "end"),
    ):
        times = frame.filter(pl.col("split") == split).get_column("transaction_time")
        assert times.min() >= bounds[lo] and times.max() < bounds[hi], split
    assert info.rows == {"total": 8, "train": 4, "valid": 2, "test": 2}
    assert info.positives == {"total": 3, "train": 1, "valid": 1, "test": 1}


def test_default_cutoff_is_the_end_of_the_last_day_both_sources_landed(
    store: duckdb.DuckDBPyConnection,
) -> None:
    # Transactions landed up to 09-08, labels up to 09-11: the earlier day wins.
    assert landed_cutoff(store) == at(9)
    _, info = build(store, small_config(cutoff=None))
    assert info.cutoff == at(9) and info.end == at(7)


def test_build_refuses_unknown_groups_missing_tables_and_empty_windows(
    store: duckdb.DuckDBPyConnection,
) -> None:
    unknown = FeatureView("v", 1, "test", (FeatureSelection("no_such_group", 1, ("x",)),))
    with pytest.raises(ValueError, match="unknown group 'no_such_group'"):
        resolve(unknown, CATALOG)
    daily_only = small_view(groups=("card_daily_features", "card_profile_features", CARD_TX.name))
    with pytest.raises(ValueError, match="card_daily_features_v1"):
        build(store, small_config(), daily_only)
    with pytest.raises(ValueError, match="no label window"):
        build(store, small_config(cutoff=at(3)))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"cutoff": datetime(2026, 9, 10)}, "naive"),
        ({"valid_fraction": 0.5, "test_fraction": 0.5}, "sum < 1"),
        ({"name": "../escape"}, "not valid"),
    ],
)
def test_config_rejects_bad_values(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        small_config(**overrides)


def test_default_feature_columns_hold_model_inputs_only() -> None:
    features, categorical = small_view(groups=tuple(CATALOG)).input_columns()

    assert set(categorical) <= set(features)
    assert "merchant_daily_features__fraud_rate_30d" in features
    assert "card_profile_features__age_band" in categorical
    assert "distance_from_home_km" in features and "amount" in features
    leaks = [c for c in features if c.endswith(("event_time", "feature_date", "reported_at"))]
    assert leaks == [] and "is_fraud" not in features


# --------------------------------------------------------------------------------------------
# Writing, listing, loading
# --------------------------------------------------------------------------------------------


def write(frame: pl.DataFrame, info: datasets.BuildInfo, root: Path) -> datasets.DatasetVersion:
    features, categorical = VIEW.input_columns()
    return write_dataset(
        frame,
        info,
        root,
        feature_columns=features,
        categorical_columns=categorical,
        label="is_fraud",
        code_version="test-sha",
    )


def test_every_write_is_a_new_immutable_version(
    store: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    root = tmp_path / "datasets"
    first = write(*build(store, small_config()), root)
    first_bytes = first.data_path.read_bytes()
    first_manifest = first.manifest_path.read_text()

    second = write(*build(store, small_config()), root)

    assert (first.version, second.version) == ("v0001", "v0002")
    assert first.data_path == root / "fraud_training_dataset" / "v0001" / "data.parquet"
    assert first.data_path.read_bytes() == first_bytes
    assert first.manifest_path.read_text() == first_manifest
    for path in (first.data_path, first.manifest_path, second.data_path, second.manifest_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o444, path
    # Same data, same content: both hashes agree across the two versions.
    assert first.manifest["content_hash"] == second.manifest["content_hash"]
    assert [v.version for v in list_datasets(root, "fraud_training_dataset")] == ["v0001", "v0002"]
    assert not [p for p in (root / "fraud_training_dataset").iterdir() if p.name.startswith(".")]


def test_a_version_taken_by_a_concurrent_writer_is_skipped(
    store: duckdb.DuckDBPyConnection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "datasets"
    frame, info = build(store, small_config())
    first = write(frame, info, root)
    # A writer that looked before v0001 existed tries v0001 first.
    monkeypatch.setattr(datasets, "_latest_number", lambda name_dir: 0)

    second = write(frame, info, root)

    assert second.version == "v0002"
    assert second.manifest["version"] == "v0002"
    assert json.loads(second.manifest_path.read_text())["version"] == "v0002"
    assert json.loads(first.manifest_path.read_text())["version"] == "v0001"


def test_manifest_describes_the_dataset(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    frame, info = build(store, small_config())
    manifest = write(frame, info, tmp_path).manifest

    assert manifest["name"] == "fraud_training_dataset" and manifest["version"] == "v0001"
    assert manifest["label"]["cutoff"] == "2026-09-10T00:00:00+00:00"
    assert manifest["label"]["maturity_days"] == 2 and manifest["warmup_days"] == 1
    assert manifest["label"]["sources"] == ["raw_transactions", "raw_fraud_labels"]
    assert manifest["label"]["time_column"] == "transaction_time"
    view = manifest["feature_view"]
    assert (view["name"], view["version"]) == ("test_view", 1)
    assert view["fingerprint"] == VIEW.view.fingerprint()
    assert manifest["lake_snapshot"] == manifest["feature_groups"][CARD_TX.name]["lake_snapshot"]
    assert manifest["time_range"] == {
        "start": "2026-09-02T00:00:00+00:00",
        "end": "2026-09-08T00:00:00+00:00",
    }
    assert manifest["split"]["boundaries"]["valid_start"] == at(4, 11).isoformat()
    assert manifest["split"]["boundaries"]["test_start"] == at(6, 9).isoformat()
    assert manifest["rows"] == {"total": 8, "train": 4, "valid": 2, "test": 2}
    assert manifest["positives"] == {"total": 3, "train": 1, "valid": 1, "test": 1}
    merchant = manifest["feature_groups"]["merchant_daily_features"]
    assert merchant["version"] == 1 and merchant["entity_keys"] == ["merchant_id"]
    assert list(manifest["feature_groups"]) == list(SMALL_GROUPS)
    assert manifest["label_column"] == "is_fraud"
    assert "is_fraud" not in manifest["feature_columns"]
    assert set(manifest["categorical_columns"]) <= set(manifest["feature_columns"])
    assert len(manifest["content_hash"]["parquet_sha256"]) == 64
    assert manifest["code_version"] == "test-sha"
    # Reference statistics come from the 4 training rows only.
    amount = manifest["reference_statistics"]["numeric"]["amount"]
    assert amount["count"] == 4 and amount["max"] == 80.0
    assert manifest["reference_statistics"]["categorical"]["channel"]["proportions"] == {
        "in_store": 0.5,
        "online": 0.5,
    }


def test_load_returns_the_written_frame_and_detects_tampering(
    store: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    frame, info = build(store, small_config())
    first = write(frame, info, tmp_path)
    write(frame.filter(pl.col("transaction_id") != "t09"), info, tmp_path)

    latest, manifest = load_dataset(tmp_path, "fraud_training_dataset")
    assert manifest["version"] == "v0002" and latest.height == 7
    loaded, manifest = load_dataset(tmp_path, "fraud_training_dataset", "v0001")
    assert manifest["version"] == "v0001"
    assert loaded.equals(frame)
    assert datasets.frame_sha256(loaded) == manifest["content_hash"]["frame_sha256"]
    assert load_dataset(tmp_path, "fraud_training_dataset", "1")[1]["version"] == "v0001"
    with pytest.raises(LookupError, match="v0001"):
        load_dataset(tmp_path, "fraud_training_dataset", "v0007")

    os.chmod(first.data_path, 0o644)
    first.data_path.write_bytes(first.data_path.read_bytes() + b"\0")
    with pytest.raises(ValueError, match="changed after it was written"):
        load_dataset(tmp_path, "fraud_training_dataset", "v0001")


def test_write_rejects_inconsistent_column_lists(
    store: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    frame, info = build(store, small_config())
    cases = [
        (["amount", "is_fraud"], [], "must not be among the feature columns"),
        (["amount"], ["category"], "not in feature_columns"),
        (["amount", "nope"], [], "lacks column"),
    ]
    for features, categorical, message in cases:
        with pytest.raises(ValueError, match=message):
            write_dataset(
                frame,
                info,
                tmp_path,
                feature_columns=features,
                categorical_columns=categorical,
                label="is_fraud",
                code_version="x",
            )
    assert list_datasets(tmp_path, "fraud_training_dataset") == []


# --------------------------------------------------------------------------------------------
# Generated data, ingested, with the real dbt feature groups
# --------------------------------------------------------------------------------------------


def ingest_generated(data_dir: Path, lake: LakeConfig, days: int) -> None:
    from fti_assets.lib.ingest.raw import (
        ingest_cards,
        ingest_fraud_labels_day,
        ingest_merchants,
        ingest_transactions_day,
    )
    from fti_assets.lib.synthetic.generator import GeneratorConfig, generate

    config = GeneratorConfig(cards=150, merchants=30, days=days, fraud_rate=0.03)
    generate(config, data_dir)
    landing = data_dir / "landing"
    con = connect(lake)
    try:
        ingest_cards(con, landing)
        ingest_merchants(con, landing)
        for offset in range(days):
            day = config.start + timedelta(days=offset)
            ingest_transactions_day(con, landing, day)
            ingest_fraud_labels_day(con, landing, day)
        transactions = con.sql("select * from raw_transactions").pl()
        card_tx = build_card_transaction_features(transactions)  # noqa: F841 - used in SQL
        con.execute(f"create table {CARD_TX.table} as select * from card_tx")
    finally:
        con.close()


def run_dbt(lake: LakeConfig, work_dir: Path) -> None:
    project = Path(__file__).resolve().parents[2] / "dbt_project"
    dbt = Path(sys.executable).with_name("dbt")
    result = subprocess.run(
        [
            str(dbt), "run", "--quiet",
            "--project-dir", str(project), "--profiles-dir", str(project),
            "--target-path", str(work_dir / "target"), "--log-path", str(work_dir / "logs"),
        ],
        env={**os.environ, **lake_environment(lake)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.fixture(scope="module")
def generated_store(tmp_path_factory: pytest.TempPathFactory) -> LakeConfig:
    work = tmp_path_factory.mktemp("generated")
    lake = LakeConfig.under(work / "lake")
    ingest_generated(work / "data", lake, days=40)
    run_dbt(lake, work)
    return lake


@pytest.mark.slow
def test_dataset_from_generated_data(generated_store: LakeConfig, tmp_path: Path) -> None:
    from fti_assets.lib.training.leakage import check_leakage
    from fti_assets.specs.leakage import FRAUD_DOMAIN_RULES

    view = resolved(FRAUD_FEATURES)
    con = connect(generated_store, read_only=True)
    try:
        frame, info = build_training_frame(
            con, view, FRAUD_LABEL, DatasetConfig("fraud_training_dataset")
        )
        raw = con.sql("select * from raw_transactions").pl()
        labels = con.sql("select * from raw_fraud_labels").pl()
        version = write_dataset(
            frame,
            info,
            tmp_path,
            feature_columns=view.input_columns()[0],
            categorical_columns=view.input_columns()[1],
            label="is_fraud",
        )
        loaded, manifest = load_dataset(tmp_path, "fraud_training_dataset", version.version)
        report = check_leakage(con, loaded, manifest, FRAUD_DOMAIN_RULES)
        earlier, _ = build_training_frame(
            con,
            view,
            FRAUD_LABEL,
            DatasetConfig(
                "fraud_training_dataset",
                cutoff=info.cutoff - timedelta(days=15),
                label_maturity_days=6,
            ),
        )
    finally:
        con.close()

    # 40 days from 09-01: cutoff = end of 10-10; labels for [09-08, 09-20).
    assert info.cutoff == datetime(2026, 10, 11, tzinfo=UTC)
    eligible = raw.filter(
        (pl.col("transaction_time") >= info.start) & (pl.col("transaction_time") < info.end)
    )
    assert (
        frame.get_column("transaction_id")
        .sort()
        .equals(eligible.get_column("transaction_id").sort())
    )
    assert frame.get_column("transaction_id").n_unique() == frame.height
    # The label is the latest report by the cutoff (recomputed here with Polars).
    latest = (
        labels.filter(pl.col("reported_at") <= info.cutoff)
        .sort("reported_at", "is_fraud")
        .group_by("transaction_id")
        .agg(pl.col("is_fraud").last().alias("expected"))
    )
    expected = frame.join(latest, on="transaction_id", how="left").with_columns(
        pl.col("expected").fill_null(0)
    )
    assert (expected.get_column("is_fraud") == expected.get_column("expected")).all()
    assert all(info.positives[s] > 0 for s in ("train", "valid", "test"))
    for group in (s.group for s in FRAUD_FEATURES.selections):
        used = frame.get_column(f"{group}__event_time")
        assert (used.is_null() | (used < frame.get_column("transaction_time"))).all(), group
        assert used.null_count() < frame.height, group
    assert report.passed, report.findings
    assert report.rows_recounted == min(2000, frame.height)
    # 15 days earlier, same rows: fraud reported in those 15 days is not known yet.
    assert earlier.get_column("transaction_id").equals(frame.get_column("transaction_id"))
    assert (earlier.get_column(LABEL_REPORTED_AT) <= info.cutoff - timedelta(days=15)).all()
    assert earlier.get_column("is_fraud").sum() < frame.get_column("is_fraud").sum()
