"""The online service's inference log, loaded into the offline store one logged day at a time
(each model's batch predictions come from its spec: fti_assets/defs/models/)."""

from datetime import timedelta

import dagster as dg
import polars as pl

from fti_assets.defs.metadata import OWNERS, markdown_table
from fti_assets.lib.inference.log import read_inference_logs
from fti_assets.lib.store.offline import Replacement, replace_partitions
from fti_assets.partitions import DAILY_TAGS, log_partitions, single_run
from fti_assets.resources import DataDirResource, OfflineStoreResource
from fti_assets.specs.inference_log import SERVICE_LOG

# The service appends to its log all day: today's and yesterday's partitions are reloaded every
# 15 minutes (each replaced atomically), so the day's requests reach monitoring while it runs.
RELOAD_LOGS = (
    dg.AutomationCondition.in_latest_time_window(timedelta(days=1))
    & dg.AutomationCondition.cron_tick_passed("*/15 * * * *", "UTC").since_last_handled()
    & ~dg.AutomationCondition.in_progress()
).with_label("reload today's and yesterday's logged requests every 15 minutes")


@dg.asset(
    group_name="inference",
    kinds={"ducklake", "json"},
    owners=OWNERS,
    partitions_def=log_partitions,
    backfill_policy=single_run,
    tags=DAILY_TAGS,
    automation_condition=RELOAD_LOGS,
)
def inference_log(
    context: dg.AssetExecutionContext,
    offline_store: OfflineStoreResource,
    data_dir: DataDirResource,
) -> dg.MaterializeResult:
    """Every online prediction of the day (request fields, the exact feature vector used as
    JSON, model version, probability, latency), from the service's JSONL log files into the
    offline store, one logged day per partition, replaced atomically. Input to monitoring and
    to the train/serve skew check."""
    window = context.partition_time_window
    day, frames = window.start.date(), []
    while day < window.end.date():
        frames.append(read_inference_logs(data_dir.layout.inference_log_dir, SERVICE_LOG, day))
        day = day + timedelta(days=1)
    logs = (
        pl.concat(frames)
        if frames
        else read_inference_logs(data_dir.layout.inference_log_dir, SERVICE_LOG)
    )
    with offline_store.connection() as con:
        snapshot = replace_partitions(
            con,
            [
                Replacement(
                    "inference_log",
                    logs,
                    "logged_at >= ? and logged_at < ?",
                    [window.start, window.end],
                )
            ],
            message=f"inference_log [{window.start.isoformat()}, {window.end.isoformat()})",
        )
    latency = logs["latency_ms"]
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": logs.height,
            "model_versions": markdown_table(
                logs.group_by("model_version").len().sort("model_version").to_dicts()
            ),
            "fallback_share": float(logs["fallback"].mean()) if logs.height else 0.0,
            "latency_p50_ms": float(latency.quantile(0.5)) if logs.height else 0.0,
            "latency_p99_ms": float(latency.quantile(0.99)) if logs.height else 0.0,
            "lake_snapshot": snapshot,
        }
    )
