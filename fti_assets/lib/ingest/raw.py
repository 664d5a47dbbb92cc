"""Reading landing files and splitting their rows into accepted and quarantined.

Two kinds of problems are kept apart:

* whole-file problems (missing file, unreadable Parquet, a required column missing or of the
  wrong type) raise :class:`LandingFileError` naming the file, the column and what was expected;
* row problems (null keys, duplicates, out-of-range values, unknown references, bad timestamps)
  send the row to quarantine with a reason. ``rows_in == accepted + quarantined`` always holds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import duckdb
import pandera.polars as pa
import polars as pl
import pyarrow as pa_arrow
import pyarrow.parquet as pq
from pandera.errors import SchemaErrors

from fti_assets.lib.ingest.contracts import (
    POLARS_DTYPES,
    UTC_US,
    cards_contract,
    fraud_labels_contract,
    merchants_contract,
    transactions_contract,
)
from fti_assets.lib.ingest.domain import (
    CARD_COLUMNS,
    CARDS_FILE,
    FRAUD_LABEL_COLUMNS,
    FRAUD_LABELS_DIR,
    MERCHANT_COLUMNS,
    MERCHANTS_FILE,
    TRANSACTION_COLUMNS,
    TRANSACTIONS_DIR,
)
from fti_assets.lib.store.offline import Replacement, replace_partitions, table_exists

log = logging.getLogger(__name__)

ROW_NUMBER = "_row_number"
# An ISO-8601 time must carry an offset ("Z" or "+00:00"): a naive time is ambiguous.
_ISO_NAIVE = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?$"

QUARANTINE_COLUMNS = {
    ROW_NUMBER: pl.Int64,
    "reason": pl.String,
    "row_json": pl.String,
}


class LandingFileError(ValueError):
    """The landing file as a whole cannot be ingested (nothing from it is written)."""


@dataclass
class LandingFile:
    path: Path
    frame: pl.DataFrame  # columns cast to the expected types; string timestamps already parsed
    row_json: pl.Series  # each row as read, JSON-encoded, for the quarantine table
    parse_reasons: pl.Series  # per-row reason from parsing ("" if none)
    warnings: list[str] = field(default_factory=list)

    @property
    def rows_in(self) -> int:
        return self.frame.height


@dataclass
class ValidationResult:
    accepted: pl.DataFrame
    quarantined: pl.DataFrame  # ROW_NUMBER, reason, row_json
    rows_in: int
    warnings: list[str]

    @property
    def reasons(self) -> dict[str, int]:
        """How many quarantined rows per reason (each row counted once per reason)."""
        if self.quarantined.is_empty():
            return {}
        counts = (
            self.quarantined.select(pl.col("reason").str.split("; ").alias("r"))
            .explode("r")
            .group_by("r")
            .len()
            .sort("len", descending=True)
        )
        return dict(zip(counts["r"].to_list(), counts["len"].to_list(), strict=True))


def _read_parquet(path: Path) -> pa_arrow.Table | None:
    if not path.exists():
        raise LandingFileError(f"{path}: landing file is missing")
    if path.stat().st_size == 0:
        return None
    try:
        return pq.read_table(path)
    except (pa_arrow.ArrowInvalid, OSError) as exc:
        raise LandingFileError(f"{path}: not a readable Parquet file ({exc})") from exc


def _cast_column(path: Path, name: str, series: pl.Series, expected: str) -> pl.Series:
    """Cast one column to its expected logical type, or raise naming file, column and types."""
    dtype = series.dtype

    def wrong() -> LandingFileError:
        return LandingFileError(
            f"{path}: column {name!r} has type {dtype}, expected {expected}"
            + (" (timezone-aware, UTC)" if expected == "timestamp_utc" else "")
        )

    if expected == "string":
        if dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum):
            return series.cast(pl.String)
        if dtype == pl.Null:
            return series.cast(pl.String)
        raise wrong()
    if expected == "float64":
        if dtype.is_numeric() or dtype == pl.Null:
            return series.cast(pl.Float64)
        raise wrong()
    if expected in ("int8", "int64"):
        if dtype.is_integer() or dtype == pl.Null:
            try:
                return series.cast(POLARS_DTYPES[expected], strict=True)
            except pl.exceptions.InvalidOperationError as exc:
                raise LandingFileError(
                    f"{path}: column {name!r} has values that do not fit {expected}"
                ) from exc
        raise wrong()
    if expected == "date":
        if dtype == pl.Date:
            return series
        raise wrong()
    if expected == "timestamp_utc":
        if isinstance(dtype, pl.Datetime):
            if dtype.time_zone is None:
                raise LandingFileError(
                    f"{path}: column {name!r} holds timezone-naive timestamps ({dtype}); "
                    "expected timezone-aware UTC timestamps"
                )
            return series.dt.convert_time_zone("UTC").dt.cast_time_unit("us")
        if dtype == pl.String:
            return series  # parsed row by row in _parse_timestamps
        if dtype == pl.Null:
            return series.cast(UTC_US)
        raise wrong()
    raise ValueError(f"unknown logical type {expected!r} for column {name!r}")


def _parse_timestamps(frame: pl.DataFrame, name: str) -> tuple[pl.DataFrame, pl.Series]:
    """Parse an ISO-8601 string column to UTC; rows without an offset get a reason."""
    raw = frame[name]
    normalised = raw.str.replace(r"^(\S+) ", "${1}T").str.replace(r"Z$", "+00:00")
    parsed = normalised.str.to_datetime(
        format="%Y-%m-%dT%H:%M:%S%.f%z", time_zone="UTC", time_unit="us", strict=False
    )
    failed = raw.is_not_null() & parsed.is_null()
    naive = normalised.str.contains(_ISO_NAIVE)
    reasons = pl.select(
        pl.when(failed & naive)
        .then(
            pl.format(
                f"{name}: timezone-naive timestamp '{{}}' (expected ISO-8601 with an offset, "
                "e.g. +00:00)",
                raw,
            )
        )
        .when(failed)
        .then(pl.format(f"{name}: unparseable timestamp '{{}}' (expected ISO-8601)", raw))
        .otherwise(pl.lit(""))
    ).to_series()
    return frame.with_columns(parsed.alias(name)), reasons


def read_landing_file(path: Path, expected: dict[str, str]) -> LandingFile:
    """Read one landing Parquet file, checking it as a whole against ``expected`` columns."""
    table = _read_parquet(path)
    warnings: list[str] = []
    if table is None:
        warnings.append(f"{path}: empty file (0 bytes), read as zero rows")
        frame = pl.DataFrame(schema={k: POLARS_DTYPES[v] for k, v in expected.items()})
        empty = pl.Series("row_json", [], dtype=pl.String)
        return LandingFile(path, frame, empty, empty.alias("reason"), warnings)
    raw = pl.from_arrow(table)
    assert isinstance(raw, pl.DataFrame)
    missing = [c for c in expected if c not in raw.columns]
    if missing:
        raise LandingFileError(
            f"{path}: required column(s) {missing} missing; expected columns "
            f"{list(expected)} (found {raw.columns})"
        )
    extra = [c for c in raw.columns if c not in expected]
    if extra:
        warnings.append(f"{path}: ignoring unexpected column(s) {extra}")
    raw = raw.select(list(expected))
    row_json = raw.select(pl.struct(pl.all()).struct.json_encode()).to_series().alias("row_json")
    frame = raw.with_columns(
        _cast_column(path, name, raw[name], logical) for name, logical in expected.items()
    )
    reasons = pl.Series("reason", [""] * frame.height, dtype=pl.String)
    for name, logical in expected.items():
        if logical == "timestamp_utc" and frame[name].dtype == pl.String:
            frame, col_reasons = _parse_timestamps(frame, name)
            reasons = _join_reasons(reasons, col_reasons)
    return LandingFile(path, frame, row_json, reasons, warnings)


def _join_reasons(a: pl.Series, b: pl.Series) -> pl.Series:
    return (
        pl.select(pl.when(a == "").then(b).when(b == "").then(a).otherwise(a + "; " + b))
        .to_series()
        .alias("reason")
    )


def _pandera_reasons(frame: pl.DataFrame, contract: pa.DataFrameSchema) -> pl.DataFrame:
    """Per failing row: its index and a human reason per failed check."""
    try:
        contract.validate(frame, lazy=True)
    except SchemaErrors as exc:
        cases = exc.failure_cases
        if cases.filter(pl.col("index").is_null()).height:
            # Not a row problem (a dtype or a missing column): the file is wrong as a whole.
            raise
        return cases.select(
            pl.col("index").cast(pl.Int64).alias(ROW_NUMBER),
            pl.col("column"),
            pl.format(
                "{}: {} (got {})",
                pl.col("column").fill_null("row"),
                pl.col("check"),
                pl.col("failure_case").fill_null("null"),
            ).alias("reason"),
        )
    return pl.DataFrame(schema={ROW_NUMBER: pl.Int64, "column": pl.String, "reason": pl.String})


def validate_rows(
    landing: LandingFile,
    contract: pa.DataFrameSchema,
    unique_key: str | None = None,
    extra_reasons: pl.Series | None = None,
) -> ValidationResult:
    """Split a landing file's rows into accepted and quarantined (with reasons).

    ``unique_key``: later rows repeating an earlier row's key are quarantined as duplicates
    (the first occurrence is kept). ``extra_reasons``: per-row reasons computed by the caller
    (e.g. references that need the offline store); "" means none.
    """
    frame = landing.frame
    reasons = landing.parse_reasons
    if extra_reasons is not None:
        reasons = _join_reasons(reasons, extra_reasons)
    if unique_key is not None:
        dup = frame[unique_key].is_not_null() & frame[unique_key].is_first_distinct().not_()
        dup_reason = pl.select(
            pl.when(dup)
            .then(
                pl.format(
                    f"{unique_key}: duplicate '{{}}' (first occurrence kept)", frame[unique_key]
                )
            )
            .otherwise(pl.lit(""))
        ).to_series()
        reasons = _join_reasons(reasons, dup_reason)

    failures = _pandera_reasons(frame, contract)
    # A timestamp that failed to parse is null: its parse reason already says why.
    parse_failed = pl.DataFrame({ROW_NUMBER: range(frame.height), "parse": landing.parse_reasons})
    failures = (
        failures.join(parse_failed, on=ROW_NUMBER, how="left")
        .filter(~((pl.col("parse") != "") & pl.col("reason").str.contains("not_nullable")))
        .group_by(ROW_NUMBER, maintain_order=True)
        .agg(pl.col("reason").str.join("; "))
    )
    table = (
        pl.DataFrame({ROW_NUMBER: pl.int_range(frame.height, eager=True), "pre": reasons})
        .join(failures, on=ROW_NUMBER, how="left")
        .select(
            ROW_NUMBER,
            pl.concat_str(
                [pl.col("pre").replace("", None), pl.col("reason")],
                separator="; ",
                ignore_nulls=True,
            ).alias("reason"),
        )
    )
    bad = table["reason"].is_not_null() & (table["reason"] != "")
    quarantined = pl.DataFrame(
        {
            ROW_NUMBER: table[ROW_NUMBER].filter(bad),
            "reason": table["reason"].filter(bad),
            "row_json": landing.row_json.filter(bad),
        },
        schema=QUARANTINE_COLUMNS,
    )
    accepted = frame.filter(~bad)
    result = ValidationResult(accepted, quarantined, frame.height, list(landing.warnings))
    if result.accepted.height + result.quarantined.height != result.rows_in:
        raise AssertionError(
            f"{landing.path}: rows_in {result.rows_in} != accepted {result.accepted.height} "
            f"+ quarantined {result.quarantined.height}"
        )
    return result


# --- Loading into the offline store -------------------------------------------------------------

QUARANTINE_TABLE = "quarantine"


@dataclass(frozen=True)
class IngestReport:
    table: str
    landing_date: date | None
    source_file: str
    rows_in: int
    accepted: int
    quarantined: int
    reasons: dict[str, int]
    warnings: list[str]
    lake_snapshot: int  # the offline-store snapshot of the commit that loaded the file


def _quarantine_frame(
    result: ValidationResult, source: str, landing_date: date | None, source_file: str
) -> pl.DataFrame:
    now = datetime.now(UTC)
    return result.quarantined.select(
        pl.lit(source).alias("source"),
        pl.lit(landing_date, dtype=pl.Date).alias("landing_date"),
        pl.lit(source_file).alias("source_file"),
        pl.col(ROW_NUMBER).alias("row_number"),
        "reason",
        "row_json",
        pl.lit(now, dtype=UTC_US).alias("quarantined_at"),
    )


def _load(
    con: duckdb.DuckDBPyConnection,
    table: str,
    result: ValidationResult,
    path: Path,
    landing_date: date | None,
) -> IngestReport:
    """Replace the table's rows for this file (its landing_date, or all rows for reference
    data) and the file's quarantined rows, in one transaction."""
    now = datetime.now(UTC)
    accepted = result.accepted.with_columns(
        pl.lit(str(path)).alias("_source_file"), pl.lit(now, dtype=UTC_US).alias("_ingested_at")
    )
    if landing_date is None:
        where, params = "true", []
        q_where, q_params = "source = ? and landing_date is null", [table]
    else:
        accepted = accepted.with_columns(pl.lit(landing_date, dtype=pl.Date).alias("landing_date"))
        where, params = "landing_date = ?", [landing_date]
        q_where, q_params = "source = ? and landing_date = ?", [table, landing_date]
    snapshot = replace_partitions(
        con,
        [
            Replacement(table, accepted, where, params),
            Replacement(
                QUARANTINE_TABLE,
                _quarantine_frame(result, table, landing_date, str(path)),
                q_where,
                q_params,
            ),
        ],
        message=f"ingest {table} {landing_date or 'reference data'} from {path.name}",
    )
    return IngestReport(
        table=table,
        landing_date=landing_date,
        source_file=str(path),
        rows_in=result.rows_in,
        accepted=result.accepted.height,
        quarantined=result.quarantined.height,
        reasons=result.reasons,
        warnings=result.warnings,
        lake_snapshot=snapshot,
    )


