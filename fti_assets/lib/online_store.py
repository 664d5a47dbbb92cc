"""Online store: the latest row per entity of each online feature group, for low-latency lookups.

The one-machine backend is a SQLite file in WAL mode (path from ``FTI_ONLINE_PATH``): readers
never block writers nor see a half-written batch, and another process (the HTTP service) can
read the file while Dagster writes it. The scale path (Redis, Postgres) plugs in behind
:class:`OnlineStoreBackend`, the small interface every caller uses.

Layout of the SQLite file (storage layout 2):

- one ``WITHOUT ROWID`` table per group version, ``fg__<name>_v<version>``, with the entity key
  as PRIMARY KEY, the event time as integer microseconds since the epoch (UTC) and the features
  packed into one BLOB column ``fti_values``: a JSON array of the values in feature order (bools
  as true/false, timestamps as ISO text in UTC with microseconds, dates as ISO text, NaN as
  null). Turning a row into Python objects is then one ``orjson.loads`` instead of one SQLite
  column per feature, which was most of what a ``get_many`` cost. A row holding an infinite
  float (JSON has none) stores it as the string ``"inf"`` or ``"-inf"`` and marks itself with
  one extra trailing element. In the ``sqlite3`` shell, read a value with
  ``json_extract(CAST(fti_values AS TEXT), '$[0]')``;
- ``fti_online_group_versions``: the spec of every written group version (keys and their dtypes,
  features and their dtypes, storage layout), its row count, newest event time and last write
  time, so that a reader needs no :class:`FeatureGroupSpec`;
- ``fti_online_current``: which version of each group ``get`` reads. A version bump writes a new
  table and switches this pointer in the same transaction; old versions stay readable.

A group version written with another storage layout (layout 1 had one column per feature) is
refused with :class:`OnlineStoreLayoutError` instead of being misread; ``replace_group`` rewrites
it.
"""

from __future__ import annotations

import json
import logging
import operator
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable

import orjson
import polars as pl

from fti_assets.lib.feature_groups import FeatureGroupSpec

logger = logging.getLogger(__name__)

FEATURE_DTYPES = ("float64", "int64", "string", "bool", "timestamp_utc", "date")
KEY_DTYPES = ("int64", "string")

_VERSIONS_TABLE = "fti_online_group_versions"
_CURRENT_TABLE = "fti_online_current"
# How group tables are laid out; recorded in every group version's spec (specs without it were
# written with layout 1, one column per feature). Bump it whenever the table layout changes.
_LAYOUT = 2
_LEGACY_LAYOUT = 1
_VALUES_COLUMN = "fti_values"
_KEY_SQL_TYPES = {"int64": "INTEGER", "string": "TEXT"}
# Timestamp features inside the packed values: fixed-width ISO 8601 in UTC, which
# datetime.fromisoformat reads four times faster than fromtimestamp converts epoch microseconds.
_TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S%.6f+00:00"
# Types of the decoded JSON array, for latest(); timestamps and dates are parsed after.
_POLARS_TYPES: dict[str, pl.DataType] = {
    "float64": pl.Float64(),
    "int64": pl.Int64(),
    "string": pl.String(),
    "bool": pl.Boolean(),
    "timestamp_utc": pl.String(),
    "date": pl.String(),  # ISO text (YYYY-MM-DD)
}
# Largest number of entities looked up by one SELECT; longer get_many calls run several
# statements inside one read transaction, so they still see a single snapshot.
_MAX_BATCH = 512
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MMAP_BYTES = 1 << 30
_CACHE_KIB = 64 * 1024
_WAL_LIMIT_BYTES = 64 << 20
_BUSY_TIMEOUT_S = 30.0
_WRITE_SLICE_ROWS = 100_000
_READ_SLICE_ROWS = 16_384


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


class OnlineStoreLayoutError(sqlite3.DatabaseError):
    """A group version in the file was written with a storage layout this code does not read.

    A ``sqlite3.DatabaseError``, like any other file the store cannot read, so callers that
    turn a broken store into "unavailable" (the HTTP service) do so for this one too.
    """


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


