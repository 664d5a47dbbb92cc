"""The scale-out online store backend: Redis (``FTI_ONLINE_URL=redis://host:port/db``).

Same interface, same row encoding (:mod:`fti_assets.lib.store.online.codec`) and same rules as
the SQLite backend: the latest row per entity, never moved back in time, one atomic write per
call, versions with a current pointer. Keys (all under ``fti:online:`` and ``fti:stream:``):

- ``fti:online:fg:<name>:v<version>``: a hash per group version; field = the entity key (its
  text for one key, a JSON array for several), value = ``<event time in µs>|<packed features>``;
- ``fti:online:meta:<name>:v<version>``: a hash with the version's ``row_count``,
  ``max_event_time_us`` and ``last_write_us``;
- ``fti:online:specs`` (field ``<name>:v<version>`` → spec JSON), ``fti:online:current``
  (field ``<name>`` → the version ``get`` reads) and ``fti:online:generation``, a counter bumped
  whenever a spec or a current version changes: every lookup reads it in the same round trip as
  the rows (one Lua call), so a version bump made by another process is seen by the next lookup;
- ``fti:stream:<consumer>:checkpoint`` (offset, counters, info), ``…:entries:<entity>`` (a
  sorted set of window-state entries scored by event time) and ``…:dead_letters`` (field = log
  offset, value = a JSON header, a newline, the event's bytes), written by one Lua script
  together with the rows of each micro-batch.

Atomicity: a ``write_group`` runs its Lua upserts inside one MULTI/EXEC, which Redis executes
without interleaving another client's command; ``replace_group`` fills a temporary hash and
swaps it in with RENAME inside MULTI/EXEC. ``latest`` scans the hash with HSCAN, so unlike the
SQLite backend it is not one snapshot while writes go on. Redis errors reach callers as
:class:`OnlineStoreError`.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import orjson
import polars as pl
import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError, WatchError
from redis.exceptions import TimeoutError as RedisTimeoutError

from fti_assets.lib.core.store_urls import display_url
from fti_assets.lib.store.group_spec import FeatureGroupSpec
from fti_assets.lib.store.online.base import (
    DeadLetter,
    NotFound,
    OnlineRow,
    OnlineStoreError,
    OnlineStoreLayoutError,
    OnlineStoreUnavailableError,
    StateEntry,
    StreamCheckpoint,
    StreamCommit,
    StreamFencedError,
    WriteResult,
)
from fti_assets.lib.store.online.codec import (
    LAYOUT,
    GroupCodec,
    GroupMeta,
    GroupSchema,
    from_us,
    latest_per_entity,
    now_us,
    pack_rows,
    rows_to_frame,
    schema_for,
    schema_for_row,
)

logger = logging.getLogger(__name__)

_PREFIX = "fti:online:"
_SPECS = _PREFIX + "specs"
_CURRENT = _PREFIX + "current"
_GENERATION = _PREFIX + "generation"
_STREAM_PREFIX = "fti:stream:"
# Rows per Lua call: bounds one call's arguments and how long it holds the server.
_CHUNK_ROWS = 5_000
_SCAN_COUNT = 10_000
_TEMP_TTL_S = 3_600
_FENCED = "FENCED"
_VERSION_MOVED = "VERSION_MOVED"
_SOCKET_TIMEOUT_S = 30.0

# Upsert rows into KEYS[1] (rows hash) and update KEYS[2] (the version's meta hash).
# ARGV: now_us, then (field, value, event_time_us) triples. A stored row is replaced only by one
# at the same or a later event time. Returns {rows written, rows that were new}.
_UPSERT_LUA = """
local written, inserted, max_t = 0, 0, nil
for i = 2, #ARGV, 3 do
  local t = tonumber(ARGV[i + 2])
  local old = redis.call('HGET', KEYS[1], ARGV[i])
  local newer = true
  if old then
    newer = t >= tonumber(string.sub(old, 1, string.find(old, '|', 1, true) - 1))
  else
    inserted = inserted + 1
  end
  if newer then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    written = written + 1
    if max_t == nil or t > max_t then max_t = t end
  end
