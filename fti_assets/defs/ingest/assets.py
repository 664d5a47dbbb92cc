"""Ingestion: landing files → raw tables in the offline store, behind Pandera contracts.

Each file's rows are split into accepted rows and quarantined rows (table ``quarantine``, with a
reason); rows_in = accepted + quarantined. A partition is replaced in one transaction.
"""

import functools
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import duckdb

from fti_assets.defs.metadata import OWNERS, markdown_table
from fti_assets.partitions import DAILY_TAGS, daily_partitions, lookback_dep, single_run
from fti_assets.resources import DataDirResource, OfflineStoreResource

if TYPE_CHECKING:
    from fti_assets.lib.ingest.raw import IngestReport

# fti_assets.lib.ingest.raw (and Pandera) are imported inside the assets: loading the definitions
# should not pay for them.
KINDS = {"duckdb", "pandera", "parquet"}


def _days(context: dg.AssetExecutionContext) -> list[date]:
    window = context.partition_time_window
    day, end = window.start.date(), window.end.date()
    days = []
    while day < end:
        days.append(day)
        day += timedelta(days=1)
    return days


def _report_metadata(reports: list["IngestReport"]) -> dict:
    rows_in = sum(r.rows_in for r in reports)
    accepted = sum(r.accepted for r in reports)
    quarantined = sum(r.quarantined for r in reports)
    reasons: dict[str, int] = {}
    for r in reports:
        for reason, n in r.reasons.items():
            reasons[reason] = reasons.get(reason, 0) + n
    warnings = [w for r in reports for w in r.warnings]
    return {
        "rows_in": rows_in,
        "rows_accepted": accepted,
        "rows_quarantined": quarantined,
        "dagster/row_count": accepted,
        "files": len(reports),
        "quarantine_reasons": markdown_table(
            [{"reason": k, "rows": v} for k, v in sorted(reasons.items(), key=lambda kv: -kv[1])]
        ),
        "per_file": markdown_table(
            [
                {
                    "file": r.source_file.rsplit("/", 1)[-1],
                    "rows_in": r.rows_in,
                    "accepted": r.accepted,
                    "quarantined": r.quarantined,
                }
                for r in reports
            ],
            limit=31,
        ),
        "warnings": "\n".join(warnings) or "none",
        "lake_snapshot": max(r.lake_snapshot for r in reports) if reports else None,
    }


def _ingest_days(
    context: dg.AssetExecutionContext,
    offline_store: OfflineStoreResource,
    data_dir: DataDirResource,
    ingest_day: Callable[[duckdb.DuckDBPyConnection, object, date], "IngestReport"],
) -> dg.MaterializeResult:
    reports = []
    with offline_store.connection() as con:
        for day in _days(context):
            report = ingest_day(con, data_dir.layout.landing_dir, day)
            for warning in report.warnings:
                context.log.warning(warning)
            context.log.info(
                f"{report.source_file}: {report.rows_in} in, {report.accepted} accepted, "
                f"{report.quarantined} quarantined"
            )
            reports.append(report)
    return dg.MaterializeResult(metadata=_report_metadata(reports))


def _ingest_reference(
    offline_store: OfflineStoreResource,
    data_dir: DataDirResource,
    ingest_file: Callable[[duckdb.DuckDBPyConnection, Path], "IngestReport"],
) -> dg.MaterializeResult:
    with offline_store.connection() as con:
        report = ingest_file(con, data_dir.layout.landing_dir)
    return dg.MaterializeResult(metadata=_report_metadata([report]))


# Every raw asset: its stage, kinds and owner, and a writer of the offline store.
raw_asset = functools.partial(
    dg.asset,
    group_name="ingest",
    kinds=KINDS,
    owners=OWNERS,
    tags={"layer": "raw"},
)


@raw_asset()
def raw_cards(
    offline_store: OfflineStoreResource, data_dir: DataDirResource
) -> dg.MaterializeResult:
    """Card and customer reference data (home location, credit limit, age band, open date)."""
    from fti_assets.lib.ingest.raw import ingest_cards

    return _ingest_reference(offline_store, data_dir, ingest_cards)


@raw_asset()
def raw_merchants(
    offline_store: OfflineStoreResource, data_dir: DataDirResource
) -> dg.MaterializeResult:
    """Merchant reference data (category, location, risk profile)."""
    from fti_assets.lib.ingest.raw import ingest_merchants

    return _ingest_reference(offline_store, data_dir, ingest_merchants)


@raw_asset(
    partitions_def=daily_partitions,
    backfill_policy=single_run,
    deps=[raw_cards, raw_merchants],
    tags={"layer": "raw", **DAILY_TAGS},
)
def raw_transactions(
    context: dg.AssetExecutionContext,
    offline_store: OfflineStoreResource,
    data_dir: DataDirResource,
) -> dg.MaterializeResult:
    """Card transactions, one partition per daily landing file (UTC day)."""
    from fti_assets.lib.ingest.raw import ingest_transactions_day

    return _ingest_days(context, offline_store, data_dir, ingest_transactions_day)


@raw_asset(
    partitions_def=daily_partitions,
    backfill_policy=single_run,
    # A label reported on day d refers to a transaction of the 30 days before.
    deps=[lookback_dep("raw_transactions", days=30)],
    tags={"layer": "raw", **DAILY_TAGS},
)
def raw_fraud_labels(
    context: dg.AssetExecutionContext,
    offline_store: OfflineStoreResource,
    data_dir: DataDirResource,
) -> dg.MaterializeResult:
    """Fraud labels, partitioned by the day they were reported (days after the transaction)."""
    from fti_assets.lib.ingest.raw import ingest_fraud_labels_day

    return _ingest_days(context, offline_store, data_dir, ingest_fraud_labels_day)
