"""The feature vectors of a view, read from the offline store as of each row's time.

Training datasets, batch inference and the monitoring of train/serve skew all build the vectors
a model sees through :func:`join_features`; the online service computes the same on-demand
features with the same function.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb
import polars as pl

from fti_assets.lib.features.pit import pit_join
from fti_assets.lib.features.views import ResolvedView, col
from fti_assets.lib.store.group_spec import FeatureGroupSpec
from fti_assets.lib.store.offline import as_utc, quote_ident, read_frame


def join_features(
    con: duckdb.DuckDBPyConnection,
    rows: pl.DataFrame,
    view: ResolvedView,
    time_column: str,
) -> pl.DataFrame:
    """The rows with every selected group's features as of (strictly before) their
    ``time_column``, then the view's on-demand features: the feature vector the model sees.

    Training datasets and batch inference both build their vectors here, and the online
    service computes the same on-demand features with the same function.
    """
    if rows.is_empty():
        raise ValueError("no rows to join features to")
    ttl = view.view.ttls()
    max_time = rows.get_column(time_column).max()
    min_time = rows.get_column(time_column).min()
    frame = rows
    for spec in view.groups:
        features = _read_group(
            con, spec, view.view.selection(spec.name).features, min_time, max_time,
            ttl.get(spec.name),
        )  # fmt: skip
        frame = pit_join(
            frame,
            features,
            keys=spec.entity_keys,
            label_time=time_column,
            feature_time=spec.event_time,
            ttl=ttl.get(spec.name),
        )
    on_demand = view.view.on_demand
    return on_demand.compute_frame(frame) if on_demand is not None else frame


def _read_group(
    con: duckdb.DuckDBPyConnection,
    spec: FeatureGroupSpec,
    features: tuple[str, ...],
    min_label_time: datetime,
    max_label_time: datetime,
    ttl: timedelta | None,
) -> pl.DataFrame:
    """The group's rows that can match a label, with the selected features renamed
    ``{group}__{feature}``."""
    event_time = quote_ident(spec.event_time)
    select = ", ".join(quote_ident(c) for c in (*spec.entity_keys, spec.event_time, *features))
    where, params = f"{event_time} < ?", [max_label_time]
    if ttl is not None:
        # Older rows would be dropped by the TTL anyway: never read them.
        where += f" and {event_time} >= ?"
        params.append(min_label_time - ttl)
    sql = f"select {select} from {quote_ident(spec.table)} where {where}"
    frame = read_frame(con, sql, params).with_columns(as_utc(spec.event_time))
    renames = {f: col(spec.name, f) for f in features}
    return frame.rename(renames).with_columns(
        pl.col(spec.event_time).alias(col(spec.name, "event_time"))
    )
