"""Where the streaming pipeline stands: committed offset, lag behind the log, rate, counters.

Read from the checkpoint the pipeline commits into the online store and from the event log, by
the Dagster sensor that observes ``streaming_card_features``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fti_assets.lib.store.online import OnlineStoreBackend
from fti_assets.lib.streaming.event_log import EventLog
from fti_assets.lib.streaming.events import from_us, to_us


@dataclass(frozen=True)
class StreamStatus:
    consumer: str
    committed_offset: int  # 0: the pipeline has never committed
    log_end_offset: int
    lag_events: int
    # Age of the oldest event not applied yet; 0 when the pipeline has caught up.
    lag_seconds: float
    events_per_s: float  # over the pipeline's last ~10 s
    counters: dict[str, int]
    last_commit_at: datetime | None  # the last commit or idle heartbeat

    @property
    def caught_up(self) -> bool:
        return self.lag_events == 0


def stream_status(
    store: OnlineStoreBackend, log: EventLog, consumer: str, now: datetime
) -> StreamStatus:
    """The status of ``consumer`` at ``now`` (an aware datetime)."""
    checkpoint = store.stream_checkpoint(consumer)
    offset = 0 if checkpoint is None else checkpoint.offset
    end = log.end_offset()
    lag_seconds = 0.0
    if end > offset:
        (oldest,) = log.read(offset, 1)
        lag_seconds = max(0.0, (to_us(now) - oldest.logged_at_us) / 1e6)
    return StreamStatus(
        consumer=consumer,
        committed_offset=offset,
        log_end_offset=end,
        lag_events=max(0, end - offset),
        lag_seconds=lag_seconds,
        events_per_s=float(checkpoint.info.get("events_per_s", 0.0)) if checkpoint else 0.0,
        counters=dict(checkpoint.counters) if checkpoint else {},
        last_commit_at=checkpoint.updated_at if checkpoint else None,
    )


def newest_logged_at(log: EventLog) -> datetime | None:
    """When the newest event of the log was appended (None: the log is empty)."""
    end = log.end_offset()
    if end == 0:
        return None
    (newest,) = log.read(end - 1, 1)
    return from_us(newest.logged_at_us)
