"""Daily partitions shared by every partitioned asset (landing, feature and scoring day).

The days run from the world's first day up to the last complete UTC day, and grow by themselves
as days pass: a day that lands tomorrow is a partition tomorrow, with no reload of the code.
``FTI_END_DATE`` caps them (tests and benchmarks pin a window); ``FTI_START_DATE`` moves the
start (see :func:`fti_assets.lib.core.settings.partition_start`).
"""

from __future__ import annotations

from datetime import date, timedelta

import dagster as dg

from fti_assets.lib.core.settings import partition_end_cap, partition_start


def daily_partitions_from(start: date, end: date | None) -> dg.DailyPartitionsDefinition:
    """UTC days from ``start`` up to the last complete day, and never past ``end`` if given."""
    return dg.DailyPartitionsDefinition(
        start_date=start.isoformat(),
        # end_date is exclusive; without one, the last partition is the last complete day.
        end_date=(end + timedelta(days=1)).isoformat() if end else None,
        timezone="UTC",
    )


_start = partition_start()
daily_partitions = daily_partitions_from(_start, partition_end_cap(_start))

# Every asset partitioned by ``daily_partitions`` carries this tag, the one dbt gives its models
# tagged ``daily``: automation conditions tell a day's upstream from reference data by it.
DAILY_TAG = "daily"
DAILY_TAGS = {DAILY_TAG: ""}


def lookback_dep(asset: str, days: int) -> dg.AssetDep:
    """Depend on the upstream's last ``days`` daily partitions up to the same day (a trailing
    window reads that much history); days before the first partition are simply absent."""
    return dg.AssetDep(
        asset,
        partition_mapping=dg.TimeWindowPartitionMapping(
            start_offset=-days, end_offset=0, allow_nonexistent_upstream_partitions=True
        ),
    )


# A partitioned asset launched over a range of days (a backfill, `fti demo`, the landing sensor
# catching up) runs as ONE run that processes the whole window, instead of one run per day.
single_run = dg.BackfillPolicy.single_run()

# The online service logs in real time: its days run from the first data day up to today.
log_partitions = dg.DailyPartitionsDefinition(
    start_date=_start.isoformat(), timezone="UTC", end_offset=1
)
