"""How the online store backends encode, decode and check rows (internal to the package).

Both backends store a group version's row of one entity as its keys, its event time as integer
microseconds since the epoch (UTC) and its features packed into one JSON array in feature order
(bools as true/false, timestamps as ISO text in UTC with microseconds, dates as ISO text, NaN as
null). Turning a row into Python objects is then one ``orjson.loads`` instead of one column per
feature, which was most of what a ``get_many`` cost. A row holding an infinite float (JSON has
none) stores it as the string ``"inf"`` or ``"-inf"`` and marks itself with one extra trailing
element. Each stored group version records a :class:`GroupSchema` (keys and their dtypes,
features and their dtypes, storage layout), so that a reader needs no
:class:`~fti_assets.lib.store.group_spec.FeatureGroupSpec`.
"""

from __future__ import annotations

import functools
import json
import operator
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
import polars as pl

from fti_assets.lib.store.group_spec import FeatureGroupSpec
from fti_assets.lib.store.online.base import NotFound, OnlineRow, OnlineStoreLayoutError

FEATURE_DTYPES = ("float64", "int64", "string", "bool", "timestamp_utc", "date")

# How group versions are laid out; recorded in every group version's spec (specs without it were
# written with layout 1, one SQLite column per feature). Bump it whenever the layout changes.
LAYOUT = 2
LEGACY_LAYOUT = 1
VALUES_COLUMN = "fti_values"
# Timestamp features inside the packed values: fixed-width ISO 8601 in UTC, which
# datetime.fromisoformat reads four times faster than fromtimestamp converts epoch microseconds.
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S%.6f+00:00"
# Types of the decoded JSON array, for latest(); timestamps and dates are parsed after.
_POLARS_TYPES: dict[str, pl.DataType] = {
    "float64": pl.Float64(),
    "int64": pl.Int64(),
    "string": pl.String(),
    "bool": pl.Boolean(),
    "timestamp_utc": pl.String(),
    "date": pl.String(),  # ISO text (YYYY-MM-DD)
}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class GroupSchema:
    """The part of a group's spec the online store stores and checks between writes."""

    name: str
    version: int
    entity_keys: tuple[str, ...]
    key_dtypes: tuple[str, ...]
    event_time: str
    feature_names: tuple[str, ...]
    feature_dtypes: tuple[str, ...]
    layout: int = LAYOUT

    @property
    def table(self) -> str:
        return f"fg__{self.name}_v{self.version}"

    @property
    def stored_columns(self) -> list[str]:
        """Columns of the group's table: keys, event time and the packed feature values."""
        return [*self.entity_keys, self.event_time, VALUES_COLUMN]

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
    def from_json(cls, text: str) -> GroupSchema:
        raw = json.loads(text)
        return cls(
            name=raw["name"],
            version=int(raw["version"]),
            entity_keys=tuple(raw["entity_keys"]),
            key_dtypes=tuple(raw["key_dtypes"]),
            event_time=raw["event_time"],
            feature_names=tuple(f["name"] for f in raw["features"]),
            feature_dtypes=tuple(f["dtype"] for f in raw["features"]),
            layout=int(raw.get("layout", LEGACY_LAYOUT)),
        )


@dataclass(frozen=True)
class GroupMeta:
    """A stored group version: its schema, description, row count and write times."""

    schema: GroupSchema
    description: str
    row_count: int
    max_event_time_us: int | None
    last_write_us: int

    @classmethod
    def from_stored(
        cls, spec_json: str, row_count: int, max_event_time_us: int | None, last_write_us: int
    ) -> GroupMeta:
        return cls(
            schema=GroupSchema.from_json(spec_json),
            description=json.loads(spec_json).get("description", ""),
            row_count=row_count,
            max_event_time_us=max_event_time_us,
            last_write_us=last_write_us,
        )

    def describe(self, versions: list[int]) -> dict[str, Any]:
        """The entry of ``groups()`` for this version (``versions``: every stored version)."""
        schema = self.schema
        return {
            "name": schema.name,
            "version": schema.version,
            "versions": versions,
            "entity_keys": list(schema.entity_keys),
            "key_dtypes": list(schema.key_dtypes),
            "event_time": schema.event_time,
            "features": dict(zip(schema.feature_names, schema.feature_dtypes, strict=True)),
            "description": self.description,
            "table": schema.table,
            "row_count": self.row_count,
            "max_event_time": (
                None if self.max_event_time_us is None else from_us(self.max_event_time_us)
            ),
            "last_write_at": from_us(self.last_write_us),
        }