@runtime_checkable
class OnlineStoreBackend(Protocol):
    """The interface every online store backend (SQLite today, Redis/Postgres later) provides."""

    def write_group(self, spec: FeatureGroupSpec, frame: pl.DataFrame) -> WriteResult: ...

    def replace_group(self, spec: FeatureGroupSpec, frame: pl.DataFrame) -> WriteResult: ...

    def get(self, group: str, keys: dict[str, Any] | Any) -> OnlineRow | NotFound: ...

    def get_many(
        self, group: str, keys: Sequence[dict[str, Any] | Any]
    ) -> list[OnlineRow | NotFound]: ...

    def groups(self) -> list[dict[str, Any]]: ...

    def latest(self, group: str, version: int | None = None) -> pl.DataFrame: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class _Schema:
    """The part of a group's spec the online store stores and checks between writes."""

    name: str
    version: int
    entity_keys: tuple[str, ...]
    key_dtypes: tuple[str, ...]
    event_time: str
    feature_names: tuple[str, ...]
    feature_dtypes: tuple[str, ...]
    layout: int = _LAYOUT

    @property
    def table(self) -> str:
        return f"fg__{self.name}_v{self.version}"

    @property
    def stored_columns(self) -> list[str]:
        """Columns of the group's table: keys, event time and the packed feature values."""
        return [*self.entity_keys, self.event_time, _VALUES_COLUMN]

    def to_json(self, description: str = "") -> str:
        return json.dumps(
            {
                "name": self.name,
                "version": self.version,
                "entity_keys": list(self.entity_keys),
                "key_dtypes": list(self.key_dtypes),
                "event_time": self.event_time,
                "features": [
                    {"name": n, "dtype": d}
                    for n, d in zip(self.feature_names, self.feature_dtypes, strict=True)
                ],
                "description": description,
                "layout": self.layout,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> _Schema:
        raw = json.loads(text)
        return cls(
            name=raw["name"],
            version=int(raw["version"]),
            entity_keys=tuple(raw["entity_keys"]),
            key_dtypes=tuple(raw["key_dtypes"]),
            event_time=raw["event_time"],
            feature_names=tuple(f["name"] for f in raw["features"]),
            feature_dtypes=tuple(f["dtype"] for f in raw["features"]),
            layout=int(raw.get("layout", _LEGACY_LAYOUT)),
        )


@dataclass(frozen=True)
class _GroupMeta:
    schema: _Schema
    description: str
    row_count: int
    max_event_time_us: int | None
    last_write_us: int


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _from_us(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def _now_us() -> int:
    return time.time_ns() // 1000


def _coerce_int_key(value: Any) -> int:
    # operator.index accepts Python and NumPy integers but refuses floats, strings and None,
    # so 3.7 never silently becomes entity 3.
    if isinstance(value, bool):
        raise TypeError(f"expected an int key, got the bool {value!r}")
    return operator.index(value)


def _coerce_str_key(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a str key, got {value!r} ({type(value).__name__})")
    return value


_KEY_COERCERS: dict[str, Callable[[Any], Any]] = {
    "int64": _coerce_int_key,
    "string": _coerce_str_key,
}


def _key_dtype(group: str, column: str, dtype: pl.DataType) -> str:
    if dtype.is_integer():
        return "int64"
    if isinstance(dtype, pl.String | pl.Categorical | pl.Enum):
        return "string"
    raise ValueError(
        f"feature group {group!r}: entity key {column!r} has dtype {dtype}; "
        f"expected an integer or string column"
    )


def _schema_for(spec: FeatureGroupSpec, frame: pl.DataFrame) -> _Schema:
    """Check ``frame`` against ``spec`` and return the schema the store keeps for the group."""
    if not spec.entity_keys:
        raise ValueError(f"feature group {spec.name!r} has no entity_keys; expected at least one")
    columns = spec.columns
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    if duplicated:
        raise ValueError(
            f"feature group {spec.name!r} uses column names {duplicated} more than once "
            f"among entity keys, event time and features"
        )
    if _VALUES_COLUMN in (*spec.entity_keys, spec.event_time):
        raise ValueError(
            f"feature group {spec.name!r}: {_VALUES_COLUMN!r} is the online store's column for "
            f"the packed features; expected entity keys and event time named otherwise"
        )
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"frame for feature group {spec.name!r} lacks columns {missing}; has {frame.columns}"
        )
    bad = {f.name: f.dtype for f in spec.features if f.dtype not in FEATURE_DTYPES}
    if bad:
        raise ValueError(
            f"feature group {spec.name!r} has features with unknown dtypes {bad}; "
            f"expected one of {list(FEATURE_DTYPES)}"
        )
    schema = frame.schema
    return _Schema(
        name=spec.name,
        version=spec.version,
        entity_keys=tuple(spec.entity_keys),
        key_dtypes=tuple(_key_dtype(spec.name, k, schema[k]) for k in spec.entity_keys),
        event_time=spec.event_time,
        feature_names=tuple(spec.feature_names),
        feature_dtypes=tuple(f.dtype for f in spec.features),
    )


def _aware_datetime(group: str, frame: pl.DataFrame, column: str) -> pl.Expr:
    dtype = frame.schema[column]
    if not isinstance(dtype, pl.Datetime) or dtype.time_zone is None:
        raise ValueError(
            f"feature group {group!r}: column {column!r} has dtype {dtype}; "
            f"expected a timezone-aware Datetime (UTC)"
        )
    return pl.col(column)


def _utc_epoch_us(group: str, frame: pl.DataFrame, column: str) -> pl.Expr:
    return _aware_datetime(group, frame, column).dt.epoch("us")


def _storage_expr(schema: _Schema, frame: pl.DataFrame, column: str, dtype: str) -> pl.Expr:
    if dtype == "timestamp_utc":
        utc_us = _aware_datetime(schema.name, frame, column).dt.convert_time_zone("UTC")
        return utc_us.dt.cast_time_unit("us").dt.to_string(_TIMESTAMP_FORMAT)
    if dtype == "date":
        return pl.col(column).cast(pl.Date, strict=True).dt.to_string("%Y-%m-%d")
    target = {"float64": pl.Float64, "int64": pl.Int64, "string": pl.String, "bool": pl.Boolean}
    return pl.col(column).cast(target[dtype], strict=True)


def _json_value(column: str, dtype: str) -> pl.Expr:
    """The JSON text of each value of a column already converted by :func:`_storage_expr`."""
    value = pl.col(column)
    if dtype == "float64":
        # Polars writes the shortest text that parses back to the same double. NaN has no JSON
        # form and becomes null (SQLite, too, stores NaN as NULL); infinities become strings,
        # which the trailing marker of their row tells the reader to turn back into floats.
        return (
            pl.when(value.is_finite())
            .then(value.cast(pl.String))
            .when(value == float("inf"))
            .then(pl.lit('"inf"'))
            .when(value == float("-inf"))
            .then(pl.lit('"-inf"'))
            .otherwise(pl.lit("null"))
        )
    if dtype == "string":
        # Polars has no JSON encoder for a bare string; one of a struct with the field "" gives
        # {"":<value>}, and the value is that text without its first 4 and last characters.
        return pl.struct(value.alias("")).struct.json_encode().str.slice(4).str.head(-1)
    if dtype in ("timestamp_utc", "date"):  # ISO text: digits and -:.+T, nothing to escape
        return pl.concat_str([pl.lit('"'), value, pl.lit('"')]).fill_null(pl.lit("null"))
    return value.cast(pl.String).fill_null(pl.lit("null"))  # int64, bool


def _packed_values(schema: _Schema) -> pl.Expr:
    """The features of each row as one JSON array (bytes), in feature order."""
    pairs = list(zip(schema.feature_names, schema.feature_dtypes, strict=True))
    if not pairs:
        return pl.lit(b"[]", pl.Binary).alias(_VALUES_COLUMN)
    items = pl.concat_str([_json_value(name, dtype) for name, dtype in pairs], separator=",")
    floats = [pl.col(name).is_infinite() for name, dtype in pairs if dtype == "float64"]
    marker = (
        pl.when(pl.any_horizontal(floats)).then(pl.lit(",0")).otherwise(pl.lit(""))
        if floats
        else pl.lit("")
    )
    return (
        pl.concat_str([pl.lit("["), items, marker, pl.lit("]")])
        .cast(pl.Binary)
        .alias(_VALUES_COLUMN)
    )


def _latest_per_entity(schema: _Schema, frame: pl.DataFrame) -> pl.DataFrame:
    """One row per entity, the newest by event time (the last in input order on ties).

    The result has the table's columns: keys, event time as epoch microseconds and the packed
    features. Rows are sorted by key so that the inserts walk the primary-key B-tree in order.
    """
    name, keys, event_time = schema.name, list(schema.entity_keys), schema.event_time
    exprs = [
        _storage_expr(schema, frame, k, d) for k, d in zip(keys, schema.key_dtypes, strict=True)
    ]
    exprs.append(_utc_epoch_us(name, frame, event_time))
    exprs.extend(
        _storage_expr(schema, frame, f, d)
        for f, d in zip(schema.feature_names, schema.feature_dtypes, strict=True)
    )
    try:
        stored = frame.select(exprs)
    except pl.exceptions.PolarsError as exc:
        raise ValueError(
            f"feature group {name!r}: a column does not convert to its declared dtype "
            f"{dict(zip(schema.feature_names, schema.feature_dtypes, strict=True))}: {exc}"
        ) from exc
    nulls = {
        c: n
        for c, n in stored.select([*keys, event_time]).null_count().row(0, named=True).items()
        if n
    }
    if nulls:
        raise ValueError(
            f"feature group {name!r}: entity keys and event time must not be null; "
            f"null counts {nulls}"
        )
    latest = stored.sort(event_time, maintain_order=True).unique(
        subset=keys, keep="last", maintain_order=False
    )
    return latest.select(*keys, event_time, _packed_values(schema)).sort(keys)


def _group_meta_from_row(row: tuple[Any, ...]) -> _GroupMeta:
    spec_json, row_count, max_event_time_us, last_write_us = row
    return _GroupMeta(
        schema=_Schema.from_json(spec_json),
        description=json.loads(spec_json).get("description", ""),
        row_count=row_count,
        max_event_time_us=max_event_time_us,
        last_write_us=last_write_us,
    )


class _GroupReader:
    """Prepared SQL, key normalisation and a row decoder for the current version of one group."""

    __slots__ = (
        "name",
        "version",
        "key_names",
        "_key_coercers",
        "_columns_sql",
        "_table_sql",
        "_key_on_sql",
        "sql_one",
        "_sql_many",
        "decode",
        "single_key",
        "_scalar_type",
    )

    def __init__(self, schema: _Schema) -> None:
        self.name = schema.name
        self.version = schema.version
        self.key_names = schema.entity_keys
        self.single_key = len(schema.entity_keys) == 1
        self._key_coercers = tuple(_KEY_COERCERS[d] for d in schema.key_dtypes)
        # bool is a subclass of int, so the fast path matches the exact type only.
        self._scalar_type: type | None = (
            {"int64": int, "string": str}[schema.key_dtypes[0]] if self.single_key else None
        )
        self._columns_sql = ", ".join(f"t.{_quote(c)}" for c in schema.stored_columns)
        self._table_sql = _quote(schema.table)
        where = " AND ".join(f"t.{_quote(k)} = ?" for k in schema.entity_keys)
        self.sql_one = f"SELECT {self._columns_sql} FROM {self._table_sql} AS t WHERE {where}"
        self._key_on_sql = " AND ".join(
            f"t.{_quote(k)} = v.column{i}" for i, k in enumerate(schema.entity_keys, start=1)
        )
        self._sql_many: dict[int, str] = {}
        self.decode = _make_decoder(schema)

    def normalize(self, keys: dict[str, Any] | Any) -> tuple[Any, ...]:
        """The request's key values in key order, converted to the stored Python types."""
        if type(keys) is self._scalar_type:
            return (keys,)  # the common case: one key already of the stored type
        if isinstance(keys, dict):
            if len(keys) != len(self.key_names) or not all(k in keys for k in self.key_names):
                raise ValueError(
                    f"keys {keys!r} for feature group {self.name!r} must name exactly the "
                    f"entity keys {list(self.key_names)}"
                )
            values = [keys[k] for k in self.key_names]
        elif self.single_key:
            values = [keys]
        else:
            raise ValueError(
                f"feature group {self.name!r} has entity keys {list(self.key_names)}; "
                f"pass a dict with these keys, not {keys!r}"
            )
        try:
            return tuple(c(v) for c, v in zip(self._key_coercers, values, strict=True))
        except TypeError as exc:
            raise TypeError(f"bad key for feature group {self.name!r} {keys!r}: {exc}") from exc

    def normalize_many(self, keys: Sequence[dict[str, Any] | Any]) -> list[Any]:
        """Stored key values of each request: a scalar for a one-key group, else a tuple."""
        if self.single_key:
            scalar = self._scalar_type
            return [k if type(k) is scalar else self.normalize(k)[0] for k in keys]
        return [self.normalize(k) for k in keys]

    def params(self, keys: list[Any]) -> list[Any]:
        """SQL parameters for keys from :meth:`normalize_many`."""
        return keys if self.single_key else [value for key in keys for value in key]

    def results(self, rows: list[tuple], requested: list[Any]) -> list[OnlineRow | NotFound]:
        """Decoded rows in request order, NotFound where no row matched; one decode per row."""
        decode = self.decode
        if self.single_key:
            found = {row[0]: decode(row) for row in rows}
            name = self.key_names[0]
            return [found.get(k) or NotFound(self.name, {name: k}) for k in requested]
        n_keys = len(self.key_names)
        found = {row[:n_keys]: decode(row) for row in rows}
        return [
            found.get(k) or NotFound(self.name, dict(zip(self.key_names, k, strict=True)))
            for k in requested
        ]

    def sql_many(self, n_keys: int) -> str:
        """SELECT for a power-of-two number of keys, so few distinct statements get cached."""
        sql = self._sql_many.get(n_keys)
        if sql is None:
            if self.single_key:
                marks = ", ".join("?" * n_keys)
                where = f"t.{_quote(self.key_names[0])} IN ({marks})"
                sql = f"SELECT {self._columns_sql} FROM {self._table_sql} AS t WHERE {where}"
            else:
                row = "(" + ", ".join("?" * len(self.key_names)) + ")"
                values = ", ".join([row] * n_keys)
                # CROSS JOIN keeps the VALUES list as the outer loop: one primary-key seek per
                # requested entity, whatever the planner's statistics say.
                sql = (
                    f"SELECT {self._columns_sql} FROM (VALUES {values}) AS v "
                    f"CROSS JOIN {self._table_sql} AS t ON {self._key_on_sql}"
                )
            self._sql_many[n_keys] = sql
        return sql


def _unflagger(schema: _Schema) -> Callable[[list[Any]], list[Any]]:
    """A function restoring the infinite floats of a decoded array that carries the marker."""
    n_features = len(schema.feature_names)
    float_positions = [i for i, d in enumerate(schema.feature_dtypes) if d == "float64"]

    def unflag(values: list[Any]) -> list[Any]:
        if len(values) != n_features + 1:
            raise OnlineStoreLayoutError(
                f"feature group {schema.name!r} version {schema.version}: a stored row has "
                f"{len(values)} values; expected {n_features} features"
            )
        values = values[:n_features]
        for i in float_positions:
            if type(values[i]) is str:
                values[i] = float(values[i])  # "inf" / "-inf"
        return values

    return unflag


def _make_decoder(schema: _Schema) -> Callable[[tuple[Any, ...]], OnlineRow]:
    """A function turning one selected row (keys, event time, packed values) into an OnlineRow.

    Generated as source, the way ``dataclasses`` builds ``__init__``: unpacking the decoded
    array into locals and building the features dict as a literal is the cheapest way to do it in
    Python, and decoding is most of the cost of a ``get_many``. A row carrying the infinity
    marker fails the unpacking (one element too many) and takes the slow path; the ``try`` costs
    nothing otherwise. Names enter the source only through ``repr``. The event time goes through
    ``fromtimestamp(us / 1e6)``, exact to the microsecond for dates between 1900 and 2100 (checked
    by the unit tests) and twice as fast as adding a ``timedelta``; timestamp features are ISO
    text and go through the still faster ``fromisoformat``.
    """
    n_keys = len(schema.entity_keys)
    keys = ", ".join(f"{name!r}: row[{i}]" for i, name in enumerate(schema.entity_keys))
    names = [f"f{i}" for i in range(len(schema.feature_names))]
    features = []
    for var, name, dtype in zip(names, schema.feature_names, schema.feature_dtypes, strict=True):
        if dtype == "timestamp_utc":
            value = f"None if {var} is None else _datetime({var})"
        elif dtype == "date":
            value = f"None if {var} is None else _date({var})"
        else:
            value = var  # JSON gives float, int, str, bool and None as they are
        features.append(f"{name!r}: {value}")
    lines = ["def decode(row):"]
    if names:
        targets = "".join(f"{var}, " for var in names)  # the trailing comma also fits one name
        lines += [
            f"    values = _loads(row[{n_keys + 1}])",
            "    try:",
            f"        {targets}= values",
            "    except ValueError:",
            f"        {targets}= _unflag(values)",
        ]
    lines.append(
        f"    return _new(_row, (_group, _version, {{{keys}}}, "
        f"_fts(row[{n_keys}] / 1e6, _UTC), {{{', '.join(features)}}}))"
    )
    namespace: dict[str, Any] = {
        "_new": tuple.__new__,  # skips OnlineRow.__new__, a Python-level function
        "_row": OnlineRow,
        "_group": schema.name,
        "_version": schema.version,
        "_fts": datetime.fromtimestamp,
        "_UTC": UTC,
        "_datetime": datetime.fromisoformat,
        "_date": date.fromisoformat,
        "_loads": orjson.loads,
        "_unflag": _unflagger(schema),
    }
    source = "\n".join(lines) + "\n"
    exec(compile(source, f"<online_store decoder {schema.table}>", "exec"), namespace)
    return namespace["decode"]


def _connect(path: Path, readonly: bool) -> sqlite3.Connection:
    if readonly:
        if not path.exists():
            raise FileNotFoundError(f"online store {path} does not exist; write a group first")
        con = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro",
            uri=True,
            isolation_level=None,
            check_same_thread=False,
            timeout=_BUSY_TIMEOUT_S,
            cached_statements=512,
        )
    else:
        con = sqlite3.connect(
            path,
            isolation_level=None,
            check_same_thread=False,
            timeout=_BUSY_TIMEOUT_S,
            cached_statements=512,
        )
        con.execute("PRAGMA journal_mode=WAL").fetchall()
        con.execute("PRAGMA synchronous=NORMAL")
        con.execute(f"PRAGMA journal_size_limit={_WAL_LIMIT_BYTES}")
    con.execute(f"PRAGMA mmap_size={_MMAP_BYTES}").fetchall()
    con.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
    return con


class OnlineStore:
    """SQLite online store; see the module docstring for the layout.

    Thread-safe: one long-lived read connection guarded by a lock serves ``get``/``get_many``
    from any thread, and writes go through a second connection, so a write from this object
    does not stall its readers. Other processes may read (and write) the same file at once.
    """

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._read_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._writer: sqlite3.Connection | None = None
        if not readonly:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = _connect(self.path, readonly=False)
            self._create_metadata_tables(self._writer)
        self._reader = _connect(self.path, readonly=readonly)
        self._cursor = self._reader.cursor()
        self._data_version: int | None = None
        self._readers: dict[str, _GroupReader] = {}
        # Current group versions stored with another layout: group name -> error message.
        self._stale: dict[str, str] = {}
        self._closed = False
        if readonly:
            # A reader (the HTTP service) refuses such a file up front rather than at each lookup.
            try:
                self._refresh_if_changed()
                if self._stale:
                    raise OnlineStoreLayoutError(" ".join(self._stale.values()))
            except BaseException:
                self.close()
                raise

    # -- writes -----------------------------------------------------------------------------

    def write_group(self, spec: FeatureGroupSpec, frame: pl.DataFrame) -> WriteResult:
        """Upsert the latest row per entity of ``frame``; a stored newer row is kept.

        One transaction per call: readers see all of this batch or none of it. A ``spec`` with a
        higher version than the stored one starts the new version's table and makes it current.
        """
        return self._write(spec, frame, replace=False)

    def replace_group(self, spec: FeatureGroupSpec, frame: pl.DataFrame) -> WriteResult:
        """Rebuild ``spec``'s version of the group from ``frame`` alone and make it current.

        For backfills and version bumps (or an explicit rollback to an older version); done in one
        transaction, so readers see the old contents until the new ones are complete.
        """
        return self._write(spec, frame, replace=True)

    def _write(self, spec: FeatureGroupSpec, frame: pl.DataFrame, *, replace: bool) -> WriteResult:
        writer = self._require_writer(spec.name)
        schema = _schema_for(spec, frame)
        latest = _latest_per_entity(schema, frame)
        started = time.perf_counter()
        with self._write_lock:
            writer.execute("BEGIN IMMEDIATE")
            try:
                self._check_against_stored(writer, schema, replace=replace)
                table = _quote(schema.table)
                if replace:
                    writer.execute(f"DROP TABLE IF EXISTS {table}")
                writer.execute(_create_table_sql(schema))
                written = _upsert(writer, schema, latest)
                count, max_us = writer.execute(
                    f"SELECT count(*), max({_quote(schema.event_time)}) FROM {table}"
                ).fetchone()
                writer.execute(
                    f"INSERT OR REPLACE INTO {_VERSIONS_TABLE} "
                    "(name, version, spec, row_count, max_event_time_us, last_write_us) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        schema.name,
                        schema.version,
                        schema.to_json(spec.description),
                        count,
                        max_us,
                        _now_us(),
                    ),
                )
                writer.execute(
                    f"INSERT OR REPLACE INTO {_CURRENT_TABLE} (name, version) VALUES (?, ?)",
                    (schema.name, schema.version),
                )
                self._commit(writer)
            except BaseException:
                if writer.in_transaction:
                    writer.execute("ROLLBACK")
                raise
        result = WriteResult(
            group=schema.name,
            version=schema.version,
            rows_in=frame.height,
            entities_written=written,
            entities_skipped_older=latest.height - written,
        )
        logger.info(
            "online store %s: %s %s in %.2fs",
            self.path,
            "replaced" if replace else "wrote",
            result,
            time.perf_counter() - started,
        )
        return result

    def _commit(self, writer: sqlite3.Connection) -> None:
        writer.execute("COMMIT")

    def _require_writer(self, group: str) -> sqlite3.Connection:
        self._require_open()
        if self._writer is None:
            raise PermissionError(
                f"online store {self.path} is open read-only; cannot write group {group!r} "
                f"(open it with readonly=False)"
            )
        return self._writer

    @staticmethod
    def _create_metadata_tables(con: sqlite3.Connection) -> None:
        con.execute(
            f"CREATE TABLE IF NOT EXISTS {_VERSIONS_TABLE} ("
            "name TEXT NOT NULL, version INTEGER NOT NULL, spec TEXT NOT NULL, "
            "row_count INTEGER NOT NULL, max_event_time_us INTEGER, "
            "last_write_us INTEGER NOT NULL, PRIMARY KEY (name, version)) WITHOUT ROWID"
        )
        con.execute(
            f"CREATE TABLE IF NOT EXISTS {_CURRENT_TABLE} ("
            "name TEXT NOT NULL PRIMARY KEY, version INTEGER NOT NULL) WITHOUT ROWID"
        )

    def _check_against_stored(
        self, con: sqlite3.Connection, schema: _Schema, *, replace: bool
    ) -> None:
        current = con.execute(
            f"SELECT version FROM {_CURRENT_TABLE} WHERE name = ?", (schema.name,)
        ).fetchone()
        if current is not None and schema.version < current[0] and not replace:
            raise ValueError(
                f"feature group {schema.name!r}: cannot write version {schema.version}, the "
                f"store already serves version {current[0]}; use replace_group to roll back"
            )
        stored = con.execute(
            f"SELECT spec FROM {_VERSIONS_TABLE} WHERE name = ? AND version = ?",
            (schema.name, schema.version),
        ).fetchone()
        if stored is None or replace:
            return
        stored_schema = _Schema.from_json(stored[0])
        if stored_schema.layout != schema.layout:
            raise OnlineStoreLayoutError(self._layout_message(stored_schema))
        if stored_schema != schema:
            raise ValueError(
                f"feature group {schema.name!r} version {schema.version} is stored with "
                f"{stored_schema}, which differs from the incoming {schema}; bump the version "
                f"for a breaking change"
            )

    def _layout_message(self, schema: _Schema) -> str:
        return (
            f"online store {self.path}: feature group {schema.name!r} version {schema.version} "
            f"is stored with storage layout {schema.layout}, but this code reads and writes "
            f"layout {_LAYOUT}; rewrite the group (replace_group, or delete the file and rerun "
            f"the pipeline, e.g. `make demo`)"
        )

    # -- reads ------------------------------------------------------------------------------

    def get(self, group: str, keys: dict[str, Any] | Any) -> OnlineRow | NotFound:
        """The stored row of one entity; ``keys`` may be a scalar when the group has one key."""
        with self._read_lock:
            reader = self._group_reader(group)
            params = reader.normalize(keys)
            row = self._cursor.execute(reader.sql_one, params).fetchone()
        if row is None:
            return NotFound(group, dict(zip(reader.key_names, params, strict=True)))
        return reader.decode(row)

    def get_many(
        self, group: str, keys: Sequence[dict[str, Any] | Any]
    ) -> list[OnlineRow | NotFound]:
        """Rows for many entities, in request order, all from one consistent snapshot."""
        with self._read_lock:
            reader = self._group_reader(group)
            requested = reader.normalize_many(keys)
            if not requested:
                return []
            rows = self._fetch_many(reader, requested)
        return reader.results(rows, requested)

    def _fetch_many(self, reader: _GroupReader, requested: list[Any]) -> list[tuple]:
        unique = list(dict.fromkeys(requested))
        chunks = [unique[i : i + _MAX_BATCH] for i in range(0, len(unique), _MAX_BATCH)]
        cursor = self._cursor
        if len(chunks) == 1:
            return self._fetch_chunk(cursor, reader, chunks[0])
        # Several statements: one read transaction keeps them on a single snapshot.
        cursor.execute("BEGIN")
        try:
            rows = [row for chunk in chunks for row in self._fetch_chunk(cursor, reader, chunk)]
        finally:
            cursor.execute("COMMIT")
        return rows

    @staticmethod
    def _fetch_chunk(cursor: sqlite3.Cursor, reader: _GroupReader, chunk: list[Any]) -> list[tuple]:
        size = 1 << (len(chunk) - 1).bit_length()
        # Pad with the first key up to a power of two: a repeated key matches the same row once.
        padded = chunk + [chunk[0]] * (size - len(chunk))
        return cursor.execute(reader.sql_many(size), reader.params(padded)).fetchall()

    def _group_reader(self, group: str) -> _GroupReader:
        """Reader for the current version of ``group``; call with the read lock held."""
        self._require_open()
        self._refresh_if_changed()
        try:
            return self._readers[group]
        except KeyError:
            if group in self._stale:
                raise OnlineStoreLayoutError(self._stale[group]) from None
            raise KeyError(
                f"unknown online feature group {group!r}; known groups: {sorted(self._readers)}"
            ) from None

    def _refresh_if_changed(self) -> None:
        # data_version changes whenever another connection (this object's writer included)
        # commits, so a version bump made by another process is seen by the next lookup.
        version = self._cursor.execute("PRAGMA data_version").fetchone()[0]
        if version == self._data_version:
            return
        metas = self._current_metas(self._cursor)
        self._readers = {
            m.schema.name: _GroupReader(m.schema) for m in metas if m.schema.layout == _LAYOUT
        }
        self._stale = {
            m.schema.name: self._layout_message(m.schema)
            for m in metas
            if m.schema.layout != _LAYOUT
        }
        self._data_version = version

    @staticmethod
    def _current_metas(cursor: sqlite3.Cursor) -> list[_GroupMeta]:
        exists = cursor.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN (?, ?)",
            (_VERSIONS_TABLE, _CURRENT_TABLE),
        ).fetchone()[0]
        if exists < 2:
            return []
        rows = cursor.execute(
            f"SELECT v.spec, v.row_count, v.max_event_time_us, v.last_write_us "
            f"FROM {_CURRENT_TABLE} AS c JOIN {_VERSIONS_TABLE} AS v "
            f"ON v.name = c.name AND v.version = c.version ORDER BY c.name"
        ).fetchall()
        return [_group_meta_from_row(r) for r in rows]

    def groups(self) -> list[dict[str, Any]]:
        """The registered groups at their current version, with row counts and write times."""
        with self._read_lock:
            self._require_open()
            metas = self._current_metas(self._cursor)
            versions: dict[str, list[int]] = {}
            for name, version in self._cursor.execute(
                f"SELECT name, version FROM {_VERSIONS_TABLE} ORDER BY name, version"
            ).fetchall():
                versions.setdefault(name, []).append(version)
        return [
            {
                "name": m.schema.name,
                "version": m.schema.version,
                "versions": versions.get(m.schema.name, []),
                "entity_keys": list(m.schema.entity_keys),
                "key_dtypes": list(m.schema.key_dtypes),
                "event_time": m.schema.event_time,
                "features": dict(zip(m.schema.feature_names, m.schema.feature_dtypes, strict=True)),
                "description": m.description,
                "table": m.schema.table,
                "row_count": m.row_count,
                "max_event_time": (
                    None if m.max_event_time_us is None else _from_us(m.max_event_time_us)
                ),
                "last_write_at": _from_us(m.last_write_us),
            }
            for m in metas
        ]

    def latest(self, group: str, version: int | None = None) -> pl.DataFrame:
        """Every stored row of ``group`` (its current version unless ``version`` is given).

        Columns and dtypes follow the group's spec: keys, event time (UTC), features.
        """
        with self._read_lock:
            current = self._group_reader(group)
            wanted = current.version if version is None else version
            spec_row = self._cursor.execute(
                f"SELECT spec FROM {_VERSIONS_TABLE} WHERE name = ? AND version = ?",
                (group, wanted),
            ).fetchone()
            if spec_row is None:
                raise KeyError(f"online feature group {group!r} has no stored version {wanted}")
            schema = _Schema.from_json(spec_row[0])
            if schema.layout != _LAYOUT:
                raise OnlineStoreLayoutError(self._layout_message(schema))
            columns = ", ".join(_quote(c) for c in schema.stored_columns)
            # One statement, so one snapshot; decoded in slices, which bounds the Python objects
            # alive at once and keeps the garbage collector from rescanning millions of them. Its
            # own cursor: closing it ends the read even if decoding fails half-way.
            cursor = self._reader.cursor()
            try:
                cursor.execute(f"SELECT {columns} FROM {_quote(schema.table)}")
                frames = []
                while rows := cursor.fetchmany(_READ_SLICE_ROWS):
                    frames.append(_rows_to_frame(schema, rows))
            finally:
                cursor.close()
        return pl.concat(frames) if frames else _rows_to_frame(schema, [])

    # -- lifecycle --------------------------------------------------------------------------

    def _require_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"online store {self.path} is closed")

    def close(self) -> None:
        """Close both connections; further calls raise. Safe to call twice."""
        with self._read_lock, self._write_lock:
            if self._closed:
                return
            self._closed = True
            self._cursor.close()
            self._reader.close()
            if self._writer is not None:
                self._writer.close()

    def __enter__(self) -> OnlineStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _create_table_sql(schema: _Schema) -> str:
    key_cols = [
        f"{_quote(k)} {_KEY_SQL_TYPES[d]} NOT NULL"
        for k, d in zip(schema.entity_keys, schema.key_dtypes, strict=True)
    ]
    pk = ", ".join(_quote(k) for k in schema.entity_keys)
    cols = ", ".join(
        [
            *key_cols,
            f"{_quote(schema.event_time)} INTEGER NOT NULL",
            f"{_quote(_VALUES_COLUMN)} BLOB NOT NULL",
        ]
    )
    return (
        f"CREATE TABLE IF NOT EXISTS {_quote(schema.table)} ({cols}, PRIMARY KEY ({pk})) "
        f"WITHOUT ROWID"
    )


