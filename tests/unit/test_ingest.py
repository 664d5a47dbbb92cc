"""Ingestion: each bad-row kind is quarantined with its reason; whole-file problems fail loudly."""

from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fti_assets.lib.core.settings import Settings
from fti_assets.lib.ingest import raw as ingest
from fti_assets.lib.ingest.domain import TRANSACTION_COLUMNS
from fti_assets.lib.store.offline import connect, read_frame
from tests.conftest import TINY_START

# Generator bad-row kind -> a piece of the quarantine reason it must produce.
EXPECTED_REASONS = {
    "null_transaction_id": "transaction_id: not_nullable",
    "null_card_id": "card_id: not_nullable",
    "duplicate_transaction_id": "transaction_id: duplicate",
    "negative_amount": "amount: must be >= 0",
    "nonfinite_amount": "amount: must be a finite number",
    "absurd_amount": "amount: must be <= 50,000",
    "unknown_card": "card_id: unknown card_id",
    "unknown_merchant": "merchant_id: unknown merchant_id",
    "future_timestamp": "transaction_time: must not be after the end of the file's day",
    "unknown_category": "category: must be one of",
    "naive_timestamp": "transaction_time: timezone-naive timestamp",
}


@pytest.fixture
def con(data_layer: Path):
    con = connect(Settings.from_env().lake)
    landing = data_layer / "landing"
    ingest.ingest_cards(con, landing)
    ingest.ingest_merchants(con, landing)
    yield con
    con.close()


def _manifest_bad_rows(data_layer: Path, day: date) -> dict[str, int]:
    import json

    manifest = json.loads((data_layer / "landing" / "_manifest.json").read_text())
    return manifest["bad_rows"][day.isoformat()]


def test_each_bad_row_kind_is_quarantined_with_its_reason(con, data_layer: Path) -> None:
    report = ingest.ingest_transactions_day(con, data_layer / "landing", TINY_START)
    injected = _manifest_bad_rows(data_layer, TINY_START)
    assert set(injected) == set(EXPECTED_REASONS)
    assert report.quarantined == sum(injected.values())
    assert report.rows_in == report.accepted + report.quarantined
    quarantined = read_frame(con, "select reason, row_json from quarantine")
    for kind, needle in EXPECTED_REASONS.items():
        hits = quarantined.filter(pl.col("reason").str.contains(needle, literal=True))
        assert hits.height >= injected[kind], f"{kind}: no quarantined row says {needle!r}"
    accepted = read_frame(con, "select * from raw_transactions")
    assert accepted.height == report.accepted
    assert accepted["transaction_id"].is_unique().all()
    assert accepted["amount"].is_finite().all()
    assert accepted["transaction_time"].dtype == pl.Datetime("us", "UTC")


def test_extra_column_is_ignored_with_a_warning(con, data_layer: Path) -> None:
    report = ingest.ingest_transactions_day(con, data_layer / "landing", TINY_START)
    assert any("_producer_debug" in w for w in report.warnings)
    assert "_producer_debug" not in read_frame(con, "select * from raw_transactions").columns


def test_reingesting_a_partition_replaces_it(con, data_layer: Path) -> None:
    landing = data_layer / "landing"
    first = ingest.ingest_transactions_day(con, landing, TINY_START)
    ingest.ingest_transactions_day(con, landing, TINY_START + timedelta(1))
    again = ingest.ingest_transactions_day(con, landing, TINY_START)
    assert again.accepted == first.accepted
    counts = read_frame(
        con, "select landing_date, count(*) as n from raw_transactions group by all order by 1"
    )
    assert counts["n"][0] == first.accepted
    q = read_frame(con, "select count(*) as n from quarantine where landing_date = ?", [TINY_START])
    assert q["n"][0] == first.quarantined


def _write(path: Path, table: pa.Table) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def _day_file(data_layer: Path, day: date) -> Path:
    return ingest.transactions_path(data_layer / "landing", day)


def _good_frame(data_layer: Path) -> pl.DataFrame:
    clean = ingest.read_landing_file(_day_file(data_layer, TINY_START), TRANSACTION_COLUMNS)
    return clean.frame.filter(pl.col("transaction_time").is_not_null()).head(5)