def _end_of_day(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=UTC) - timedelta(
        microseconds=1
    )


def _known_ids(con: duckdb.DuckDBPyConnection, table: str, column: str) -> list[str]:
    if not table_exists(con, table):
        raise LookupError(
            f"reference table {table!r} is not in the offline store yet; materialize it first"
        )
    return [row[0] for row in con.execute(f"select {column} from {table}").fetchall()]


def ingest_cards(con: duckdb.DuckDBPyConnection, landing_dir: Path) -> IngestReport:
    path = landing_dir / CARDS_FILE
    result = validate_rows(read_landing_file(path, CARD_COLUMNS), cards_contract(), "card_id")
    return _load(con, "raw_cards", result, path, None)


def ingest_merchants(con: duckdb.DuckDBPyConnection, landing_dir: Path) -> IngestReport:
    path = landing_dir / MERCHANTS_FILE
    landing = read_landing_file(path, MERCHANT_COLUMNS)
    result = validate_rows(landing, merchants_contract(), "merchant_id")
    return _load(con, "raw_merchants", result, path, None)


def transactions_path(landing_dir: Path, day: date) -> Path:
    return landing_dir / TRANSACTIONS_DIR / f"{day.isoformat()}.parquet"


def fraud_labels_path(landing_dir: Path, day: date) -> Path:
    return landing_dir / FRAUD_LABELS_DIR / f"{day.isoformat()}.parquet"