def from_us(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)


def now_us() -> int:
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


KEY_COERCERS: dict[str, Callable[[Any], Any]] = {
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


def schema_for(spec: FeatureGroupSpec, frame: pl.DataFrame) -> GroupSchema:
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
    if VALUES_COLUMN in (*spec.entity_keys, spec.event_time):
        raise ValueError(
            f"feature group {spec.name!r}: {VALUES_COLUMN!r} is the online store's column for "
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
    return GroupSchema(
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


def _storage_expr(schema: GroupSchema, frame: pl.DataFrame, column: str, dtype: str) -> pl.Expr:
    if dtype == "timestamp_utc":
        utc_us = _aware_datetime(schema.name, frame, column).dt.convert_time_zone("UTC")
        return utc_us.dt.cast_time_unit("us").dt.to_string(TIMESTAMP_FORMAT)
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


def _packed_values(schema: GroupSchema) -> pl.Expr:
    """The features of each row as one JSON array (bytes), in feature order."""
    pairs = list(zip(schema.feature_names, schema.feature_dtypes, strict=True))
    if not pairs:
        return pl.lit(b"[]", pl.Binary).alias(VALUES_COLUMN)
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
        .alias(VALUES_COLUMN)
    )


def latest_per_entity(schema: GroupSchema, frame: pl.DataFrame) -> pl.DataFrame:
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


def schema_for_row(spec: FeatureGroupSpec, row: Mapping[str, Any]) -> GroupSchema:
    """The schema the store keeps for ``spec``, with key dtypes read from a Python row (str or
    int values), as :func:`schema_for` reads them from a frame's dtypes."""
    key_dtypes = []
    for key in spec.entity_keys:
        value = row.get(key)
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise TypeError(
                f"feature group {spec.name!r}: entity key {key}={value!r} is a "
                f"{type(value).__name__}; expected a str or an int"
            )
        key_dtypes.append("string" if isinstance(value, str) else "int64")
    bad = {f.name: f.dtype for f in spec.features if f.dtype not in FEATURE_DTYPES}
    if bad:
        raise ValueError(
            f"feature group {spec.name!r} has features with unknown dtypes {bad}; "
            f"expected one of {list(FEATURE_DTYPES)}"
        )
    return GroupSchema(
        name=spec.name,
        version=spec.version,
        entity_keys=tuple(spec.entity_keys),
        key_dtypes=tuple(key_dtypes),
        event_time=spec.event_time,
        feature_names=tuple(spec.feature_names),
        feature_dtypes=tuple(f.dtype for f in spec.features),
    )


_INF = float("inf")
_US = timedelta(microseconds=1)


def _row_value(schema: GroupSchema, name: str, dtype: str, value: Any) -> Any:
    """One feature value as its JSON element (before orjson): the same text the frame encoder
    writes, up to the digits of a float, which parse back to the same double."""
    if value is None:
        return None
    if dtype == "float64":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"feature group {schema.name!r}: {name}={value!r} is not a float64")
        value = float(value)
        if value != value:  # NaN has no JSON form: null, as the frame encoder writes it
            return None
        return value if abs(value) != _INF else ("inf" if value > 0 else "-inf")
    if dtype == "int64" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if dtype == "string" and isinstance(value, str):
        return value
    if dtype == "bool" and isinstance(value, bool):
        return value
    if dtype == "timestamp_utc" and isinstance(value, datetime) and value.utcoffset() is not None:
        # isoformat pads the year to 4 digits, where strftime's %Y does not (year 1 -> "1").
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    if dtype == "date" and isinstance(value, date) and not isinstance(value, datetime):
        return value.isoformat()
    raise ValueError(
        f"feature group {schema.name!r}: {name}={value!r} ({type(value).__name__}) is not a {dtype}"
    )


def pack_rows(schema: GroupSchema, rows: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
    """Python rows as stored tuples (keys, event time in µs, packed features), one per entity:
    the newest by event time (the last given on ties), sorted by key.

    The row-by-row twin of :func:`latest_per_entity` for the few rows of a streaming commit, where
    building a frame costs more than encoding (1.4 ms for one row). Stored values read back the
    same whichever encoder wrote them (tested).
    """
    coercers = [KEY_COERCERS[d] for d in schema.key_dtypes]
    features = list(zip(schema.feature_names, schema.feature_dtypes, strict=True))
    latest: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    fast = row_packer(schema)
    n_keys = len(coercers)
    for row in rows:
        packed = None if fast is None else fast(row)
        if packed is not None:  # the common case; the code below checks, converts and names
            keys = packed[:n_keys]
            stored = latest.get(keys)
            if stored is None or stored[-2] <= packed[-2]:
                latest[keys] = packed
            continue
        try:
            keys = tuple(c(row[k]) for c, k in zip(coercers, schema.entity_keys, strict=True))
        except (KeyError, TypeError) as exc:
            raise ValueError(
                f"feature group {schema.name!r}: bad entity key in {row!r}: {exc}"
            ) from exc
        at = row.get(schema.event_time)
        if not isinstance(at, datetime) or at.utcoffset() is None:
            raise ValueError(
                f"feature group {schema.name!r}: {schema.event_time}={at!r}; expected a "
                "timezone-aware datetime"
            )
        event_us = (at - EPOCH) // _US
        stored = latest.get(keys)
        if stored is not None and stored[-2] > event_us:
            continue
        try:
            values = [_row_value(schema, n, d, row[n]) for n, d in features]
        except KeyError as exc:
            raise ValueError(
                f"feature group {schema.name!r}: a row lacks the feature {exc}; has {list(row)}"
            ) from exc
        if any(
            type(v) is str and d == "float64" for v, (_, d) in zip(values, features, strict=True)
        ):
            values.append(0)  # the marker: this row holds an infinite float as a string
        latest[keys] = (*keys, event_us, orjson.dumps(values))
    return [latest[k] for k in sorted(latest)]


_FAST_CHECKS = {
    # finite floats only: x - x is nan for inf and nan
    "float64": "(type({v}) is float and {v} - {v} == 0.0 or {v} is None)",
    "int64": "(type({v}) is int or {v} is None)",  # bool is not exactly int
    "string": "(type({v}) is str or {v} is None)",
    "bool": "(type({v}) is bool or {v} is None)",
}


@functools.cache
def row_packer(schema: GroupSchema) -> Callable[[Mapping[str, Any]], tuple[Any, ...] | None]:
    """The fast path of :func:`pack_rows`: a function giving the stored tuple of a row whose
    values all have exactly the Python type of their dtype (floats finite, None allowed) and
    whose event time is a UTC ``datetime``, and None for any other row (which the general code
    then converts, or refuses naming the bad value). None when a dtype has no fast path.

    Generated as source like :func:`make_decoder`, for the same reason: a streaming commit packs
    one row per card of its micro-batch, and checking each feature by a function call per value
    cost as much as everything else the pipeline does per event. Names enter the source only
    through ``repr``.
    """
    if any(d not in _FAST_CHECKS for d in schema.feature_dtypes) or any(
        d not in ("int64", "string") for d in schema.key_dtypes
    ):
        return None
    keys = [f"k{i}" for i in range(len(schema.entity_keys))]
    names = [f"f{i}" for i in range(len(schema.feature_names))]
    key_types = {"int64": "int", "string": "str"}
    checks = [f"type({k}) is {key_types[d]}" for k, d in zip(keys, schema.key_dtypes, strict=True)]
    checks.append("type(at) is _datetime and at.tzinfo is _UTC")
    checks += [
        _FAST_CHECKS[d].format(v=v) for v, d in zip(names, schema.feature_dtypes, strict=True)
    ]
    lines = ["def pack(row):", "    try:"]
    lines += [f"        {k} = row[{n!r}]" for k, n in zip(keys, schema.entity_keys, strict=True)]
    lines.append(f"        at = row[{schema.event_time!r}]")
    lines += [f"        {v} = row[{n!r}]" for v, n in zip(names, schema.feature_names, strict=True)]
    lines += ["    except KeyError:", "        return None"]
    lines.append("    if not (" + " and ".join(checks) + "):")
    lines.append("        return None")
    lines.append(
        f"    return ({''.join(f'{k}, ' for k in keys)}(at - _EPOCH) // _US, "
        f"_dumps([{', '.join(names)}]))"
    )
    namespace: dict[str, Any] = {
        "_datetime": datetime,
        "_UTC": UTC,
        "_EPOCH": EPOCH,
        "_US": _US,
        "_dumps": orjson.dumps,
    }
    source = "\n".join(lines) + "\n"
    exec(compile(source, f"<online_store packer {schema.table}>", "exec"), namespace)
    return namespace["pack"]


class GroupCodec:
    """Key normalisation and the row decoder of one stored group version."""

    __slots__ = (
        "name",
        "version",
        "key_names",
        "single_key",
        "decode",
        "_key_coercers",
        "_scalar_type",
    )

    def __init__(self, schema: GroupSchema) -> None:
        self.name = schema.name
        self.version = schema.version
        self.key_names = schema.entity_keys
        self.single_key = len(schema.entity_keys) == 1
        self._key_coercers = tuple(KEY_COERCERS[d] for d in schema.key_dtypes)
        # bool is a subclass of int, so the fast path matches the exact type only.
        self._scalar_type: type | None = (
            {"int64": int, "string": str}[schema.key_dtypes[0]] if self.single_key else None
        )
        self.decode = make_decoder(schema)

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


def unflagger(schema: GroupSchema) -> Callable[[list[Any]], list[Any]]:
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


def make_decoder(schema: GroupSchema) -> Callable[[tuple[Any, ...]], OnlineRow]:
    """A function turning one selected row (keys, event time, packed values) into an OnlineRow.

    Generated as source, the way ``dataclasses`` builds ``__init__``: unpacking the decoded
    array into locals and building the features dict as a literal is the cheapest way to do it in
    Python, and decoding is most of the cost of a ``get_many``. A row carrying the infinity
    marker fails the unpacking (one element too many) and takes the slow path; the ``try`` costs
    nothing otherwise. Names enter the source only through ``repr``. The event time goes through
    ``fromtimestamp(us / 1e6)``, exact to the microsecond for dates between 1900 and 2100 (checked
    by the unit tests) and twice as fast as adding a ``timedelta``; timestamp features are ISO
    text and go through the still faster ``fromisoformat``.

    Why generated code rather than a plain loop (no library decodes this row format):
    benchmarks/bench_online.py, section "Online store row decoding" (100 rows of 12 features
    per call), CPU p50 209 µs for this decoder against 368 µs for the generic loop
    ``generic_decoder`` there (1.75x), same OnlineRow results; measured with that section
    alone on a busy 2-core machine, BENCHMARKS.md carries it from the next ``make bench``.
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
        "_unflag": unflagger(schema),
    }
    source = "\n".join(lines) + "\n"
    exec(compile(source, f"<online_store decoder {schema.table}>", "exec"), namespace)
    return namespace["decode"]


def rows_to_frame(schema: GroupSchema, rows: list[tuple]) -> pl.DataFrame:
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
    loads, unflag, n_features = orjson.loads, unflagger(schema), len(feature_schema)
    values = [loads(row[n_keys + 1]) for row in rows]
    values = [v if len(v) == n_features else unflag(v) for v in values]
    features = pl.DataFrame(values, schema=feature_schema, orient="row")
    utc_us = pl.Datetime("us", "UTC")
    casts = [pl.from_epoch(schema.event_time, "us").dt.replace_time_zone("UTC").cast(utc_us)]
    for name, dtype in zip(schema.feature_names, schema.feature_dtypes, strict=True):
        if dtype == "timestamp_utc":
            casts.append(
                pl.col(name).str.to_datetime(
                    TIMESTAMP_FORMAT.replace("+00:00", "%:z"), time_unit="us", time_zone="UTC"
                )
            )
        elif dtype == "date":
            casts.append(pl.col(name).str.to_date("%Y-%m-%d"))
    return ids.hstack(features.get_columns()).with_columns(casts)
