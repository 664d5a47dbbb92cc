"""On-demand features: computed from the request plus precomputed features, at request time.

One function, :func:`on_demand_values`, computes them everywhere they exist. It is written with
NumPy operations that accept whole arrays or single floats: the training dataset builder and batch
inference call it through :func:`compute_on_demand` on columns of a frame, the HTTP service
through :func:`compute_on_demand_row` on one request's floats (tens of microseconds, no frame to
build). Same code, same values: no train/serve skew (a test checks equality).

Inputs are the request's transaction fields plus feature columns named ``{group}__{feature}``
(the names a training dataset gives them), e.g. ``card_profile_features__home_lat``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import polars as pl

EARTH_RADIUS_KM = 6371.0088
# Below this gap a speed is meaningless (two swipes in the same shop); cap it instead of dividing
# by ~0 hours.
_MIN_HOURS_FOR_SPEED = 1 / 60
_US_PER_S = 1_000_000.0
_US_PER_HOUR = 3_600_000_000
_US_PER_DAY = 86_400_000_000
_EPOCH = date(1970, 1, 1)


def col(group: str, feature: str) -> str:
    """Name of a feature-group column in datasets and feature vectors."""
    return f"{group}__{feature}"


CARD_TX = "card_transaction_features"
CARD_PROFILE = "card_profile_features"

REQUEST_COLUMNS = ("amount", "transaction_time", "lat", "lon", "channel", "category")
FEATURE_INPUTS = (
    col(CARD_TX, "event_time"),
    col(CARD_TX, "amount_mean_30d"),
    col(CARD_TX, "amount_std_30d"),
    col(CARD_TX, "last_lat"),
    col(CARD_TX, "last_lon"),
    col(CARD_PROFILE, "home_lat"),
    col(CARD_PROFILE, "home_lon"),
    col(CARD_PROFILE, "credit_limit"),
    col(CARD_PROFILE, "account_open_date"),
)


@dataclass(frozen=True)
class OnDemandFeature:
    name: str
    dtype: str
    description: str


ON_DEMAND_FEATURES: tuple[OnDemandFeature, ...] = (
    OnDemandFeature(
        "seconds_since_last_tx",
        "float64",
        "Seconds since the card's previous transaction (null for the first).",
    ),
    OnDemandFeature(
        "amount_zscore",
        "float64",
        "Amount's z-score against the card's trailing 30-day mean and std.",
    ),
    OnDemandFeature(
        "amount_to_mean_ratio",
        "float64",
        "Amount divided by the card's trailing 30-day mean amount.",
    ),
    OnDemandFeature("amount_to_credit_limit", "float64", "Amount divided by the credit limit."),
    OnDemandFeature(
        "distance_from_home_km",
        "float64",
        "Great-circle distance between the transaction and the card holder's home.",
    ),
    OnDemandFeature(
        "distance_from_last_km",
        "float64",
        "Distance between this and the card's previous transaction.",
    ),
    OnDemandFeature(
        "speed_from_last_kmh", "float64", "Implied travel speed since the previous transaction."
    ),
    OnDemandFeature("hour_of_day", "int64", "Hour of the transaction (UTC)."),
    OnDemandFeature("account_age_days", "float64", "Days since the account was opened."),
    OnDemandFeature("is_online", "int64", "1 for an online transaction, 0 in store."),
)
ON_DEMAND_NAMES = [f.name for f in ON_DEMAND_FEATURES]


def _haversine_km(lat1: Any, lon1: Any, lat2: Any, lon2: Any) -> Any:
    lat1, lon1, lat2, lon2 = (np.radians(x) for x in (lat1, lon1, lat2, lon2))
    a = (
        np.sin((lat2 - lat1) / 2) ** 2
        + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(a))


def _ratio(num: Any, den: Any) -> Any:
    """num / den, NaN (missing) where den is missing or zero."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den != 0, num / den, np.nan)


def on_demand_values(v: Mapping[str, Any]) -> dict[str, Any]:
    """The on-demand features from numeric inputs (NumPy arrays, or floats for one request).

    Inputs (NaN = missing): ``amount``, ``ts_us`` (transaction time, epoch microseconds),
    ``lat``, ``lon``, ``is_online`` (0/1), ``last_us`` (the card's previous transaction time),
    ``mean``/``std`` (its trailing 30-day amount mean and std), ``last_lat``/``last_lon``,
    ``home_lat``/``home_lon``, ``credit_limit``, ``open_day`` (account open date, epoch days).
    """
    seconds = (v["ts_us"] - v["last_us"]) / _US_PER_S
    dist_last = _haversine_km(v["lat"], v["lon"], v["last_lat"], v["last_lon"])
    hours = np.maximum(seconds / 3600.0, _MIN_HOURS_FOR_SPEED)
    return {
        "seconds_since_last_tx": seconds,
        "amount_zscore": _ratio(v["amount"] - v["mean"], v["std"]),
        "amount_to_mean_ratio": _ratio(v["amount"], v["mean"]),
        "amount_to_credit_limit": _ratio(v["amount"], v["credit_limit"]),
        "distance_from_home_km": _haversine_km(v["lat"], v["lon"], v["home_lat"], v["home_lon"]),
        "distance_from_last_km": dist_last,
        "speed_from_last_kmh": dist_last / hours,
        "hour_of_day": np.floor_divide(v["ts_us"], _US_PER_HOUR) % 24,
        "account_age_days": np.floor_divide(v["ts_us"], _US_PER_DAY) - v["open_day"],
        "is_online": v["is_online"],
    }