def ingest_transactions_day(
    con: duckdb.DuckDBPyConnection, landing_dir: Path, day: date
) -> IngestReport:
    """Load one day's transactions file; rows must not be later than the end of that day."""
    path = transactions_path(landing_dir, day)
    landing = read_landing_file(path, TRANSACTION_COLUMNS)
    contract = transactions_contract(
        _known_ids(con, "raw_cards", "card_id"),
        _known_ids(con, "raw_merchants", "merchant_id"),
        min(_end_of_day(day), datetime.now(UTC)),
    )
    result = validate_rows(landing, contract, "transaction_id")
    return _load(con, "raw_transactions", result, path, day)


def ingest_fraud_labels_day(
    con: duckdb.DuckDBPyConnection, landing_dir: Path, day: date
) -> IngestReport:
    """Load one day's fraud labels; each must name a known transaction and follow it in time."""
    path = fraud_labels_path(landing_dir, day)
    landing = read_landing_file(path, FRAUD_LABEL_COLUMNS)
    if not table_exists(con, "raw_transactions"):
        raise LookupError("raw_transactions is not in the offline store yet; materialize it first")
    incoming = landing.frame.with_row_index(ROW_NUMBER).select(  # noqa: F841 - used in SQL
        ROW_NUMBER, "transaction_id", "reported_at"
    )
    checked = con.sql(
        f"""
        select i.{ROW_NUMBER},
               case
                 when i.transaction_id is null then ''
                 when t.transaction_id is null
                   then 'transaction_id: unknown transaction ''' || i.transaction_id || ''''
                 when i.reported_at is not null and i.reported_at < t.transaction_time
                   then 'reported_at: before the transaction time ' || t.transaction_time
                 else ''
               end as reason
        from incoming i
        left join (
            select distinct on (transaction_id) transaction_id, transaction_time
            from raw_transactions
            where transaction_id in (select transaction_id from incoming)
        ) t using (transaction_id)
        order by i.{ROW_NUMBER}
        """
    ).pl()
    contract = fraud_labels_contract(min(_end_of_day(day), datetime.now(UTC)))
    result = validate_rows(landing, contract, "transaction_id", checked["reason"])
    return _load(con, "raw_fraud_labels", result, path, day)
