"""The event log: a durable, ordered log of the transactions the service scored.

One small interface (:class:`EventLog`), two backends chosen by ``FTI_EVENT_LOG_URL``:

- ``sqlite:///abs/path/events.sqlite`` (the default, ``<FTI_DATA_DIR>/events.sqlite``): a WAL
  table with an AUTOINCREMENT offset, so offsets are never reused, even after old events are
  deleted. Every writer serialises on SQLite's write lock, so offsets become visible in order.
  ``synchronous=NORMAL``: an appended event survives the crash of any process (the service,
  the pipeline); the last appends before a power loss may not. Readers poll (every
  ``poll_interval_s``, 2 ms by default) while they wait.
- ``redis://host:port/db``: a Redis Stream (``fti:events:transactions``); a Lua script takes the
  next offset from a counter and adds the entry with the id ``0-<offset>``, so both backends
  number events 1, 2, 3, ... Readers wait with ``XREAD BLOCK``. Durability is the server's
  (``appendonly yes`` with ``appendfsync everysec`` loses at most a second on power loss).

Offsets start at 1; ``read(after=0)`` reads from the first event. Kafka fits behind the same
interface (one partition's offsets); see docs/scale-out.md.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple, Protocol, runtime_checkable

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from fti_assets.lib.core.store_urls import REDIS, backend_of, display_url, sqlite_path

EVENT_LOG_URL_SETTING = "FTI_EVENT_LOG_URL"
_TABLE = "events"
_STREAM = "fti:events:transactions"
_SEQUENCE = "fti:events:transactions:offset"
_BUSY_TIMEOUT_S = 30.0
_POLL_INTERVAL_S = 0.002

# Append ARGV[2..] to the stream with ids 0-<n>, n from the counter; ARGV[1] is the log time.
_APPEND_LUA = """
local offsets = {}
for i = 2, #ARGV do
  local n = redis.call('INCR', KEYS[2])
  redis.call('XADD', KEYS[1], '0-' .. n, 't', ARGV[1], 'p', ARGV[i])
  offsets[#offsets + 1] = n
end
return offsets
"""


class LoggedEvent(NamedTuple):
    offset: int
    logged_at_us: int  # wall clock of the appender, microseconds since the epoch
    payload: bytes


class EventLogError(Exception):
    """The event log failed (backend-neutral)."""


class EventLogUnavailableError(EventLogError):
    """The event log cannot be reached or opened."""


@runtime_checkable
class EventLog(Protocol):
    """A durable, ordered log of byte payloads, numbered by offsets 1, 2, 3, ..."""

    url: str

    def append(self, payloads: Sequence[bytes]) -> list[int]:
        """Append in order, durably (see the backend); returns the offsets given."""
        ...

    def read(self, after: int, limit: int, wait_s: float = 0.0) -> list[LoggedEvent]:
        """Up to ``limit`` events with offset > ``after``, in order; waits up to ``wait_s``
        for the first one."""
        ...

    def end_offset(self) -> int:
        """The newest offset (0 when empty)."""
        ...

    def close(self) -> None: ...


# Builds a LoggedEvent from a tuple without NamedTuple's Python-level __new__ (one per event).
_new = tuple.__new__


def _now_us() -> int:
    return time.time_ns() // 1000


def _check_read(after: int, limit: int, wait_s: float) -> None:
    if after < 0 or limit < 1 or wait_s < 0:
        raise ValueError(
            f"read(after={after}, limit={limit}, wait_s={wait_s}): expected after >= 0, "
            "limit >= 1 and wait_s >= 0"
        )


class SqliteEventLog:
    """The embedded event log: one WAL table in a SQLite file (thread-safe)."""

    def __init__(
        self, path: Path, *, readonly: bool = False, poll_interval_s: float = _POLL_INTERVAL_S
    ) -> None:
        self.path = Path(path).resolve()
        self.url = f"sqlite://{self.path}"
        self.readonly = readonly
        self.poll_interval_s = poll_interval_s
        self._lock = threading.Lock()
        try:
            if readonly:
                if not self.path.exists():
                    raise EventLogUnavailableError(
                        f"event log {self.path} does not exist; the service creates it with "
                        "its first prediction"
                    )
                self._con = sqlite3.connect(
                    f"{self.path.as_uri()}?mode=ro",
                    uri=True,
                    isolation_level=None,
                    check_same_thread=False,
                    timeout=_BUSY_TIMEOUT_S,
                )
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._con = self._open_for_writing()
        except sqlite3.Error as exc:
            raise EventLogUnavailableError(
                f"event log {self.path} cannot be opened: {exc}"
            ) from exc

    def _open_for_writing(self) -> sqlite3.Connection:
        """A connection in WAL mode with the table created. Several processes opening a new
        log at once can get "database is locked" from the switch to WAL without SQLite waiting
        on its busy handler: retry that until the busy timeout."""
        deadline = time.monotonic() + _BUSY_TIMEOUT_S
        while True:
            con = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=_BUSY_TIMEOUT_S
            )
            try:
                con.execute("PRAGMA journal_mode=WAL").fetchall()
                con.execute("PRAGMA synchronous=NORMAL")
                con.execute(
                    f'CREATE TABLE IF NOT EXISTS "{_TABLE}" (log_offset INTEGER PRIMARY KEY '
                    "AUTOINCREMENT, logged_at_us INTEGER NOT NULL, payload BLOB NOT NULL)"
                )
                return con
            except sqlite3.OperationalError as exc:
                con.close()
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def append(self, payloads: Sequence[bytes]) -> list[int]:
        if self.readonly:
            raise PermissionError(f"event log {self.path} is open read-only; cannot append")
        logged_at = _now_us()
        with self._lock:
            try:
                self._con.execute("BEGIN IMMEDIATE")
                try:
                    offsets = [
                        self._con.execute(
                            f'INSERT INTO "{_TABLE}" (logged_at_us, payload) VALUES (?, ?) '
                            "RETURNING log_offset",
                            (logged_at, payload),
                        ).fetchone()[0]
                        for payload in payloads
                    ]
                    self._con.execute("COMMIT")
                except BaseException:
                    if self._con.in_transaction:
                        self._con.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise EventLogError(f"event log {self.path}: append failed: {exc}") from exc
        return offsets

    def read(self, after: int, limit: int, wait_s: float = 0.0) -> list[LoggedEvent]:
        _check_read(after, limit, wait_s)
        deadline = time.monotonic() + wait_s
        while True:
            with self._lock:
                try:
                    rows = self._con.execute(
                        f'SELECT log_offset, logged_at_us, payload FROM "{_TABLE}" '
                        "WHERE log_offset > ? ORDER BY log_offset LIMIT ?",
                        (after, limit),
                    ).fetchall()
                except sqlite3.Error as exc:
                    raise EventLogError(f"event log {self.path}: read failed: {exc}") from exc
            if rows or time.monotonic() >= deadline:
                return [_new(LoggedEvent, row) for row in rows]
            time.sleep(self.poll_interval_s)

    def end_offset(self) -> int:
        with self._lock:
            try:
                row = self._con.execute(f'SELECT max(log_offset) FROM "{_TABLE}"').fetchone()
            except sqlite3.Error as exc:
                raise EventLogError(f"event log {self.path}: read failed: {exc}") from exc
        return row[0] or 0

    def close(self) -> None:
        with self._lock:
            self._con.close()

    def __enter__(self) -> SqliteEventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RedisEventLog:
    """The event log on a Redis Stream (thread-safe)."""

    def __init__(self, url: str, *, readonly: bool = False) -> None:
        self.url = url
        self.readonly = readonly
        self._display = display_url(url)
        self._client = redis.Redis.from_url(url, socket_connect_timeout=5.0)
        self._append = self._client.register_script(_APPEND_LUA)
        try:
            self._client.ping()
        except RedisError as exc:
            self._client.close()
            raise EventLogUnavailableError(f"event log {self._display}: {exc}") from exc

    def _error(self, action: str, exc: RedisError) -> EventLogError:
        kind = (
            EventLogUnavailableError
            if isinstance(exc, RedisConnectionError | RedisTimeoutError)
            else EventLogError
        )
        return kind(f"event log {self._display}: {action} failed: {exc}")

    def append(self, payloads: Sequence[bytes]) -> list[int]:
        if self.readonly:
            raise PermissionError(f"event log {self._display} is open read-only; cannot append")
        if not payloads:
            return []
        try:
            offsets = self._append(keys=[_STREAM, _SEQUENCE], args=[_now_us(), *payloads])
        except RedisError as exc:
            raise self._error("append", exc) from exc
        return [int(offset) for offset in offsets]

    def read(self, after: int, limit: int, wait_s: float = 0.0) -> list[LoggedEvent]:
        _check_read(after, limit, wait_s)
        block = max(1, round(wait_s * 1000)) if wait_s > 0 else None
        try:
            reply = self._client.xread({_STREAM: f"0-{after}"}, count=limit, block=block)
        except RedisError as exc:
            raise self._error("read", exc) from exc
        if not reply:
            return []
        ((_, entries),) = reply
        return [
            _new(LoggedEvent, (int(entry_id.split(b"-")[1]), int(fields[b"t"]), fields[b"p"]))
            for entry_id, fields in entries
        ]

    def end_offset(self) -> int:
        try:
            value = self._client.get(_SEQUENCE)
        except RedisError as exc:
            raise self._error("read", exc) from exc
        return int(value or 0)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> RedisEventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_event_log(url: str, *, readonly: bool = False) -> EventLog:
    """Open the event log an ``FTI_EVENT_LOG_URL`` names.

    Raises :class:`EventLogUnavailableError` when it cannot be reached (a read-only SQLite log
    that does not exist yet included).
    """
    if backend_of(url, EVENT_LOG_URL_SETTING) == REDIS:
        return RedisEventLog(url, readonly=readonly)
    return SqliteEventLog(sqlite_path(url, EVENT_LOG_URL_SETTING), readonly=readonly)
