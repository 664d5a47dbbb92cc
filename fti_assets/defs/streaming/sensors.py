"""The sensor that reports the streaming pipeline's state into the asset graph."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import dagster as dg

from fti_assets.defs.streaming.assets import streaming_card_features, transaction_event_log
from fti_assets.lib.store.online import OnlineStoreUnavailableError
from fti_assets.lib.streaming.event_log import EventLogUnavailableError
from fti_assets.lib.streaming.processor import CONSUMER
from fti_assets.lib.streaming.status import StreamStatus, newest_logged_at, stream_status
from fti_assets.resources import EventLogResource, OnlineStoreResource


def _stream_metadata(status: StreamStatus, reason: str) -> dict[str, dg.RawMetadataValue]:
    counters = status.counters
    return {
        "last_offset": status.committed_offset,
        "log_end_offset": status.log_end_offset,
        "lag_events": status.lag_events,
        "lag_seconds": round(status.lag_seconds, 3),
        "events_per_s": round(status.events_per_s, 1),
        "applied": counters.get("applied", 0),
        "duplicates": counters.get("duplicates", 0),
        "late_dead_lettered": counters.get("late", 0),
        "invalid_dead_lettered": counters.get("invalid", 0),
        "last_commit_at": str(status.last_commit_at) if status.last_commit_at else "never",
        "consumer": status.consumer,
        "reason": reason,
    }


@dg.sensor(
    name="streaming_pipeline_sensor",
    description=(
        "Every 30 s, reads the streaming pipeline's checkpoint (in the online store) and the "
        "event log's end; records lag, events/s, last offset and dead-letter counts as an "
        "observation of streaming_card_features, and a materialization when the pipeline "
        "applied new events or is caught up and alive (what its freshness policy checks). "
        "Skips, saying why, while the online store or event log does not exist yet."
    ),
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def streaming_pipeline_sensor(
    context: dg.SensorEvaluationContext,
    online_store: OnlineStoreResource,
    event_log: EventLogResource,
) -> dg.SensorResult | dg.SkipReason:
    cursor = json.loads(context.cursor) if context.cursor else {}
    try:
        with online_store.open(readonly=True) as store, event_log.open(readonly=True) as log:
            status = stream_status(store, log, CONSUMER, datetime.now(UTC))
            newest = newest_logged_at(log)
    except (OnlineStoreUnavailableError, EventLogUnavailableError) as exc:
        return dg.SkipReason(f"streaming pipeline not observable yet: {exc}")
    commit_us = int(status.last_commit_at.timestamp() * 1e6) if status.last_commit_at else 0
    advanced = status.committed_offset > cursor.get("offset", 0)
    alive_and_caught_up = status.caught_up and commit_us > cursor.get("commit_us", 0)
    reason = (
        f"applied events up to offset {status.committed_offset}"
        if advanced
        else "caught up with the log"
        if alive_and_caught_up
        else "no commit since the last report"
    )
    metadata = _stream_metadata(status, reason)
    events: list[dg.AssetMaterialization | dg.AssetObservation] = [
        dg.AssetObservation(asset_key=streaming_card_features.key, metadata=metadata),
        dg.AssetObservation(
            asset_key=transaction_event_log.key,
            metadata={
                "end_offset": status.log_end_offset,
                "newest_event_logged_at": str(newest) if newest else "empty",
                "url": event_log.display_url,
            },
        ),
    ]
    if advanced or alive_and_caught_up:
        events.append(
            dg.AssetMaterialization(asset_key=streaming_card_features.key, metadata=metadata)
        )
    if status.log_end_offset > cursor.get("log_end", 0):
        events.append(
            dg.AssetMaterialization(
                asset_key=transaction_event_log.key,
                metadata={"end_offset": status.log_end_offset},
            )
        )
    new_cursor = {
        "offset": status.committed_offset,
        "commit_us": commit_us,
        "log_end": status.log_end_offset,
    }
    return dg.SensorResult(asset_events=events, cursor=json.dumps(new_cursor))