def _upsert(con: sqlite3.Connection, schema: _Schema, latest: pl.DataFrame) -> int:
    """Insert or update ``latest``; returns how many entities were written.

    A stored row with a newer event time is left alone (its update is filtered out by the
    ``WHERE``), so a late batch never moves an entity back in time. Equal event times overwrite,
    which keeps re-running a write idempotent and lets a same-time correction through.
    """
    table, event_time, values = (
        _quote(schema.table),
        _quote(schema.event_time),
        _quote(_VALUES_COLUMN),
    )
    columns = [_quote(c) for c in schema.stored_columns]
    keys = ", ".join(_quote(k) for k in schema.entity_keys)
    sql = (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
        f"ON CONFLICT ({keys}) DO UPDATE SET "
        f"{event_time} = excluded.{event_time}, {values} = excluded.{values} "
        f"WHERE excluded.{event_time} >= {table}.{event_time}"
    )
    before = con.total_changes
    # Slices bound the Python objects alive at once (a 1M-row frame as tuples is ~0.5 GB); they
    # all go into the caller's one transaction.
    for part in latest.iter_slices(_WRITE_SLICE_ROWS):
        con.executemany(sql, zip(*(s.to_list() for s in part.get_columns()), strict=True))
    return con.total_changes - before


def _rows_to_frame(schema: _Schema, rows: list[tuple]) -> pl.DataFrame:
    """Rows of (keys, event time, packed values) as a frame typed after the group's spec."""
    n_keys = len(schema.entity_keys)
    key_types = {"int64": pl.Int64(), "string": pl.String()}
    id_schema: dict[str, pl.DataType] = {
        k: key_types[d] for k, d in zip(schema.entity_keys, schema.key_dtypes, strict=True)
    }
    id_schema[schema.event_time] = pl.Int64()
    feature_schema = {
        name: _POLARS_TYPES[dtype]
        for name, dtype in zip(schema.feature_names, schema.feature_dtypes, strict=True)
    }
    ids = pl.DataFrame([row[: n_keys + 1] for row in rows], schema=id_schema, orient="row")
    loads, unflag, n_features = orjson.loads, _unflagger(schema), len(feature_schema)
    values = [loads(row[n_keys + 1]) for row in rows]
    values = [v if len(v) == n_features else unflag(v) for v in values]
    features = pl.DataFrame(values, schema=feature_schema, orient="row")
    utc_us = pl.Datetime("us", "UTC")
    casts = [pl.from_epoch(schema.event_time, "us").dt.replace_time_zone("UTC").cast(utc_us)]
    for name, dtype in zip(schema.feature_names, schema.feature_dtypes, strict=True):
        if dtype == "timestamp_utc":
            casts.append(
                pl.col(name).str.to_datetime(
                    _TIMESTAMP_FORMAT.replace("+00:00", "%:z"), time_unit="us", time_zone="UTC"
                )
            )
        elif dtype == "date":
            casts.append(pl.col(name).str.to_date("%Y-%m-%d"))
    return ids.hstack(features.get_columns()).with_columns(casts)