end
if inserted > 0 then redis.call('HINCRBY', KEYS[2], 'row_count', inserted) end
if max_t then
  local stored = redis.call('HGET', KEYS[2], 'max_event_time_us')
  if not stored or max_t > tonumber(stored) then
    redis.call('HSET', KEYS[2], 'max_event_time_us', string.format('%d', max_t))
  end
end
redis.call('HSET', KEYS[2], 'last_write_us', ARGV[1])
return {written, inserted}
"""

# Read KEYS[2] (rows hash) and the generation KEYS[1] in one round trip. ARGV: fields.
_READ_LUA = """
return {redis.call('GET', KEYS[1]) or '0', redis.call('HMGET', KEYS[2], unpack(ARGV))}
"""

# One streaming micro-batch. KEYS: checkpoint, rows, meta, current, dead letters, then one
# entries key per entity named in the entries/trims sections. ARGV: expected offset, offset,
# counters JSON, info JSON, now_us, group name, version, then sections each led by its count:
# rows (field, value, event_time_us), entries (key index, time_us, member), trims (key index,
# up_to_us), dead letters (offset, value). Rows are refused unless the group's current version
# is the batch's.
_COMMIT_LUA = """
local stored = redis.call('HGET', KEYS[1], 'offset') or '0'
if stored ~= ARGV[1] then
  return redis.error_reply('FENCED the store holds offset ' .. stored)
end
local i = 8
local n = tonumber(ARGV[i]); i = i + 1
if n > 0 then
  local current = redis.call('HGET', KEYS[4], ARGV[6])
  if current ~= ARGV[7] then
    return redis.error_reply('VERSION_MOVED the store serves version ' .. tostring(current))
  end
end
local inserted, max_t = 0, nil
for _ = 1, n do
  local t = tonumber(ARGV[i + 2])
  local old = redis.call('HGET', KEYS[2], ARGV[i])
  local newer = true
  if old then
    newer = t >= tonumber(string.sub(old, 1, string.find(old, '|', 1, true) - 1))
  else
    inserted = inserted + 1
  end
  if newer then
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
    if max_t == nil or t > max_t then max_t = t end
  end
  i = i + 3
end
if inserted > 0 then redis.call('HINCRBY', KEYS[3], 'row_count', inserted) end
if max_t then
  local old_max = redis.call('HGET', KEYS[3], 'max_event_time_us')
  if not old_max or max_t > tonumber(old_max) then
    redis.call('HSET', KEYS[3], 'max_event_time_us', string.format('%d', max_t))
  end
end
if n > 0 then redis.call('HSET', KEYS[3], 'last_write_us', ARGV[5]) end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  redis.call('ZADD', KEYS[tonumber(ARGV[i])], ARGV[i + 1], ARGV[i + 2])
  i = i + 3
end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  redis.call('ZREMRANGEBYSCORE', KEYS[tonumber(ARGV[i])], '-inf', ARGV[i + 1])
  i = i + 2
end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  redis.call('HSET', KEYS[5], ARGV[i], ARGV[i + 1])
  i = i + 2
end
redis.call('HSET', KEYS[1], 'offset', ARGV[2], 'counters', ARGV[3], 'info', ARGV[4],
           'updated_at_us', ARGV[5])
