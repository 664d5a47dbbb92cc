"""Daily partitions shared by every partitioned asset (landing, feature and scoring day)."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg

from fti_assets.lib.settings import partition_dates

_start, _end = partition_dates()

daily_partitions = dg.DailyPartitionsDefinition(
    start_date=_start.isoformat(),
    end_date=(_end + timedelta(days=1)).isoformat(),  # end_date is exclusive
    timezone="UTC",
)


def lookback_dep(asset: str, days: int) -> dg.AssetDep:
    """Depend on the upstream's last ``days`` daily partitions up to the same day (a trailing
    window reads that much history); days before the first partition are simply absent."""
    return dg.AssetDep(
        asset,
        partition_mapping=dg.TimeWindowPartitionMapping(
            start_offset=-days, end_offset=0, allow_nonexistent_upstream_partitions=True
        ),
    )


# A partitioned asset launched over a range of days (a backfill, `fti demo`) runs as ONE run
# that processes the whole window, instead of one run per day.
single_run = dg.BackfillPolicy.single_run()

# The online service logs in real time: its days run from the first data day up to today.
log_partitions = dg.DailyPartitionsDefinition(
    start_date=_start.isoformat(), timezone="UTC", end_offset=1
)
