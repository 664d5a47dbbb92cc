"""The streaming feature pipeline: event log → card window state → online store, exactly once.

:class:`StreamProcessor` reads micro-batches from the :class:`~.event_log.EventLog` (as many
events as are waiting, up to ``max_batch``), applies them to the :class:`~.state.CardStates` and
commits, in ONE call of :meth:`~fti_assets.lib.store.online.OnlineStoreBackend.commit_stream`
(one SQLite transaction or one Redis Lua script):

- the ``card_transaction_features`` row of every card the batch touched (the state after its
  latest transaction; the store never moves a row back in time, so batch and streaming writes
  coexist);
- the window-state entries the batch added and the old ones it dropped;
- the dead letters (late and invalid events, with the reason);
- the offset of the batch's last event and the cumulative counters.

So an event is applied exactly once: a crash before the commit leaves the previous offset with
the previous state, and the restarted pipeline reads the same events again; a commit is refused
if the stored offset is not the one the batch started from (another instance with the same
consumer name). After a failed commit the in-memory state is ahead of the store, so the
processor refuses further work: restart it (``fti stream`` exits, a supervisor restarts it).

On start the state is restored from the checkpoint's entries plus the offline history (the
trailing 30 days, :func:`~.bootstrap.bootstrap_transactions`), so there is no replay from the
first event. Rules per event, in this order: a payload that is not a valid transaction is
*invalid*; a transaction id the card already holds is a *duplicate* (counted, changes nothing);
one more than ``lateness`` older than its card's latest is *late*; anything else is applied,
in time order whatever order it came in. Invalid and late events are logged, counted and
written to the dead-letter table; none is silently dropped.
"""

from __future__ import annotations

import gc
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from itertools import chain
from typing import Any

import orjson

from fti_assets.lib.features.groups import CARD_TRANSACTION_FEATURES
from fti_assets.lib.store.group_spec import FeatureGroupSpec
from fti_assets.lib.store.online import (
    DeadLetter,
    OnlineStoreBackend,
    StateEntry,
    StreamCheckpoint,
    StreamCommit,
)
from fti_assets.lib.streaming.event_log import EventLog, LoggedEvent
from fti_assets.lib.streaming.events import (
    InvalidEventError,
    Transaction,
    decode_transaction,
    identify,
)
from fti_assets.lib.streaming.state import APPLIED, DUPLICATE, CardStates

logger = logging.getLogger(__name__)

CONSUMER = CARD_TRANSACTION_FEATURES.name
COUNTERS = ("events", "applied", "duplicates", "late", "invalid")
_RATE_WINDOW_S = 10.0


@dataclass(frozen=True)
class StreamConfig:
    """How the pipeline reads and applies the log (``fti stream`` options)."""

    # Names the checkpoint; one running instance per name.
    consumer: str = CONSUMER
    # How much older than its card's latest transaction an event may be and still be applied.
    lateness: timedelta = timedelta(minutes=10)
    # Events per commit at most. An event waits for its whole batch: at ~37 µs of CPU per event
    # on SQLite (~29 on Redis; bench_streaming under load ~4 on 2 cores) a batch of 500 commits
    # within ~20 ms of CPU. Batches of 50 cost ~10 µs more per event (~0.5 ms per commit, mostly
    # SQLite writing the pages each commit dirties); 1,000 or 2,000 saved nothing measurable.
    max_batch: int = 500
    # Longest wait for new events before checking for a stop.
    wait_s: float = 0.5
    # An idle pipeline commits its progress information this often.
    heartbeat_s: float = 5.0

    def __post_init__(self) -> None:
        if not self.consumer:
            raise ValueError("consumer must be a non-empty name")
        if self.max_batch < 1 or self.wait_s < 0 or self.heartbeat_s <= 0:
            raise ValueError(
                f"expected max_batch >= 1, wait_s >= 0, heartbeat_s > 0; got {self.max_batch}, "
                f"{self.wait_s}, {self.heartbeat_s}"
            )


@dataclass
class BatchReport:
    """What one committed micro-batch did."""

    offset: int
    counts: dict[str, int]
    committed_at_us: int
    # Per applied event: commit time minus the time it was logged, in µs (event -> visible).
    latencies_us: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class StartReport:
    """Where a (re)started pipeline resumes."""

    offset: int
    restored_entries: int
    history_transactions: int
    cards: int


_new = tuple.__new__


def _now_us() -> int:
    return time.time_ns() // 1000


def _entry_transaction(entry: StateEntry) -> Transaction:
    return Transaction(
        entry.entry_id, entry.entity, entry.time_us, tuple(orjson.loads(entry.payload))
    )