return 1
"""


def _rows_key(name: str, version: int) -> str:
    return f"{_PREFIX}fg:{name}:v{version}"


def _meta_key(name: str, version: int) -> str:
    return f"{_PREFIX}meta:{name}:v{version}"


def _spec_field(name: str, version: int) -> str:
    return f"{name}:v{version}"


def _stream_key(consumer: str, part: str) -> str:
    return f"{_STREAM_PREFIX}{consumer}:{part}"


def _entries_key(consumer: str, entity: str) -> str:
    return _stream_key(consumer, f"entries:{entity}")


class _RedisReader(GroupCodec):
    """Key encoding for the hash fields of one group version, plus the codec."""

    __slots__ = ("rows_key", "_field", "_key_of_field")

    def __init__(self, schema: GroupSchema) -> None:
        super().__init__(schema)
        self.rows_key = _rows_key(schema.name, schema.version)
        self._field, self._key_of_field = _field_codec(schema)

    def field(self, key: Any) -> bytes:
        """The hash field of a key from :meth:`normalize_many` (a scalar or a tuple)."""
        return self._field(key)

    def row(self, key: Any, value: bytes) -> tuple[Any, ...]:
        """The (keys..., event time, packed) tuple the decoder reads."""
        event_time, _, packed = value.partition(b"|")
        keys = (key,) if self.single_key else key
        return (*keys, int(event_time), packed)

    def row_of_field(self, field: bytes, value: bytes) -> tuple[Any, ...]:
        return self.row(self._key_of_field(field), value)


def _field_codec(
    schema: GroupSchema,
) -> tuple[Callable[[Any], bytes], Callable[[bytes], Any]]:
    """(encode a normalized key as a hash field, decode a field back into the key)."""
    if len(schema.entity_keys) > 1:
        return (lambda key: orjson.dumps(list(key))), (lambda f: tuple(orjson.loads(f)))
    if schema.key_dtypes[0] == "int64":
        return (lambda key: b"%d" % key), int
    return (lambda key: key.encode()), (lambda f: f.decode())


def _hash_entries(
    schema: GroupSchema, rows: Iterable[tuple[Any, ...]]
) -> list[tuple[bytes, bytes, int]]:
    """(field, value, event_time_us) of stored tuples (keys, event time, packed values)."""
    encode, _ = _field_codec(schema)
    n_keys = len(schema.entity_keys)
    entries = []
    for row in rows:
        key = row[0] if n_keys == 1 else row[:n_keys]
        event_us, packed = row[n_keys], row[n_keys + 1]
        entries.append((encode(key), b"%d|%s" % (event_us, packed), event_us))
    return entries


def _pack_rows(
    schema: GroupSchema, latest: pl.DataFrame
) -> Iterator[list[tuple[bytes, bytes, int]]]:
    """:func:`_hash_entries` of a frame from ``latest_per_entity``, in chunks of _CHUNK_ROWS."""
    for part in latest.iter_slices(_CHUNK_ROWS):
        yield _hash_entries(schema, part.iter_rows())


def _flat(triples: Sequence[tuple[bytes, bytes, int]]) -> list[Any]:
    return [value for triple in triples for value in triple]


class RedisOnlineStore:
    """Online store on a Redis server; see the module docstring for the key layout.

    Thread-safe (redis-py's connection pool). Every lookup is one round trip.
    """

    def __init__(self, url: str, *, readonly: bool = False) -> None:
        self.url = url
        self.readonly = readonly
        self._display = display_url(url)
        self._client = redis.Redis.from_url(
            url, socket_timeout=_SOCKET_TIMEOUT_S, socket_connect_timeout=5.0
        )
        self._upsert = self._client.register_script(_UPSERT_LUA)
        self._read = self._client.register_script(_READ_LUA)
        self._commit = self._client.register_script(_COMMIT_LUA)
        self._lock = threading.Lock()
        self._generation: bytes | None = None
        self._readers: dict[str, _RedisReader] = {}
        self._stale: dict[str, str] = {}
        self._closed = False
        try:
            with self._errors("open"):
                self._client.ping()
                if readonly:
                    self._refresh()
                    if self._stale:
                        raise OnlineStoreLayoutError(" ".join(self._stale.values()))
        except BaseException:
            self._client.close()
            raise

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Turn redis-py's exceptions into the store's backend-neutral ones."""
        try:
            yield
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise OnlineStoreUnavailableError(
                f"online store {self._display}: cannot {action}: {exc}"
            ) from exc
        except RedisError as exc:
            raise OnlineStoreError(f"online store {self._display}: {action} failed: {exc}") from exc

    # -- writes -----------------------------------------------------------------------------

    def write_group(self, spec: FeatureGroupSpec, frame: pl.DataFrame) -> WriteResult:
        """Upsert the latest row per entity of ``frame``; a stored newer row is kept.

        One MULTI/EXEC: readers see all of this batch or none of it.
        """
        self._require_writable(spec.name)
        schema = schema_for(spec, frame)
        latest = latest_per_entity(schema, frame)
        started = time.perf_counter()
        chunks = list(_pack_rows(schema, latest))
        rows_key, meta_key = _rows_key(schema.name, schema.version), _meta_key(*_ids(schema))
        with self._errors("write"), self._client.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(_SPECS, _CURRENT)
                    changed = self._check_against_stored(pipe, schema, replace=False)
                    pipe.multi()
                    if changed:
                        self._queue_version(pipe, schema, spec.description)
                    for chunk in chunks:
                        self._upsert(
                            keys=[rows_key, meta_key], args=[now_us(), *_flat(chunk)], client=pipe
                        )
                    pipe.hset(meta_key, "last_write_us", now_us())
                    replies = pipe.execute()
                    break
                except WatchError:
                    continue
        written = sum(r[0] for r in replies if isinstance(r, list))
        result = WriteResult(
            group=schema.name,
            version=schema.version,
            rows_in=frame.height,
            entities_written=written,
            entities_skipped_older=latest.height - written,
        )
        logger.info(
            "online store %s: wrote %s in %.2fs",
            self._display,
            result,
            time.perf_counter() - started,
        )
        return result

    def replace_group(self, spec: FeatureGroupSpec, frame: pl.DataFrame) -> WriteResult:
        """Rebuild ``spec``'s version of the group from ``frame`` alone and make it current.

        The rows go into a temporary hash first; RENAME swaps it in within one MULTI/EXEC, so
        readers see the old contents until the new ones are complete.
        """
        self._require_writable(spec.name)
        schema = schema_for(spec, frame)
        latest = latest_per_entity(schema, frame)
        rows_key, meta_key = _rows_key(schema.name, schema.version), _meta_key(*_ids(schema))
        temp = f"{_PREFIX}tmp:{uuid.uuid4().hex}"
        with self._errors("replace"):
            for chunk in _pack_rows(schema, latest):
                with self._client.pipeline(transaction=False) as pipe:
                    pipe.hset(temp, mapping={field: value for field, value, _ in chunk})
                    pipe.expire(temp, _TEMP_TTL_S)  # a crash before the swap leaves no garbage
                    pipe.execute()
            with self._client.pipeline() as pipe:
                pipe.multi()
                if latest.height:
                    pipe.rename(temp, rows_key)
                    pipe.persist(rows_key)
                else:
                    pipe.delete(rows_key)
                pipe.delete(meta_key)
                max_us = latest[schema.event_time].max()
                meta = {"row_count": latest.height, "last_write_us": now_us()}
                if max_us is not None:
                    meta["max_event_time_us"] = max_us
                pipe.hset(meta_key, mapping=meta)
                self._queue_version(pipe, schema, spec.description)
                pipe.execute()
        return WriteResult(schema.name, schema.version, frame.height, latest.height, 0)

    def commit_stream(self, commit: StreamCommit) -> None:
        """Write one streaming micro-batch and its checkpoint in ONE Lua script.

        Refused with :class:`StreamFencedError` (nothing written) when the consumer's stored
        offset is not ``commit.expected_offset``.
        """
        spec = commit.spec
        self._require_writable(spec.name)
        schema = schema_for_row(spec, commit.rows[0]) if commit.rows else None
        rows = _hash_entries(schema, pack_rows(schema, commit.rows)) if schema is not None else []
        consumer = commit.consumer
        entity_keys: dict[str, int] = {}

        def key_index(entity: str) -> int:
            return entity_keys.setdefault(entity, 6 + len(entity_keys))

        entries = [
            (key_index(e.entity), e.time_us, orjson.dumps([e.entry_id, e.payload.decode()]))
            for e in commit.entries
        ]
        trims = [(key_index(entity), up_to) for entity, up_to in commit.trims.items()]
        recorded_at = now_us()
        # A dead letter's payload may be any bytes (an event that is not JSON): it follows the
        # JSON header after a newline, which orjson never writes.
        dead = [
            (
                d.offset,
                orjson.dumps([d.entity, d.event_id, d.reason, recorded_at]) + b"\n" + d.payload,
            )
            for d in commit.dead_letters
        ]
        version = spec.version
        keys = [
            _stream_key(consumer, "checkpoint"),
            _rows_key(spec.name, version),
            _meta_key(spec.name, version),
            _CURRENT,
            _stream_key(consumer, "dead_letters"),
            *(_entries_key(consumer, entity) for entity in entity_keys),
        ]
        args: list[Any] = [
            commit.expected_offset,
            commit.offset,
            orjson.dumps(dict(commit.counters)),
            orjson.dumps(dict(commit.info)),
            recorded_at,
            spec.name,
            version,
            len(rows),
            *_flat(rows),
            len(entries),
            *(v for entry in entries for v in entry),
            len(trims),
            *(v for trim in trims for v in trim),
            len(dead),
            *(v for letter in dead for v in letter),
        ]
        with self._errors("commit"):
            try:
                self._run_commit(commit, keys, args)
            except ResponseError as exc:
                if not str(exc).startswith(_VERSION_MOVED):
                    raise
                # The group version is not (yet) current: register it (refused if the store
                # already serves a newer one), then commit.
                self._register(spec, schema)
                self._run_commit(commit, keys, args)

    def _run_commit(self, commit: StreamCommit, keys: list[str], args: list[Any]) -> None:
        try:
            self._commit(keys=keys, args=args)
        except ResponseError as exc:
            message = str(exc)
            if message.startswith(_FENCED):
                stored = int(message.rsplit(" ", 1)[1])
                raise StreamFencedError.for_offsets(
                    commit.consumer, stored, commit.expected_offset
                ) from exc
            raise

    def _register(self, spec: FeatureGroupSpec, schema: GroupSchema | None) -> None:
        if schema is None:  # a batch without rows: its group version only needs to exist
            return
        with self._client.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(_SPECS, _CURRENT)
                    changed = self._check_against_stored(pipe, schema, replace=False)
                    pipe.multi()
                    if changed:
                        self._queue_version(pipe, schema, spec.description)
                        pipe.hsetnx(_meta_key(*_ids(schema)), "row_count", 0)
                        pipe.hsetnx(_meta_key(*_ids(schema)), "last_write_us", now_us())
                    pipe.execute()
                    return
                except WatchError:
                    continue

    def _require_writable(self, group: str) -> None:
        self._require_open()
        if self.readonly:
            raise PermissionError(
                f"online store {self._display} is open read-only; cannot write group {group!r} "
                f"(open it with readonly=False)"
            )

    def _check_against_stored(self, pipe: Any, schema: GroupSchema, *, replace: bool) -> bool:
        """Refuse a write that would go back a version or change a version's schema.

        Returns whether the spec or the current pointer must be (re)written.
        """
        current = pipe.hget(_CURRENT, schema.name)
        current_version = None if current is None else int(current)
        if current_version is not None and schema.version < current_version and not replace:
            raise ValueError(
                f"feature group {schema.name!r}: cannot write version {schema.version}, the "
                f"store already serves version {current_version}; use replace_group to roll back"
            )
        stored = pipe.hget(_SPECS, _spec_field(*_ids(schema)))
        if stored is None:
            return True
        stored_schema = GroupSchema.from_json(stored)
        if stored_schema.layout != schema.layout:
            raise OnlineStoreLayoutError(self._layout_message(stored_schema))
        if stored_schema != schema and not replace:
            raise ValueError(
                f"feature group {schema.name!r} version {schema.version} is stored with "
                f"{stored_schema}, which differs from the incoming {schema}; bump the version "
                f"for a breaking change"
            )
        return replace or current_version != schema.version

    @staticmethod
    def _queue_version(pipe: Any, schema: GroupSchema, description: str) -> None:
        pipe.hset(_SPECS, _spec_field(*_ids(schema)), schema.to_json(description))
        pipe.hset(_CURRENT, schema.name, schema.version)
        pipe.incr(_GENERATION)

    def _layout_message(self, schema: GroupSchema) -> str:
        return (
            f"online store {self._display}: feature group {schema.name!r} version "
            f"{schema.version} is stored with storage layout {schema.layout}, but this code "
            f"reads and writes layout {LAYOUT}; rewrite the group (replace_group)"
        )

    # -- reads ------------------------------------------------------------------------------

    def get(self, group: str, keys: dict[str, Any] | Any) -> OnlineRow | NotFound:
        """The stored row of one entity; ``keys`` may be a scalar when the group has one key."""
        reader, key = None, None
        with self._errors("read"):
            for _ in range(2):
                reader = self._reader(group)
                key = reader.normalize_many([keys])[0]
                generation, (value,) = self._read(
                    keys=[_GENERATION, reader.rows_key], args=[reader.field(key)]
                )
                if generation == self._generation:
                    break
                self._invalidate()
        assert reader is not None
        if value is None:
            params = (key,) if reader.single_key else key
            return NotFound(group, dict(zip(reader.key_names, params, strict=True)))
        return reader.decode(reader.row(key, value))

    def get_many(
        self, group: str, keys: Sequence[dict[str, Any] | Any]
    ) -> list[OnlineRow | NotFound]:
        """Rows for many entities, in request order, from one consistent snapshot."""
        if not keys:
            return []
        with self._errors("read"):
            for _ in range(2):
                reader = self._reader(group)
                requested = reader.normalize_many(keys)
                unique = list(dict.fromkeys(requested))
                generation, values = self._read(
                    keys=[_GENERATION, reader.rows_key], args=[reader.field(k) for k in unique]
                )
                if generation == self._generation:
                    break
                self._invalidate()
        rows = [reader.row(k, v) for k, v in zip(unique, values, strict=True) if v is not None]
        return reader.results(rows, requested)

    def _reader(self, group: str) -> _RedisReader:
        self._require_open()
        if self._generation is None or group not in self._readers:
            # An unknown group may have been written since the last refresh.
            self._refresh()
        try:
            return self._readers[group]
        except KeyError:
            if group in self._stale:
                raise OnlineStoreLayoutError(self._stale[group]) from None
            raise KeyError(
                f"unknown online feature group {group!r}; known groups: {sorted(self._readers)}"
            ) from None

    def _invalidate(self) -> None:
        with self._lock:
            self._generation = None

    def _refresh(self) -> None:
        """Re-read every group's current version (and the generation it belongs to)."""
        with self._lock:
            with self._client.pipeline() as pipe:
                pipe.get(_GENERATION)
                pipe.hgetall(_CURRENT)
                pipe.hgetall(_SPECS)
                generation, current, specs = pipe.execute()
            schemas = [
                GroupSchema.from_json(specs[_spec_field(name.decode(), int(v)).encode()])
                for name, v in current.items()
            ]
            self._readers = {s.name: _RedisReader(s) for s in schemas if s.layout == LAYOUT}
            self._stale = {s.name: self._layout_message(s) for s in schemas if s.layout != LAYOUT}
            self._generation = generation or b"0"

    def groups(self) -> list[dict[str, Any]]:
        """The registered groups at their current version, with row counts and write times."""
        self._require_open()
        with self._errors("read"):
            with self._client.pipeline() as pipe:
                pipe.hgetall(_CURRENT)
                pipe.hgetall(_SPECS)
                current, specs = pipe.execute()
            names = sorted((name.decode(), int(v)) for name, v in current.items())
            with self._client.pipeline() as pipe:
                for name, version in names:
                    pipe.hgetall(_meta_key(name, version))
                metas = pipe.execute()
        versions: dict[str, list[int]] = {}
        for field in specs:
            name, _, version = field.decode().rpartition(":v")
            versions.setdefault(name, []).append(int(version))
        described = []
        for (name, version), meta in zip(names, metas, strict=True):
            max_us = meta.get(b"max_event_time_us")
            stored = GroupMeta.from_stored(
                specs[_spec_field(name, version).encode()].decode(),
                int(meta.get(b"row_count", 0)),
                None if max_us is None else int(max_us),
                int(meta.get(b"last_write_us", 0)),
            )
            described.append(stored.describe(sorted(versions.get(name, []))))
        return described

    def latest(self, group: str, version: int | None = None) -> pl.DataFrame:
        """Every stored row of ``group`` (its current version unless ``version`` is given).

        Read with HSCAN: rows written while it runs may or may not be in the result. Sorted
        by the entity keys.
        """
        with self._errors("read"):
            current = self._reader(group)
            wanted = current.version if version is None else version
            spec = self._client.hget(_SPECS, _spec_field(group, wanted))
            if spec is None:
                raise KeyError(f"online feature group {group!r} has no stored version {wanted}")
            schema = GroupSchema.from_json(spec)
            if schema.layout != LAYOUT:
                raise OnlineStoreLayoutError(self._layout_message(schema))
            reader = _RedisReader(schema)
            frames, cursor, first = [], 0, True
            while first or cursor:
                first = False
                cursor, page = self._client.hscan(reader.rows_key, cursor, count=_SCAN_COUNT)
                if page:
                    rows = [reader.row_of_field(f, v) for f, v in page.items()]
                    frames.append(rows_to_frame(schema, rows))
        # Sorted by key, as the SQLite backend returns them (its primary-key order).
        frame = pl.concat(frames) if frames else rows_to_frame(schema, [])
        return frame.sort(list(schema.entity_keys))

    # -- streaming checkpoints --------------------------------------------------------------

    def stream_checkpoint(self, consumer: str) -> StreamCheckpoint | None:
        """The committed offset and counters of a streaming consumer (None: never committed)."""
        self._require_open()
        with self._errors("read"):
            stored = self._client.hgetall(_stream_key(consumer, "checkpoint"))
        if not stored:
            return None
        return StreamCheckpoint(
            consumer,
            int(stored[b"offset"]),
            orjson.loads(stored[b"counters"]),
            orjson.loads(stored[b"info"]),
            from_us(int(stored[b"updated_at_us"])),
        )

    def stream_entries(self, consumer: str) -> Iterator[StateEntry]:
        """Every persisted window-state entry of a consumer, by entity then time."""
        self._require_open()
        prefix = _entries_key(consumer, "")
        with self._errors("read"):
            keys = sorted(self._client.scan_iter(match=_glob_escape(prefix) + "*", count=1000))
            entries = []
            for start in range(0, len(keys), 1000):
                batch = keys[start : start + 1000]
                with self._client.pipeline(transaction=False) as pipe:
                    for key in batch:
                        pipe.zrange(key, 0, -1, withscores=True)
                    for key, members in zip(batch, pipe.execute(), strict=True):
                        entity = key.decode()[len(prefix) :]
                        for member, score in members:
                            entry_id, payload = orjson.loads(member)
                            entries.append(
                                StateEntry(entity, int(score), entry_id, payload.encode())
                            )
        entries.sort(key=lambda e: (e.entity, e.time_us, e.entry_id))
        return iter(entries)

    def dead_letters(self, consumer: str) -> list[DeadLetter]:
        """The events a consumer could not apply, in log order."""
        self._require_open()
        with self._errors("read"):
            stored = self._client.hgetall(_stream_key(consumer, "dead_letters"))
        letters = []
        for offset, value in stored.items():
            header, _, payload = value.partition(b"\n")
            entity, event_id, reason, _ = orjson.loads(header)
            letters.append(DeadLetter(int(offset), entity, event_id, reason, payload))
        return sorted(letters)

    # -- lifecycle --------------------------------------------------------------------------

    def _require_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"online store {self._display} is closed")

    def close(self) -> None:
        """Close the connection pool; further calls raise. Safe to call twice."""
        if not self._closed:
            self._closed = True
            self._client.close()

    def __enter__(self) -> RedisOnlineStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _ids(schema: GroupSchema) -> tuple[str, int]:
    return schema.name, schema.version


def _glob_escape(text: str) -> str:
    """``text`` with Redis glob metacharacters escaped, for SCAN MATCH."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
