"""Inference log: every online prediction, written off the request path, read back as a frame.

Layout: ``<dir>/date=YYYY-MM-DD/part-<pid>-<token>-<seq>.jsonl``, one JSON object per line; the
day is the UTC date of the record's ``logged_at``. Each :class:`InferenceLogger` (one per
service worker process) writes its own files (``token`` is random per logger, so a restarted
process with a recycled pid never appends to a predecessor's file); ``seq`` starts a new file
once one exceeds ``max_file_bytes``.

Why JSONL appends rather than a Parquet file per flushed batch: a flush is one ``write`` of
whole lines to a file opened for appending, so a crash loses at most the records still queued
(at most ``flush_interval_s`` of them) and can leave at most one partial last line, which
:func:`read_inference_logs` skips with a warning. Parquet would write a new small file every
half second (thousands a day) and a crash mid-write leaves an unreadable file. The log is
compacted into a Parquet asset by the ``inference_log`` Dagster asset anyway.

:meth:`InferenceLogger.log` only appends to an in-memory queue (no I/O, no serialisation on
the caller's thread); a background thread serialises (orjson) and appends, every
``flush_interval_s`` or as soon as ``max_batch`` records wait. :meth:`InferenceLogger.close`
writes everything queued before returning; the service calls it on shutdown (lifespan), so a
normal stop (SIGTERM/SIGINT through uvicorn) loses nothing. If the queue holds ``max_queue``
records (the disk stalls), further records are dropped and counted instead of blocking
requests or growing memory without bound.

A record: the request fields (the service's, named by a :class:`LogSchema`), then the same
fields for every service (:data:`RECORD_COLUMNS`): model name/version/sha256, ``probability``,
``latency_ms``, ``fallback``, ``unknown_entities``, ``stale_groups``, ``features`` (the exact
feature vector used, a JSON object) and ``logged_at`` (UTC, added by
:meth:`InferenceLogger.log` when absent).
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson
import polars as pl

logger = logging.getLogger(__name__)

DAY_DIR_PREFIX = "date="
_DUMP_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC | orjson.OPT_SERIALIZE_NUMPY
_UTC_US = pl.Datetime("us", "UTC")

# The columns of every record after the request's, as read from the JSON lines (times are ISO
# text there).
RECORD_COLUMNS: dict[str, pl.DataType] = {
    "model_name": pl.String(),
    "model_version": pl.Int64(),
    "model_sha256": pl.String(),
    "probability": pl.Float64(),
    "latency_ms": pl.Float64(),
    "fallback": pl.Boolean(),
    "unknown_entities": pl.List(pl.String()),
    "stale_groups": pl.List(pl.String()),
    "features": pl.String(),  # the feature vector as a JSON object text
    "logged_at": pl.String(),
}


@dataclass(frozen=True)
class LogSchema:
    """What one service logs: its request fields (name -> type as read from JSON; times as
    ISO text, listed in ``request_times``), then :data:`RECORD_COLUMNS`. ``renamed`` maps a
    column's name in older log files to its name now (read as the new one)."""

    request: Mapping[str, pl.DataType]
    request_times: tuple[str, ...] = ()
    renamed: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        clash = sorted(set(self.request) & set(RECORD_COLUMNS))
        unknown = sorted(set(self.request_times) - set(self.request))
        if clash:
            raise ValueError(f"log schema: request fields {clash} clash with the record's columns")
        if unknown:
            raise ValueError(f"log schema: request_times {unknown} are not request fields")

    @property
    def columns(self) -> dict[str, pl.DataType]:
        return {**self.request, **RECORD_COLUMNS}

    @property
    def time_columns(self) -> tuple[str, ...]:
        return (*self.request_times, "logged_at")

    @property
    def read_columns(self) -> dict[str, pl.DataType]:
        """The columns read from a file: the current ones and the old names of renamed ones."""
        columns = self.columns
        return {**columns, **{old: columns[new] for old, new in self.renamed.items()}}