def test_missing_file_names_the_file(con, data_layer: Path) -> None:
    day = date(2026, 10, 20)
    with pytest.raises(
        ingest.LandingFileError, match=r"2026-10-20\.parquet: landing file is missing"
    ):
        ingest.ingest_transactions_day(con, data_layer / "landing", day)


def test_corrupt_parquet_fails_and_writes_nothing(con, data_layer: Path) -> None:
    path = _day_file(data_layer, TINY_START)
    path.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(ingest.LandingFileError, match="not a readable Parquet file"):
        ingest.ingest_transactions_day(con, data_layer / "landing", TINY_START)
    assert not read_frame(
        con, "select * from information_schema.tables where table_name = 'raw_transactions'"
    ).height


def test_missing_required_column_is_named(con, data_layer: Path) -> None:
    frame = _good_frame(data_layer).drop("amount")
    _write(_day_file(data_layer, TINY_START), frame.to_arrow())
    with pytest.raises(ingest.LandingFileError, match=r"required column\(s\) \['amount'\] missing"):
        ingest.ingest_transactions_day(con, data_layer / "landing", TINY_START)


def test_wrong_column_type_names_column_and_expected_type(con, data_layer: Path) -> None:
    frame = _good_frame(data_layer).with_columns(pl.col("amount").cast(pl.String))
    _write(_day_file(data_layer, TINY_START), frame.to_arrow())
    with pytest.raises(ingest.LandingFileError) as err:
        ingest.ingest_transactions_day(con, data_layer / "landing", TINY_START)
    message = str(err.value)
    assert "2026-09-01.parquet" in message and "'amount'" in message and "float64" in message


def test_timezone_naive_timestamp_column_fails_the_file(con, data_layer: Path) -> None:
    frame = _good_frame(data_layer).with_columns(
        pl.col("transaction_time").dt.replace_time_zone(None)
    )
    _write(_day_file(data_layer, TINY_START), frame.to_arrow())
    with pytest.raises(ingest.LandingFileError, match="timezone-naive"):
        ingest.ingest_transactions_day(con, data_layer / "landing", TINY_START)


@pytest.mark.parametrize("kind", ["zero_rows", "zero_bytes"])
def test_empty_file_is_zero_rows(con, data_layer: Path, kind: str) -> None:
    path = _day_file(data_layer, TINY_START)
    if kind == "zero_rows":
        _write(path, _good_frame(data_layer).head(0).to_arrow())
    else:
        path.write_bytes(b"")
    report = ingest.ingest_transactions_day(con, data_layer / "landing", TINY_START)
    assert (report.rows_in, report.accepted, report.quarantined) == (0, 0, 0)


def test_typed_utc_file_is_accepted_as_is(con, data_layer: Path) -> None:
    frame = _good_frame(data_layer)
    _write(_day_file(data_layer, TINY_START), frame.to_arrow())
    report = ingest.ingest_transactions_day(con, data_layer / "landing", TINY_START)
    assert (report.rows_in, report.accepted, report.quarantined) == (5, 5, 0)
    stored = read_frame(con, "select transaction_time from raw_transactions order by 1")
    assert stored["transaction_time"].to_list() == sorted(frame["transaction_time"].to_list())


def test_labels_for_unknown_or_later_transactions_are_quarantined(con, data_layer: Path) -> None:
    landing = data_layer / "landing"
    ingest.ingest_transactions_day(con, landing, TINY_START)
    known = read_frame(con, "select transaction_id, transaction_time from raw_transactions limit 2")
    labels = pl.DataFrame(
        {
            "transaction_id": [
                known["transaction_id"][0],
                "t_missing",
                known["transaction_id"][1],
                None,
            ],
            "is_fraud": pl.Series([1, 1, 1, 1], dtype=pl.Int8),
            "reported_at": [
                known["transaction_time"][0] + timedelta(hours=5),
                known["transaction_time"][0],
                known["transaction_time"][1] - timedelta(hours=1),
                known["transaction_time"][0],
            ],
        }
    )
    _write(ingest.fraud_labels_path(landing, TINY_START), labels.to_arrow())
    report = ingest.ingest_fraud_labels_day(con, landing, TINY_START)
    assert (report.rows_in, report.accepted, report.quarantined) == (4, 1, 3)
    reasons = " | ".join(report.reasons)
    assert "unknown transaction 't_missing'" in reasons
    assert "before the transaction time" in reasons
    assert "transaction_id: not_nullable" in reasons