_INT_FEATURES = frozenset(f.name for f in ON_DEMAND_FEATURES if f.dtype == "int64")


def _check_columns(columns: list[str]) -> None:
    missing = [c for c in (*REQUEST_COLUMNS, *FEATURE_INPUTS) if c not in columns]
    if missing:
        raise ValueError(f"on-demand features need columns {missing}; got {columns}")


def _floats(frame: pl.DataFrame, expr: pl.Expr) -> np.ndarray:
    return frame.select(expr.cast(pl.Float64)).to_series().to_numpy(allow_copy=True)


def compute_on_demand(frame: pl.DataFrame) -> pl.DataFrame:
    """Return ``frame`` with the on-demand feature columns added (replacing any of that name).

    Missing inputs (a card never seen before, say) give null features, never an error; a
    missing input *column* is a programming error and raises naming it.
    """
    _check_columns(frame.columns)
    if frame.is_empty():
        return frame.with_columns(
            pl.lit(None, dtype=pl.Int64 if f.name in _INT_FEATURES else pl.Float64).alias(f.name)
            for f in ON_DEMAND_FEATURES
        )
    epoch_us = lambda name: pl.col(name).dt.epoch("us")  # noqa: E731
    values = on_demand_values(
        {
            "amount": _floats(frame, pl.col("amount")),
            "ts_us": _floats(frame, epoch_us("transaction_time")),
            "lat": _floats(frame, pl.col("lat")),
            "lon": _floats(frame, pl.col("lon")),
            "is_online": _floats(frame, pl.col("channel") == "online"),
            "last_us": _floats(frame, epoch_us(col(CARD_TX, "event_time"))),
            "mean": _floats(frame, pl.col(col(CARD_TX, "amount_mean_30d"))),
            "std": _floats(frame, pl.col(col(CARD_TX, "amount_std_30d"))),
            "last_lat": _floats(frame, pl.col(col(CARD_TX, "last_lat"))),
            "last_lon": _floats(frame, pl.col(col(CARD_TX, "last_lon"))),
            "home_lat": _floats(frame, pl.col(col(CARD_PROFILE, "home_lat"))),
            "home_lon": _floats(frame, pl.col(col(CARD_PROFILE, "home_lon"))),
            "credit_limit": _floats(frame, pl.col(col(CARD_PROFILE, "credit_limit"))),
            "open_day": _floats(
                frame, pl.col(col(CARD_PROFILE, "account_open_date")).dt.epoch("d")
            ),
        }
    )
    columns = []
    for feature in ON_DEMAND_FEATURES:
        series = pl.Series(feature.name, values[feature.name], dtype=pl.Float64, nan_to_null=True)
        if feature.name in _INT_FEATURES:
            series = series.cast(pl.Int64)
        columns.append(series)
    return frame.with_columns(columns)


def _num(value: Any) -> float:
    return float("nan") if value is None else float(value)


def _epoch_us(value: datetime | None) -> float:
    if value is None:
        return float("nan")
    if value.tzinfo is None:
        raise ValueError(f"timestamp {value!r} is timezone-naive; expected UTC-aware")
    # Integer arithmetic: exact microseconds, like Polars' dt.epoch("us").
    return float((value - _EPOCH_DT) // _ONE_US)


_EPOCH_DT = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)


def compute_on_demand_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """The on-demand features of one request (same inputs as a frame row; None = missing)."""
    _check_columns(list(row))
    open_date = row[col(CARD_PROFILE, "account_open_date")]
    values = on_demand_values(
        {
            "amount": _num(row["amount"]),
            "ts_us": _epoch_us(row["transaction_time"]),
            "lat": _num(row["lat"]),
            "lon": _num(row["lon"]),
            "is_online": float(row["channel"] == "online"),
            "last_us": _epoch_us(row[col(CARD_TX, "event_time")]),
            "mean": _num(row[col(CARD_TX, "amount_mean_30d")]),
            "std": _num(row[col(CARD_TX, "amount_std_30d")]),
            "last_lat": _num(row[col(CARD_TX, "last_lat")]),
            "last_lon": _num(row[col(CARD_TX, "last_lon")]),
            "home_lat": _num(row[col(CARD_PROFILE, "home_lat")]),
            "home_lon": _num(row[col(CARD_PROFILE, "home_lon")]),
            "credit_limit": _num(row[col(CARD_PROFILE, "credit_limit")]),
            "open_day": float("nan") if open_date is None else float((open_date - _EPOCH).days),
        }
    )
    out: dict[str, Any] = {}
    for name, value in values.items():
        value = float(value)
        if value != value:  # NaN: missing, as a null in the frame path
            out[name] = None
        else:
            out[name] = int(value) if name in _INT_FEATURES else value
    return out
