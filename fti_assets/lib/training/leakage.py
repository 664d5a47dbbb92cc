"""The leakage canary: checks a training dataset for information from the future or the label.

:func:`check_leakage` runs three checks and reports every violation it finds (it never stops at
the first one):

1. **Point in time.** Every ``{group}__event_time`` column (which feature row a row used) is null
   or strictly earlier than the row's prediction time.
2. **Label-derived features.** No feature column is named like the label or label metadata (the
   model's :class:`LeakageRules` give the pattern: ``fraud``, ``label``, ``reported``…), except
   the allow-listed ones, which are built from PAST labels only (and a recount verifies exactly
   that). And no feature column is (nearly) the label itself: equal to it on at least
   :data:`IDENTICAL_SHARE` of rows, or a perfect separator of the two classes.
3. **Recounts.** Each :class:`RecountCheck` the rules declare (per feature group, in the specs)
   recomputes allow-listed label-derived features from raw data for a seeded sample of rows,
   counting only the labels that had arrived before the feature row's event time; a value that
   includes labels reported later is a finding.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import polars as pl

from fti_assets.lib.features.views import col

logger = logging.getLogger(__name__)

EVENT_TIME_SUFFIX = "__event_time"
IDENTICAL_SHARE = 0.999
# A perfect separation is only evidence of leakage when both classes have enough rows for it not
# to happen by chance.
MIN_CLASS_ROWS_FOR_SEPARATION = 20
DEFAULT_SAMPLE_ROWS = 2_000
_EXAMPLES = 3


@dataclass(frozen=True)
class RecountCheck:
    """Recomputes label-derived features from raw data on a sample (declared in the specs).

    ``run(con, frame, sample_rows, seed)`` returns (findings, rows sampled); it runs when the
    dataset holds any of ``columns``.
    """

    name: str
    columns: frozenset[str]
    run: Callable[[duckdb.DuckDBPyConnection, pl.DataFrame, int, int], tuple[list[str], int]]


@dataclass(frozen=True)
class LeakageRules:
    """What counts as label-derived for a model, what is allowed, and how it is verified."""

    label_like: re.Pattern[str]  # feature names that look label-derived
    allowed: frozenset[str] = frozenset()  # label-derived on purpose (a recount verifies them)
    recounts: tuple[RecountCheck, ...] = ()


@dataclass(frozen=True)
class LeakageReport:
    findings: list[str]
    rows_checked: int
    rows_recounted: int = 0
    checks_run: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.findings

    def to_metadata(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "findings": list(self.findings),
            "rows_checked": self.rows_checked,
            "rows_recounted": self.rows_recounted,
            "checks_run": list(self.checks_run),
        }


def check_leakage(
    con: duckdb.DuckDBPyConnection,
    frame: pl.DataFrame,
    manifest_like: Mapping[str, Any],
    rules: LeakageRules,
    *,
    sample_rows: int = DEFAULT_SAMPLE_ROWS,
    seed: int = 0,
) -> LeakageReport:
    """Run the leakage checks on ``frame``; ``passed`` is False if anything was found.

    ``manifest_like`` needs ``feature_columns`` (the model inputs), ``label_column`` and
    ``label.time_column``; ``feature_groups`` (name -> info), if present, makes a group whose
    event-time column is missing a finding too. ``con`` is the offline store the recounts read
    (read-only, pinned to the dataset's snapshot, is best).
    """
    for key in ("feature_columns", "label_column", "label"):
        if key not in manifest_like:
            raise ValueError(
                f"manifest_like has no {key!r}; expected the dataset manifest (or a dict with "
                "the same keys)"
            )
    label = manifest_like["label_column"]
    label_time = manifest_like["label"]["time_column"]
    for column in (label, label_time):
        if column not in frame.columns:
            raise ValueError(f"frame lacks column {column!r}; it has {frame.columns}")
    feature_columns = list(manifest_like["feature_columns"])
    groups = list(manifest_like.get("feature_groups") or [])
    findings = [
        *point_in_time_findings(frame, label_time, groups),
        *label_name_findings(feature_columns, label, rules),
        *label_value_findings(frame, feature_columns, label),
    ]
    checks = ["point_in_time", "label_names", "label_values"]
    recounted = 0
    for recount in rules.recounts:
        if recount.columns & set(frame.columns):
            found, sampled = recount.run(con, frame, sample_rows, seed)
            findings += found
            recounted += sampled
            checks.append(recount.name)
    report = LeakageReport(findings, frame.height, recounted, checks)
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
            f"{row_id(row)} {label_time}={row[label_time]} {column}={row[column]}"
            for row in late.head(_EXAMPLES).iter_rows(named=True)
        )
        findings.append(
            f"feature group {group!r}: {late.height} of {frame.height} rows use a feature row "
            f"whose event_time is not strictly before {label_time} (e.g. {examples})"
        )
    return findings


def row_id(row: Mapping[str, Any]) -> str:
    """The first id-like column of a row, to name it in a finding."""
    for name, value in row.items():
        if name.endswith("_id"):
            return f"{name}={value}"
    return "row"


# --------------------------------------------------------------------------------------------
# 2. Label-derived features
# --------------------------------------------------------------------------------------------


def label_name_findings(
    feature_columns: Sequence[str], label: str, rules: LeakageRules
) -> list[str]:
    """Feature columns named like the label or label metadata (allow-list excepted)."""
    findings = []
    for column in feature_columns:
        if column in rules.allowed:
            continue
        if column == label or rules.label_like.search(column):
            findings.append(
                f"feature column {column!r} is named like the label or label metadata; a "
                f"label-derived feature must be allow-listed ({sorted(rules.allowed)}) "
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
