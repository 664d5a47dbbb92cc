"""Feature pipelines that run in Python against the offline store (the dbt ones run in SQL)."""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import duckdb
import polars as pl

from fti_assets.lib.core.settings import LakeConfig
from fti_assets.lib.features.groups import CARD_TRANSACTION_FEATURES
from fti_assets.lib.features.windows import LOOKBACK, build_card_transaction_features
from fti_assets.lib.store.group_spec import FeatureGroupSpec
from fti_assets.lib.store.offline import (
    Replacement,
    connection,
    quote_ident,
    read_frame,
    replace_partitions,
    table_exists,
)
from fti_assets.lib.store.online import NotFound, OnlineStoreBackend


@dataclass(frozen=True)
class RefreshStats:
    table: str
    rows_written: int
    rows_read: int
    entities: int
    lake_snapshot: int  # the offline-store snapshot of the commit that wrote the rows


def refresh_card_transaction_features(
    con: duckdb.DuckDBPyConnection, start: datetime, end: datetime
) -> tuple[pl.DataFrame, RefreshStats]:
    """Rebuild the card state rows with start <= event_time < end, reading LOOKBACK of history
    before ``start``, and replace exactly that window of the table in one transaction."""
    spec = CARD_TRANSACTION_FEATURES
    history = read_frame(
        con,
        "select transaction_id, card_id, amount, category, channel, transaction_time, lat, lon "
        "from raw_transactions where transaction_time >= ? and transaction_time < ?",
        [start - LOOKBACK, end],
    )
    rows = build_card_transaction_features(history.lazy(), start, end)
    snapshot = replace_partitions(
        con,
        [Replacement(spec.table, rows, "event_time >= ? and event_time < ?", [start, end])],
        message=f"{spec.name} [{start.isoformat()}, {end.isoformat()})",
    )
    stats = RefreshStats(
        spec.table, rows.height, history.height, rows["card_id"].n_unique(), snapshot
    )
    return rows, stats


def latest_offline_rows(
    con: duckdb.DuckDBPyConnection,
    spec: FeatureGroupSpec,
    keys: pl.DataFrame | None = None,
    *,
    as_of: datetime | None = None,
) -> pl.DataFrame:
    """The newest row per entity of a feature group in the offline store (what the online store
    must hold), optionally only for the entities in ``keys``; with ``as_of``, the values current
    at that time (the newest row with ``event_time <= as_of``: a value is true from its
    event_time on)."""
    source, params = _group_rows(con, spec, keys)
    if as_of is not None:
        if as_of.utcoffset() is None:
            raise ValueError(f"as_of {as_of} is naive; expected a timezone-aware time")
        source = f"(select * from {source} where {quote_ident(spec.event_time)} <= ?)"
        params.append(as_of)
    key_list = ", ".join(quote_ident(k) for k in spec.entity_keys)
    columns = ", ".join(quote_ident(c) for c in spec.columns)
    return read_frame(
        con,
        f"select {columns} from {source} "
        f"qualify row_number() over (partition by {key_list} order by "
        f"{quote_ident(spec.event_time)} desc) = 1",
        params,
    )


def entity_history(
    con: duckdb.DuckDBPyConnection, spec: FeatureGroupSpec, keys: pl.DataFrame
) -> pl.DataFrame:
    """Every row the offline store holds for the entities in ``keys``, oldest first: how their
    values changed over time."""
    source, params = _group_rows(con, spec, keys)
    columns = ", ".join(quote_ident(c) for c in spec.columns)
    order = ", ".join(quote_ident(c) for c in (*spec.entity_keys, spec.event_time))
    return read_frame(con, f"select {columns} from {source} order by {order}", params)


def _group_rows(
    con: duckdb.DuckDBPyConnection, spec: FeatureGroupSpec, keys: pl.DataFrame | None
) -> tuple[str, list]:
    """The group's table as SQL, restricted to the entities of ``keys`` (a registered frame)."""
    if not table_exists(con, spec.table):
        raise LookupError(f"offline table {spec.table} of feature group {spec.name} is missing")
    source = quote_ident(spec.table)
    if keys is None:
        return source, []
    key_list = ", ".join(quote_ident(k) for k in spec.entity_keys)
    view = f"__keys_{uuid.uuid4().hex}"
    con.register(view, keys.select(spec.entity_keys))
    return f"(select * from {source} semi join {view} using ({key_list}))", []


def key_frame(spec: FeatureGroupSpec, keys: Mapping[str, object]) -> pl.DataFrame:
    """One entity's key as a one-row frame (``{"card_id": "c0000001"}``)."""
    if sorted(keys) != sorted(spec.entity_keys):
        raise ValueError(
            f"feature group {spec.name} is keyed by {list(spec.entity_keys)}; got {sorted(keys)}"
        )
    values = {k: str(keys[k]) for k in spec.entity_keys}
    for name, value in values.items():
        if "\x00" in value:
            # DuckLake inlines filter values into its catalog queries, where a NUL ends the
            # string literal: the read would fail with a parser error instead of finding nothing.
            raise ValueError(
                f"key {name}={value!r} holds a NUL character; no key of the offline store does"
            )
    return pl.DataFrame({k: [v] for k, v in values.items()})


def read_group(
    lake: LakeConfig,
    spec: FeatureGroupSpec,
    keys: Mapping[str, object] | None = None,
    *,
    as_of: datetime | None = None,
    snapshot: int | None = None,
    snapshot_time: datetime | None = None,
) -> pl.DataFrame:
    """The newest row per entity of a group — the values current at event time ``as_of`` (now
    when None) — as the offline store held them at lake snapshot ``snapshot`` (or commit time
    ``snapshot_time``; the newest snapshot when neither is given), optionally only for the
    entity ``keys`` (``{"card_id": "c0000001"}``).

    ``as_of`` travels in the data's time (what was true then, as known now); ``snapshot``
    travels in the store's history (what the store held then, before later corrections).
    """
    wanted = None if keys is None else key_frame(spec, keys)
    read_only = snapshot is None and snapshot_time is None
    with connection(
        lake, read_only=read_only, snapshot=snapshot, snapshot_time=snapshot_time
    ) as con:
        return latest_offline_rows(con, spec, wanted, as_of=as_of)


def online_offline_mismatches(
    store: OnlineStoreBackend,
    con: duckdb.DuckDBPyConnection,
    spec: FeatureGroupSpec,
    sample_size: int = 200,
    seed: int = 0,
) -> tuple[int, list[str]]:
    """Compare the online rows of a sample of entities with the newest offline rows.

    Returns (entities compared, descriptions of mismatches). An entity missing online, a
    different event_time or any differing value is a mismatch.
    """
    latest = latest_offline_rows(con, spec)
    sample = latest.sample(min(sample_size, latest.height), seed=seed, shuffle=True)
    keys = sample.select(spec.entity_keys).to_dicts()
    found = store.get_many(spec.name, keys)
    problems = []
    for expected, got in zip(sample.to_dicts(), found, strict=True):
        key = {k: expected[k] for k in spec.entity_keys}
        if isinstance(got, NotFound):
            problems.append(f"{key}: missing online")
            continue
        if got.event_time != expected[spec.event_time]:
            problems.append(
                f"{key}: online event_time {got.event_time} != offline {expected[spec.event_time]}"
            )
        for name in spec.feature_names:
            if not _same(got.features[name], expected[name]):
                problems.append(
                    f"{key}.{name}: online {got.features[name]!r} != offline {expected[name]!r}"
                )
    return len(keys), problems


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12) or (math.isnan(a) and math.isnan(b))
    return a == b
