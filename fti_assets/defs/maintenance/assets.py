"""Maintenance of the offline store: small files merged, old snapshots expired, on a schedule."""

from datetime import timedelta

import dagster as dg

from fti_assets.defs.metadata import OWNERS
from fti_assets.lib.store.offline import maintain
from fti_assets.lib.training.datasets import lake_snapshots_in_use
from fti_assets.resources import DataDirResource, OfflineStoreResource


class LakeMaintenanceConfig(dg.Config):
    """How long snapshots stay readable (time travel), beyond those datasets were built from."""

    retention_days: float = 7.0
    orphan_age_hours: float = 6.0


@dg.asset(
    group_name="maintenance",
    kinds={"ducklake", "parquet"},
    owners=OWNERS,
)
def lake_maintenance(
    context: dg.AssetExecutionContext,
    config: LakeMaintenanceConfig,
    offline_store: OfflineStoreResource,
    data_dir: DataDirResource,
) -> dg.MaterializeResult:
    """The offline store's housekeeping: adjacent small Parquet files merged, snapshots older
    than the retention expired — except every snapshot a training dataset was built from, so
    `fti models reproduce` keeps working — and files no snapshot reads any more deleted."""
    keep = lake_snapshots_in_use(data_dir.layout.datasets_dir)
    with offline_store.connection() as con:
        report = maintain(
            con,
            keep=keep,
            retention=timedelta(days=config.retention_days),
            orphan_age=timedelta(hours=config.orphan_age_hours),
        )
    context.log.info(
        f"lake: {report.files_before} → {report.files_after} data files, "
        f"{len(report.snapshots_expired)} snapshots expired"
    )
    return dg.MaterializeResult(
        metadata={
            "data_files_before": report.files_before,
            "data_files_after": report.files_after,
            "data_bytes_before": report.bytes_before,
            "data_bytes_after": report.bytes_after,
            "snapshots_before": report.snapshots_before,
            "snapshots_expired": len(report.snapshots_expired),
            "snapshots_kept_for_datasets": ", ".join(map(str, report.snapshots_kept_for_datasets))
            or "none",
            "files_deleted": report.files_removed,
            "orphan_files_deleted": report.orphans_removed,
            "retention_days": config.retention_days,
        }
    )


lake_maintenance_schedule = dg.ScheduleDefinition(
    name="lake_maintenance_nightly",
    target=dg.AssetSelection.assets(lake_maintenance),
    cron_schedule="30 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=(
        "Every night at 03:30 UTC: merge the offline store's small files and expire snapshots "
        "past the retention (those training datasets use are kept)."
    ),
)
