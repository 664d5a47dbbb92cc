"""Validating a feature group's rows against its contract, with a summary fit for a check."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
from pandera.errors import SchemaErrors

from fti_assets.lib.ingest.contracts import feature_group_contract
from fti_assets.lib.store.group_spec import FeatureGroupSpec


@dataclass(frozen=True)
class ContractReport:
    passed: bool
    rows: int
    failures: int
    failure_summary: list[dict]  # one row per (column, check): count and an example value

    def describe(self) -> str:
        if self.passed:
            return f"{self.rows} rows satisfy the contract"
        parts = [
            f"{f['column']}: {f['check']} ({f['count']}x, e.g. {f['example']})"
            for f in self.failure_summary
        ]
        return f"{self.failures} contract failures in {self.rows} rows: " + "; ".join(parts)


def validate_feature_group(spec: FeatureGroupSpec, frame: pl.DataFrame) -> ContractReport:
    """Check a feature group's rows: columns and types, declared ranges, non-null keys and
    event_time, and one row per (entity key, event_time)."""
    frame = frame.select(
        [c for c in frame.columns if c in spec.columns]
        + [c for c in frame.columns if c not in spec.columns]
    )
    try:
        feature_group_contract(spec).validate(frame, lazy=True)
    except SchemaErrors as exc:
        cases = exc.failure_cases
        summary = (
            cases.group_by(pl.col("column").fill_null("(table)"), "check", maintain_order=True)
            .agg(pl.len().alias("count"), pl.col("failure_case").first().alias("example"))
            .to_dicts()
        )
        return ContractReport(False, frame.height, cases.height, summary)
    return ContractReport(True, frame.height, 0, [])
