"""The leakage canary: checks a training dataset for information from the future or the label.

:func:`check_leakage` runs three checks and reports every violation it finds (it never stops at
the first one):

1. **Point in time.** Every ``{group}__event_time`` column (which feature row a row used) is null
   or strictly earlier than the row's prediction time.
2. **Label-derived features.** No feature column is named like the label or label metadata
   (``is_fraud``, ``label``, ``reported``, ``fraud``, ``chargeback``, ``dispute``...), except
   the allow-listed merchant fraud features, which are built from PAST fraud reports only (and
   check 3 verifies exactly that). And no feature column is (nearly) the label itself: equal to it
   on at least :data:`IDENTICAL_SHARE` of rows, or a perfect separator of the two classes.
3. **Merchant fraud counts use only reports that had arrived.** For a seeded sample of rows,
   ``merchant_daily_features__known_fraud_30d`` is recomputed from ``raw_transactions`` and
   ``raw_fraud_labels``: the merchant's fraud transactions of the 30 days ending on the row's
   feature date whose first fraud report came before the feature row's event time. A count that
   includes reports that arrived later is a mismatch (and so is the fraud rate derived from it).
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import duckdb
import polars as pl

from fti_assets.lib.feature_groups import MERCHANT_DAILY_FEATURES
from fti_assets.lib.offline_store import table_exists
from fti_assets.lib.on_demand import col

logger = logging.getLogger(__name__)

EVENT_TIME_SUFFIX = "__event_time"
MERCHANT_GROUP = MERCHANT_DAILY_FEATURES.name
KNOWN_FRAUD = col(MERCHANT_GROUP, "known_fraud_30d")
FRAUD_RATE = col(MERCHANT_GROUP, "fraud_rate_30d")
TX_COUNT_30D = col(MERCHANT_GROUP, "tx_count_30d")
FEATURE_DATE = col(MERCHANT_GROUP, "feature_date")
MERCHANT_EVENT_TIME = col(MERCHANT_GROUP, "event_time")
FRAUD_WINDOW_DAYS = 30

# Label-derived on purpose, and safe: computed only from fraud reports that had arrived before the
# feature row's event time (check 3 verifies this on a sample).
LABEL_DERIVED_ALLOWED = frozenset({KNOWN_FRAUD, FRAUD_RATE})
_LABEL_LIKE_NAME = re.compile(r"fraud|label|reported|chargeback|charge_back|dispute", re.IGNORECASE)
IDENTICAL_SHARE = 0.999
# A perfect separation is only evidence of leakage when both classes have enough rows for it not
# to happen by chance.
MIN_CLASS_ROWS_FOR_SEPARATION = 20
DEFAULT_SAMPLE_ROWS = 2_000
_RATE_TOLERANCE = 1e-9
_EXAMPLES = 3


@dataclass(frozen=True)
class LeakageReport:
    findings: list[str]
    rows_checked: int
    merchant_rows_sampled: int = 0
    checks_run: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.findings

    def to_metadata(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "findings": list(self.findings),
            "rows_checked": self.rows_checked,
            "merchant_rows_sampled": self.merchant_rows_sampled,
            "checks_run": list(self.checks_run),
        }


def check_leakage(
    con: duckdb.DuckDBPyConnection,
    frame: pl.DataFrame,
    manifest_like: Mapping[str, Any],
    label: str = "is_fraud",
    label_time: str = "transaction_time",
    *,
    sample_rows: int = DEFAULT_SAMPLE_ROWS,
    seed: int = 0,
) -> LeakageReport:
    """Run the three leakage checks on ``frame``; ``passed`` is False if anything was found.

    ``manifest_like`` needs ``feature_columns`` (the model inputs); ``feature_groups`` (name ->
    info), if present, makes a group whose event-time column is missing a finding too. ``con`` is
    the offline store holding ``raw_transactions`` and ``raw_fraud_labels`` (read-only is fine).
    """
    for column in (label, label_time):
        if column not in frame.columns:
            raise ValueError(f"frame lacks column {column!r}; it has {frame.columns}")
    if "feature_columns" not in manifest_like:
        raise ValueError(
            "manifest_like has no 'feature_columns'; expected the dataset manifest (or a dict "
            "with the same keys)"
        )
    feature_columns = list(manifest_like["feature_columns"])
    groups = list(manifest_like.get("feature_groups") or [])
    findings = [
        *point_in_time_findings(frame, label_time, groups),
        *label_name_findings(feature_columns, label),
        *label_value_findings(frame, feature_columns, label),
    ]
    checks = ["point_in_time", "label_names", "label_values"]
    sampled = 0
    if KNOWN_FRAUD in frame.columns or FRAUD_RATE in frame.columns:
        merchant_findings, sampled = merchant_fraud_findings(con, frame, sample_rows, seed)
        findings += merchant_findings
        checks.append("merchant_fraud_reports")
    report = LeakageReport(findings, frame.height, sampled, checks)
    level = logging.INFO if report.passed else logging.WARNING
    logger.log(level, "leakage canary: %d finding(s) on %d rows", len(findings), frame.height)
    return report


# --------------------------------------------------------------------------------------------
# 1. Point in time
# --------------------------------------------------------------------------------------------


def point_in_time_findings(
    frame: pl.DataFrame, label_time: str, groups: list[str] | None = None
) -> list[str]:
    """Rows whose feature row is not strictly earlier than the prediction time, per group."""
    findings = []
    event_columns = [c for c in frame.columns if c.endswith(EVENT_TIME_SUFFIX)]
    for group in groups or []:
        if col(group, "event_time") not in frame.columns:
            findings.append(
                f"feature group {group!r}: column {col(group, 'event_time')!r} is missing, so "
                "which feature row each label used cannot be verified"
            )
    for column in event_columns:
        group = column.removesuffix(EVENT_TIME_SUFFIX)
        late = frame.filter(pl.col(column) >= pl.col(label_time))
        if late.is_empty():
            continue
        examples = "; ".join(
            f"{_row_id(row)} {label_time}={row[label_time]} {column}={row[column]}"
            for row in late.head(_EXAMPLES).iter_rows(named=True)
        )
        findings.append(
            f"feature group {group!r}: {late.height} of {frame.height} rows use a feature row "
            f"whose event_time is not strictly before {label_time} (e.g. {examples})"
        )
    return findings


def _row_id(row: Mapping[str, Any]) -> str:
    if "transaction_id" in row:
        return f"transaction_id={row['transaction_id']}"
    return "row"


# --------------------------------------------------------------------------------------------
# 2. Label-derived features
# --------------------------------------------------------------------------------------------


def label_name_findings(feature_columns: list[str], label: str) -> list[str]:
    """Feature columns named like the label or label metadata (allow-list excepted)."""
    findings = []
    for column in feature_columns:
        if column in LABEL_DERIVED_ALLOWED:
            continue
        if column == label or _LABEL_LIKE_NAME.search(column):
            findings.append(
                f"feature column {column!r} is named like the label or label metadata; a "
                f"label-derived feature must be allow-listed ({sorted(LABEL_DERIVED_ALLOWED)}) "
                "and computed from past reports only"
            )
    return findings


def label_value_findings(frame: pl.DataFrame, feature_columns: list[str], label: str) -> list[str]:
    """Numeric feature columns that are (nearly) the label or separate its classes perfectly."""
    findings = []
    y = frame.get_column(label).cast(pl.Float64)
    positives = int((y == 1).sum())
    negatives = int((y == 0).sum())
    if positives == 0:
        return findings
    for column in feature_columns:
        if column not in frame.columns:
            findings.append(f"feature column {column!r} is listed but absent from the dataset")
            continue
        series = frame.get_column(column)
        if not (series.dtype.is_numeric() or series.dtype == pl.Boolean):
            continue
        x = series.cast(pl.Float64).fill_nan(None)
        equal = float((x == y).fill_null(False).mean())
        if equal >= IDENTICAL_SHARE:
            findings.append(
                f"feature column {column!r} equals the label {label!r} on {equal:.2%} of rows "
                f"(threshold {IDENTICAL_SHARE:.1%})"
            )
        elif min(positives, negatives) >= MIN_CLASS_ROWS_FOR_SEPARATION and _separates(x, y):
            findings.append(
                f"feature column {column!r} separates the classes of {label!r} perfectly "
                f"(AUC 1.0 over {positives} positive and {negatives} negative rows)"
            )
    return findings


def _separates(x: pl.Series, y: pl.Series) -> bool:
    """True if a threshold on ``x`` splits positives from negatives (nulls at either end)."""
    for fill in (float("-inf"), float("inf")):
        filled = x.fill_null(fill)
        pos, neg = filled.filter(y == 1), filled.filter(y == 0)
        if pos.min() > neg.max() or pos.max() < neg.min():
            return True
    return False


# --------------------------------------------------------------------------------------------
# 3. Merchant fraud counts
# --------------------------------------------------------------------------------------------


def merchant_fraud_findings(
    con: duckdb.DuckDBPyConnection,
    frame: pl.DataFrame,
    sample_rows: int = DEFAULT_SAMPLE_ROWS,
    seed: int = 0,
) -> tuple[list[str], int]:
    """Recompute the merchant 30-day known-fraud count on a sample; return findings, rows."""
    missing = [c for c in ("merchant_id", MERCHANT_EVENT_TIME) if c not in frame.columns]
    if missing:
        return [
            f"merchant fraud features present but column(s) {missing} are missing, so their "
            "label cut-off cannot be verified"
        ], 0
    for table in ("raw_transactions", "raw_fraud_labels"):
        if not table_exists(con, table):
            return [
                f"table {table!r} is not in the offline store: cannot verify "
                "merchant fraud features"
            ], 0
    sample = _merchant_sample(frame, sample_rows, seed)
    if sample.is_empty():
        return [], 0
    expected = _expected_known_fraud(con, sample)
    checked = sample.join(expected, on="__row", how="left").with_columns(
        pl.col("expected").fill_null(0)
    )
    findings = []
    if KNOWN_FRAUD in checked.columns:
        bad = checked.filter(pl.col(KNOWN_FRAUD).cast(pl.Int64) != pl.col("expected"))
        if not bad.is_empty():
            findings.append(_mismatch_finding(bad, KNOWN_FRAUD, checked.height))
    if FRAUD_RATE in checked.columns and TX_COUNT_30D in checked.columns:
        rates = checked.with_columns(
            pl.when(pl.col(TX_COUNT_30D) > 0)
            .then(pl.col("expected") / pl.col(TX_COUNT_30D))
            .alias("expected")
        )
        got, want = pl.col(FRAUD_RATE).cast(pl.Float64), pl.col("expected")
        differs = ((got - want).abs() > _RATE_TOLERANCE).fill_null(got.is_null() != want.is_null())
        bad = rates.filter(differs)
        if not bad.is_empty():
            findings.append(_mismatch_finding(bad, FRAUD_RATE, checked.height))
    return findings, checked.height


def _merchant_sample(frame: pl.DataFrame, sample_rows: int, seed: int) -> pl.DataFrame:
    present = [c for c in (KNOWN_FRAUD, FRAUD_RATE, TX_COUNT_30D) if c in frame.columns]
    rows = frame.select(
        "merchant_id",
        pl.col(MERCHANT_EVENT_TIME).alias("__event_time"),
        _feature_date(frame).alias("__feature_date"),
        *present,
        *(["transaction_id"] if "transaction_id" in frame.columns else []),
    ).filter(pl.col("__event_time").is_not_null())
    if rows.height > sample_rows:
        rows = rows.sample(n=sample_rows, seed=seed)
    return rows.with_row_index("__row").with_columns(pl.col("__row").cast(pl.Int64))


def _feature_date(frame: pl.DataFrame) -> pl.Expr:
    if FEATURE_DATE in frame.columns:
        return pl.col(FEATURE_DATE)
    # A daily row becomes available at the midnight UTC ending its day.
    return (pl.col(MERCHANT_EVENT_TIME).dt.convert_time_zone("UTC") - pl.duration(days=1)).dt.date()


def _expected_known_fraud(con: duckdb.DuckDBPyConnection, sample: pl.DataFrame) -> pl.DataFrame:
    view = f"__leakage_sample_{uuid.uuid4().hex}"
    con.register(view, sample.select("__row", "merchant_id", "__feature_date", "__event_time"))
    try:
        sql = f"""
            with fraud as (
                select t.merchant_id,
                       t.transaction_id,
                       cast(timezone('UTC', t.transaction_time) as date) as tx_date,
                       min(l.reported_at) as first_reported_at
                from raw_fraud_labels as l
                join raw_transactions as t on t.transaction_id = l.transaction_id
                where l.is_fraud = 1
                group by all
            )
            select s.__row, count(f.transaction_id) as expected
            from {view} as s
            left join fraud as f
                on f.merchant_id = s.merchant_id
                and f.tx_date between s.__feature_date - {FRAUD_WINDOW_DAYS - 1}
                    and s.__feature_date
                and f.first_reported_at < s.__event_time
            group by s.__row
        """
        result = con.sql(sql).pl()
    finally:
        con.unregister(view)
    return result.with_columns(pl.col("__row").cast(pl.Int64), pl.col("expected").cast(pl.Int64))


def _mismatch_finding(bad: pl.DataFrame, column: str, sampled: int) -> str:
    examples = "; ".join(
        f"{_row_id(row)} merchant_id={row['merchant_id']} feature_date={row['__feature_date']} "
        f"dataset={row[column]} expected={row['expected']}"
        for row in bad.head(_EXAMPLES).iter_rows(named=True)
    )
    return (
        f"{column!r} disagrees on {bad.height} of {sampled} sampled rows with a recount that "
        "uses only fraud reports that arrived before the feature row's event_time (labels "
        f"reported later are leaking in?): e.g. {examples}"
    )
