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

# A partitioned asset launched over a range of days (a backfill, `fti demo`) runs as ONE run
# that processes the whole window, instead of one run per day.
single_run = dg.BackfillPolicy.single_run()

# The online service logs in real time: its days run from the first data day up to today.
log_partitions = dg.DailyPartitionsDefinition(
    start_date=_start.isoformat(), timezone="UTC", end_offset=1
)
