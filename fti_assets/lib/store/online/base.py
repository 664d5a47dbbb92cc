"""What every online store backend shares: result types, errors and the backend interface.

Callers (the Dagster assets and checks, ``fti features get``, the HTTP service, the streaming
pipeline) hold an :class:`OnlineStoreBackend` opened by
:func:`fti_assets.lib.store.online.open_online_store` and catch :class:`OnlineStoreError`,
never a driver's own exception type.

The streaming pipeline keeps its checkpoint in the online store it writes, so that the rows of a
micro-batch, the window state behind them and the log offset they reach are committed together
(:meth:`OnlineStoreBackend.commit_stream`): one SQLite transaction, or one Redis Lua script.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, Protocol, runtime_checkable

import polars as pl

from fti_assets.lib.store.group_spec import FeatureGroupSpec


class OnlineRow(NamedTuple):
    """The stored latest values of one entity of one feature group.

    A NamedTuple rather than a frozen dataclass: building one is several times cheaper, and a
    100-entity ``get_many`` builds a hundred of them.
    """

    group: str
    version: int
    keys: dict[str, Any]
    event_time: datetime  # UTC, timezone-aware
    features: dict[str, Any]


@dataclass(frozen=True)
class NotFound:
    """Explicit result of a lookup for an entity the group does not hold; it is falsy."""

    group: str
    keys: dict[str, Any]

    def __bool__(self) -> bool:
        return False


@dataclass(frozen=True)
class WriteResult:
    """What one write did: rows received, entities written and entities kept because newer."""

    group: str
    version: int
    rows_in: int
    entities_written: int
    entities_skipped_older: int


class OnlineStoreError(Exception):
    """The online store failed: the backend-neutral error every caller catches."""


class OnlineStoreUnavailableError(OnlineStoreError):
    """The store cannot be reached or opened (missing file, Redis down, connection lost)."""


class OnlineStoreLayoutError(OnlineStoreError):
    """A group version in the store was written with a storage layout this code does not read."""


class StreamFencedError(OnlineStoreError):
    """A stream commit found another offset than the one its batch started from.

    Another consumer with the same name committed in between; applying this batch would apply
    its events twice, so it is refused and nothing of it is written.
    """

    @classmethod
    def for_offsets(cls, consumer: str, stored: int, expected: int) -> StreamFencedError:
        return cls(
            f"stream consumer {consumer!r}: the store holds offset {stored}, but this batch "
            f"starts from offset {expected}; another consumer with the same name is running "
            "(stop it, or give this one another --consumer name)"
        )


class StateEntry(NamedTuple):
    """One event kept in a streaming consumer's window state, persisted with its commit."""

    entity: str  # e.g. the card id
    time_us: int  # event time, microseconds since the epoch (UTC)
    entry_id: str  # e.g. the transaction id; unique per entity
    payload: bytes  # the values the windows aggregate (JSON)


class DeadLetter(NamedTuple):
    """An event the streaming pipeline did not apply, with the reason (late or invalid)."""

    offset: int
    entity: str | None
    event_id: str | None
    reason: str
    payload: bytes


@dataclass(frozen=True)
class StreamCommit:
    """Everything one micro-batch of a streaming consumer writes, atomically.

    ``expected_offset`` is the offset committed before the batch (0: none); the commit is refused
    with :class:`StreamFencedError` unless the store still holds it. ``rows`` are the newest
    feature rows of the entities the batch touched (entity keys, event time and every feature of
    ``spec``), upserted with the store's rule that a row never moves back in time.
    ``trims`` maps an entity to the event time up to which (inclusive) its persisted entries
    may be deleted. ``counters`` are cumulative (they replace the stored ones); ``info`` is
    progress information (rates, times) that is not part of the state.
    """

    consumer: str
    expected_offset: int
    offset: int
    spec: FeatureGroupSpec
    rows: Sequence[Mapping[str, Any]]
    entries: Sequence[StateEntry] = ()
    trims: Mapping[str, int] = field(default_factory=dict)
    dead_letters: Sequence[DeadLetter] = ()
    counters: Mapping[str, int] = field(default_factory=dict)
    info: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StreamCheckpoint:
    """The committed position and counters of a streaming consumer."""

    consumer: str
    offset: int
    counters: dict[str, int]
    info: dict[str, Any]
    updated_at: datetime


@runtime_checkable
class OnlineStoreBackend(Protocol):
    """The interface of every online store backend (SQLite, Redis)."""

    url: str

    def write_group(self, spec: FeatureGroupSpec, frame: pl.DataFrame) -> WriteResult: ...

    def replace_group(self, spec: FeatureGroupSpec, frame: pl.DataFrame) -> WriteResult: ...

    def get(self, group: str, keys: dict[str, Any] | Any) -> OnlineRow | NotFound: ...

    def get_many(
        self, group: str, keys: Sequence[dict[str, Any] | Any]
    ) -> list[OnlineRow | NotFound]: ...

    def groups(self) -> list[dict[str, Any]]: ...

    def latest(self, group: str, version: int | None = None) -> pl.DataFrame: ...

    def commit_stream(self, commit: StreamCommit) -> None: ...

    def stream_checkpoint(self, consumer: str) -> StreamCheckpoint | None: ...

    def stream_entries(self, consumer: str) -> Iterator[StateEntry]: ...

    def dead_letters(self, consumer: str) -> list[DeadLetter]: ...

    def close(self) -> None: ...

    def __enter__(self) -> OnlineStoreBackend: ...

    def __exit__(self, *exc: object) -> None: ...