class StreamProcessor:
    """Consumes an event log into the online store; see the module docstring."""

    def __init__(
        self,
        log: EventLog,
        store: OnlineStoreBackend,
        config: StreamConfig | None = None,
        spec: FeatureGroupSpec = CARD_TRANSACTION_FEATURES,
    ) -> None:
        self.log = log
        self.store = store
        self.config = config or StreamConfig()
        self.spec = spec
        self.states = CardStates(self.config.lateness)
        self.offset = 0
        self.counters = dict.fromkeys(COUNTERS, 0)
        self._started = False
        self._failed: str | None = None
        self._last_commit = 0.0
        self._rate: deque[tuple[float, int]] = deque()

    def start(self, history: Iterable[Transaction] = ()) -> StartReport:
        """Resume from the store's checkpoint, merging in ``history`` (the offline bootstrap)."""
        checkpoint = self.store.stream_checkpoint(self.config.consumer)
        if checkpoint is not None:
            self.offset = checkpoint.offset
            self.counters = {name: int(checkpoint.counters.get(name, 0)) for name in COUNTERS}
        persisted = [_entry_transaction(e) for e in self.store.stream_entries(self.config.consumer)]
        history = list(history)
        self.states.restore(chain(persisted, history))
        # The restored window state is long-lived: keep it out of the garbage collector's scans.
        # Otherwise each full collection walks every card's entries, a pause of 100-200 ms at
        # 5,000 cards that every event waiting in the log pays (the p99 of the latency bench).
        gc.collect()
        gc.freeze()
        self._started = True
        self._last_commit = time.monotonic()
        report = StartReport(self.offset, len(persisted), len(history), len(self.states.cards))
        logger.info(
            "stream %s: resuming after offset %d with %d cards (%d persisted entries, %d "
            "history transactions)",
            self.config.consumer,
            report.offset,
            report.cards,
            report.restored_entries,
            report.history_transactions,
        )
        return report

    def step(self, wait_s: float | None = None) -> BatchReport | None:
        """Read, apply and commit one micro-batch; None when no event arrived within ``wait_s``
        (then, at most every ``heartbeat_s``, an empty commit records that the pipeline lives)."""
        self._check_usable()
        wait = self.config.wait_s if wait_s is None else wait_s
        events = self.log.read(self.offset, self.config.max_batch, wait)
        if not events:
            if time.monotonic() - self._last_commit >= self.config.heartbeat_s:
                self._commit(self.offset, [], [], [], dict(self.counters), None)
            return None
        return self._apply(events)

    def run(
        self,
        should_stop: Callable[[], bool],
        *,
        until_caught_up: bool = False,
        on_batch: Callable[[BatchReport], None] | None = None,
    ) -> None:
        """Process batches until ``should_stop()`` (checked between batches), or until the log
        has no more events when ``until_caught_up``."""
        while not should_stop():
            report = self.step(0.0 if until_caught_up else None)
            if report is None:
                if until_caught_up:
                    return
                continue
            if on_batch is not None:
                on_batch(report)

    def checkpoint(self) -> StreamCheckpoint | None:
        return self.store.stream_checkpoint(self.config.consumer)

    # -- one batch ------------------------------------------------------------------------------

    def _apply(self, events: list[LoggedEvent]) -> BatchReport:
        # The loop runs once per event: locals instead of attribute and dict lookups, counters
        # as ints, tuples built without NamedTuple's Python-level __new__.
        entries: list[StateEntry] = []
        letters: list[DeadLetter] = []
        touched: dict[str, None] = {}
        applied_logged_at: list[int] = []
        apply, decode, dumps, new = self.states.apply, decode_transaction, orjson.dumps, _new
        duplicates = late = invalid = 0
        for event in events:
            try:
                tx = decode(event.payload)
            except InvalidEventError as exc:
                invalid += 1
                card, tx_id = identify(event.payload)
                letters.append(
                    DeadLetter(event.offset, card, tx_id, f"invalid: {exc}", event.payload)
                )
                logger.warning("stream: event %d is invalid: %s", event.offset, exc)
                continue
            outcome, reason = apply(tx)
            if outcome == APPLIED:
                touched[tx.card_id] = None
                applied_logged_at.append(event.logged_at_us)
                entries.append(
                    new(StateEntry, (tx.card_id, tx.time_us, tx.transaction_id, dumps(tx.values)))
                )
            elif outcome == DUPLICATE:
                duplicates += 1
                logger.debug("stream: event %d duplicates %s", event.offset, tx.transaction_id)
            else:  # LATE, with its reason
                late += 1
                letters.append(
                    DeadLetter(
                        event.offset, tx.card_id, tx.transaction_id, str(reason), event.payload
                    )
                )
                logger.warning("stream: event %d dead-lettered: %s", event.offset, reason)
        counts = {
            "events": len(events),
            "applied": len(entries),
            "duplicates": duplicates,
            "late": late,
            "invalid": invalid,
        }
        cards = self.states.cards
        rows = [cards[card].row() for card in touched]
        counters = {name: self.counters[name] + counts[name] for name in COUNTERS}
        committed_at = self._commit(events[-1].offset, rows, entries, letters, counters, events[-1])
        self.offset, self.counters = events[-1].offset, counters
        return BatchReport(
            self.offset, counts, committed_at, [committed_at - t for t in applied_logged_at]
        )

    def _commit(
        self,
        offset: int,
        rows: list[dict[str, Any]],
        entries: list[StateEntry],
        letters: list[DeadLetter],
        counters: dict[str, int],
        last: LoggedEvent | None,
    ) -> int:
        info: dict[str, Any] = {"events_per_s": self._events_per_s(counters["events"])}
        if last is not None:
            info["last_logged_at_us"] = last.logged_at_us
        commit = StreamCommit(
            consumer=self.config.consumer,
            expected_offset=self.offset,
            offset=offset,
            spec=self.spec,
            rows=rows,
            entries=entries,
            trims=self.states.take_trims(),
            dead_letters=letters,
            counters=counters,
            info=info,
        )
        try:
            self.store.commit_stream(commit)
        except BaseException as exc:
            self._failed = f"{type(exc).__name__}: {exc}"
            raise
        self._last_commit = time.monotonic()
        return _now_us()

    def _events_per_s(self, total: int) -> float:
        """Events per second over the last ~10 s of commits."""
        now = time.monotonic()
        rate = self._rate
        rate.append((now, total))
        while len(rate) > 2 and now - rate[1][0] >= _RATE_WINDOW_S:
            rate.popleft()
        (t0, n0), (t1, n1) = rate[0], rate[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0

    def _check_usable(self) -> None:
        if not self._started:
            raise RuntimeError("call start() before processing events")
        if self._failed is not None:
            raise RuntimeError(
                f"stream {self.config.consumer}: a commit failed ({self._failed}); the in-memory "
                "state is ahead of the store, restart the pipeline to resume from its checkpoint"
            )