def _default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} {value!r} to the inference log")


def day_dir(root: Path, day: date) -> Path:
    return Path(root) / f"{DAY_DIR_PREFIX}{day.isoformat()}"


class InferenceLogger:
    """Non-blocking, batched JSONL writer of prediction records (one per worker process)."""

    def __init__(
        self,
        directory: Path,
        flush_interval_s: float = 0.5,
        max_batch: int = 1000,
        *,
        max_queue: int = 100_000,
        max_file_bytes: int = 256 << 20,
    ) -> None:
        if flush_interval_s <= 0 or max_batch < 1 or max_queue < 1 or max_file_bytes < 1:
            raise ValueError(
                f"expected flush_interval_s > 0, max_batch, max_queue and max_file_bytes >= 1; "
                f"got {flush_interval_s}, {max_batch}, {max_queue}, {max_file_bytes}"
            )
        self.directory = Path(directory)
        self.flush_interval_s = flush_interval_s
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.max_file_bytes = max_file_bytes
        self._queue: collections.deque[dict[str, Any] | threading.Event] = collections.deque()
        self._wake = threading.Event()
        self._closed = False
        self._prefix = f"part-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._seq = 0
        self._files: dict[date, Path] = {}  # day -> file currently appended to
        self.written = 0
        self.dropped = 0
        self.write_errors = 0
        self._thread = threading.Thread(target=self._run, name="inference-log-writer", daemon=True)
        self._thread.start()

    # -- caller side ------------------------------------------------------------------------

    def log(self, record: dict[str, Any]) -> None:
        """Queue one record; never blocks, never does I/O. Adds ``logged_at`` when absent."""
        if self._closed or len(self._queue) >= self.max_queue:
            self.dropped += 1
            if self.dropped in (1, 10, 100) or self.dropped % 10_000 == 0:
                reason = "the logger is closed" if self._closed else "the queue is full"
                logger.warning("inference log dropped %d record(s): %s", self.dropped, reason)
            return
        if "logged_at" not in record:
            record["logged_at"] = datetime.now(UTC)
        self._queue.append(record)
        if len(self._queue) >= self.max_batch:
            self._wake.set()

    def flush(self, timeout_s: float = 30.0) -> None:
        """Block until every record queued before this call is written (or dropped)."""
        if self._closed:
            return
        done = threading.Event()
        self._queue.append(done)
        self._wake.set()
        if not done.wait(timeout_s):
            raise TimeoutError(f"inference log not flushed within {timeout_s} s")

    def close(self, timeout_s: float = 30.0) -> None:
        """Write everything queued and stop the writer thread; later records are dropped."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise TimeoutError(
                f"inference log writer did not finish within {timeout_s} s; "
                f"{len(self._queue)} record(s) still queued"
            )
        logger.info(
            "inference log closed: %d written, %d dropped, %d write error(s)",
            self.written,
            self.dropped,
            self.write_errors,
        )

    @property
    def pending(self) -> int:
        return len(self._queue)

    def __enter__(self) -> InferenceLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writer thread ----------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            closing = self._closed
            self._drain()
            if closing:
                self._drain()  # records a caller appended while the flag was being set
                return

    def _drain(self) -> None:
        batch: list[dict[str, Any]] = []
        while True:
            try:
                item = self._queue.popleft()
            except IndexError:
                break
            if isinstance(item, threading.Event):
                self._write(batch)
                batch = []
                item.set()
                continue
            batch.append(item)
            if len(batch) >= self.max_batch:
                self._write(batch)
                batch = []
        self._write(batch)

    def _write(self, batch: list[dict[str, Any]]) -> None:
        if not batch:
            return
        by_day: dict[date, list[bytes]] = {}
        for record in batch:
            try:
                line = orjson.dumps(record, default=_default, option=_DUMP_OPTIONS)
            except TypeError:
                logger.exception("inference log: record is not serialisable; dropped")
                self.dropped += 1
                continue
            day = _utc_day(record["logged_at"])
            by_day.setdefault(day, []).append(line)
        for day, lines in by_day.items():
            data = b"\n".join(lines) + b"\n"
            try:
                path = self._file_for(day, len(data))
                with path.open("ab") as handle:
                    handle.write(data)
            except OSError:
                self.write_errors += 1
                self.dropped += len(lines)
                logger.exception("inference log: cannot append %d record(s)", len(lines))
                continue
            self.written += len(lines)

    def _file_for(self, day: date, incoming: int) -> Path:
        path = self._files.get(day)
        if path is not None:
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                size = 0
            if size + incoming <= self.max_file_bytes or size == 0:
                return path
        self._seq += 1
        folder = day_dir(self.directory, day)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self._prefix}-{self._seq:04d}.jsonl"
        self._files = {d: p for d, p in self._files.items() if d >= day}  # forget past days
        self._files[day] = path
        return path


def _utc_day(value: Any) -> date:
    if isinstance(value, datetime):
        return (value if value.tzinfo is None else value.astimezone(UTC)).date()
    return datetime.fromisoformat(str(value)).astimezone(UTC).date()


# ----------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------


def log_files(directory: Path, day: date | None = None) -> list[Path]:
    """The log files of one day (or of every day), oldest day first."""
    root = Path(directory)
    folders = [day_dir(root, day)] if day is not None else sorted(root.glob(f"{DAY_DIR_PREFIX}*"))
    return [p for folder in folders if folder.is_dir() for p in sorted(folder.glob("*.jsonl"))]


def read_inference_logs(
    directory: Path, schema: LogSchema, day: date | None = None
) -> pl.DataFrame:
    """Every record of one UTC day (all days when ``day`` is None), sorted by ``logged_at``.

    Columns are ``schema``'s, with its time columns as ``Datetime("us", "UTC")`` and
    ``features`` as JSON text; a column an older file holds under its old name is read as the
    new one. A line that is not valid JSON (the partial last line of a crashed writer, or one
    being appended right now) is skipped with a warning.
    """
    frames = [_read_file(path, schema) for path in log_files(directory, day)]
    frames = [f for f in frames if f.height]
    frame = pl.concat(frames) if frames else _empty(schema)
    frame = frame.with_columns(
        pl.col(c).str.to_datetime(time_unit="us", time_zone="UTC") for c in schema.time_columns
    )
    return frame.sort("logged_at", maintain_order=True)


def _empty(schema: LogSchema) -> pl.DataFrame:
    return pl.DataFrame(schema=schema.columns)


def _current(frame: pl.DataFrame, schema: LogSchema) -> pl.DataFrame:
    """``frame`` (read with the old names too) with each renamed column under its new name."""
    return frame.with_columns(
        pl.coalesce(new, old).alias(new) for old, new in schema.renamed.items()
    ).select(list(schema.columns))


def _read_file(path: Path, schema: LogSchema) -> pl.DataFrame:
    if path.stat().st_size == 0:
        return _empty(schema)
    try:
        # Polars writes a nested object read into a String column back as JSON text.
        return _current(pl.read_ndjson(path, schema=schema.read_columns), schema)
    except pl.exceptions.ComputeError:
        return _read_file_tolerant(path, schema)


def _read_file_tolerant(path: Path, schema: LogSchema) -> pl.DataFrame:
    rows, bad = [], 0
    names = list(schema.read_columns)
    for line in path.read_bytes().splitlines():
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            bad += 1
            continue
        if not isinstance(record, Mapping):
            bad += 1
            continue
        row = {name: record.get(name) for name in names}
        if row["features"] is not None and not isinstance(row["features"], str):
            row["features"] = orjson.dumps(row["features"]).decode()
        rows.append(row)
    if bad:
        logger.warning("inference log %s: skipped %d line(s) that are not JSON records", path, bad)
    return _current(pl.DataFrame(rows, schema=schema.read_columns, orient="row"), schema)
