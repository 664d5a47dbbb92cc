"""On-demand features: computed from the request plus precomputed features, at request time.

One function, :func:`compute_on_demand`, is used everywhere these features exist: the training
dataset builder and batch inference call it on whole frames, the HTTP service calls it on a
one-row frame. Same code, same values: no train/serve skew.

Inputs are the request's transaction fields plus feature columns named ``{group}__{feature}``
(the names a training dataset gives them), e.g. ``card_profile_features__home_lat``.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

EARTH_RADIUS_KM = 6371.0088
# Below this gap a speed is meaningless (two swipes in the same shop); cap it instead of dividing
# by ~0 hours.
_MIN_HOURS_FOR_SPEED = 1 / 60


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


def _haversine_km(lat1: pl.Expr, lon1: pl.Expr, lat2: pl.Expr, lon2: pl.Expr) -> pl.Expr:
    lat1, lon1, lat2, lon2 = (e.cast(pl.Float64).radians() for e in (lat1, lon1, lat2, lon2))
    a = ((lat2 - lat1) / 2).sin() ** 2 + lat1.cos() * lat2.cos() * ((lon2 - lon1) / 2).sin() ** 2
    return 2 * EARTH_RADIUS_KM * a.sqrt().arcsin()


def _safe_div(num: pl.Expr, den: pl.Expr) -> pl.Expr:
    return pl.when(den.is_not_null() & (den != 0)).then(num / den)


def on_demand_exprs() -> list[pl.Expr]:
    amount = pl.col("amount").cast(pl.Float64)
    ts = pl.col("transaction_time")
    last_ts = pl.col(col(CARD_TX, "event_time"))
    seconds = (ts - last_ts).dt.total_microseconds().cast(pl.Float64) / 1e6
    dist_last = _haversine_km(
        pl.col("lat"),
        pl.col("lon"),
        pl.col(col(CARD_TX, "last_lat")),
        pl.col(col(CARD_TX, "last_lon")),
    )
    hours = (seconds / 3600).clip(lower_bound=_MIN_HOURS_FOR_SPEED)
    open_date = pl.col(col(CARD_PROFILE, "account_open_date"))
    return [
        seconds.alias("seconds_since_last_tx"),
        _safe_div(
            amount - pl.col(col(CARD_TX, "amount_mean_30d")), pl.col(col(CARD_TX, "amount_std_30d"))
        ).alias("amount_zscore"),
        _safe_div(amount, pl.col(col(CARD_TX, "amount_mean_30d"))).alias("amount_to_mean_ratio"),
        _safe_div(amount, pl.col(col(CARD_PROFILE, "credit_limit"))).alias(
            "amount_to_credit_limit"
        ),
        _haversine_km(
            pl.col("lat"),
            pl.col("lon"),
            pl.col(col(CARD_PROFILE, "home_lat")),
            pl.col(col(CARD_PROFILE, "home_lon")),
        ).alias("distance_from_home_km"),
        dist_last.alias("distance_from_last_km"),
        (dist_last / hours).alias("speed_from_last_kmh"),
        ts.dt.hour().cast(pl.Int64).alias("hour_of_day"),
        ((ts.dt.date() - open_date).dt.total_days().cast(pl.Float64)).alias("account_age_days"),
        (pl.col("channel") == "online").cast(pl.Int64).alias("is_online"),
    ]


def compute_on_demand(frame: pl.DataFrame) -> pl.DataFrame:
    """Return ``frame`` with the on-demand feature columns added (replacing any of that name).

    Missing inputs (a card never seen before, say) give null features, never an error; a
    missing input *column* is a programming error and raises naming it.
    """
    missing = [c for c in (*REQUEST_COLUMNS, *FEATURE_INPUTS) if c not in frame.columns]
    if missing:
        raise ValueError(f"on-demand features need columns {missing}; got {frame.columns}")
    return frame.with_columns(on_demand_exprs())
