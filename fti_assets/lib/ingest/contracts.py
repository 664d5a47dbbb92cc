"""Pandera (polars) contracts: what a landing row and a feature-group row must look like.

Row-level contracts decide which rows are accepted and which go to quarantine with a reason;
feature-group contracts back the blocking asset checks on every feature group.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

import pandera.polars as pa
import polars as pl

from fti_assets.lib.ingest.domain import AGE_BANDS, CATEGORIES, CHANNELS, MAX_AMOUNT, RISK_PROFILES
from fti_assets.lib.store.group_spec import FeatureGroupSpec

UTC_US = pl.Datetime("us", "UTC")

POLARS_DTYPES: dict[str, pl.DataType] = {
    "string": pl.String(),
    "float64": pl.Float64(),
    "int64": pl.Int64(),
    "int8": pl.Int8(),
    "bool": pl.Boolean(),
    "date": pl.Date(),
    "timestamp_utc": UTC_US,
}


def _finite() -> pa.Check:
    return pa.Check(
        lambda d: d.lazyframe.select(pl.col(d.key).is_finite()),
        error="must be a finite number",
    )


def _not_after(limit: datetime, what: str) -> pa.Check:
    return pa.Check(
        lambda d: d.lazyframe.select(pl.col(d.key) <= pl.lit(limit, dtype=UTC_US)),
        error=f"must not be after {what} ({limit.isoformat()})",
    )


def _known(values: Collection[str], what: str) -> pa.Check:
    known = pl.Series(list(values), dtype=pl.String)
    return pa.Check(
        lambda d: d.lazyframe.select(pl.col(d.key).is_in(known)),
        error=f"unknown {what}",
    )


def _one_of(values: Collection[str]) -> pa.Check:
    return pa.Check.isin(list(values), error=f"must be one of {sorted(values)}")


def transactions_contract(
    known_cards: Collection[str], known_merchants: Collection[str], latest_allowed: datetime
) -> pa.DataFrameSchema:
    """Row contract of a daily transactions file, given the reference data known at ingest."""
    return pa.DataFrameSchema(
        {
            "transaction_id": pa.Column(pl.String, nullable=False),
            "card_id": pa.Column(pl.String, [_known(known_cards, "card_id")], nullable=False),
            "merchant_id": pa.Column(
                pl.String, [_known(known_merchants, "merchant_id")], nullable=False
            ),
            "amount": pa.Column(
                pl.Float64,
                [
                    _finite(),
                    pa.Check.ge(0, error="must be >= 0"),
                    pa.Check.le(MAX_AMOUNT, error=f"must be <= {MAX_AMOUNT:,.0f}"),
                ],
                nullable=False,
            ),
            "category": pa.Column(pl.String, [_one_of(CATEGORIES)], nullable=False),
            "channel": pa.Column(pl.String, [_one_of(CHANNELS)], nullable=False),
            "transaction_time": pa.Column(
                UTC_US, [_not_after(latest_allowed, "the end of the file's day")], nullable=False
            ),
            "lat": pa.Column(pl.Float64, [pa.Check.in_range(-90, 90)], nullable=False),
            "lon": pa.Column(pl.Float64, [pa.Check.in_range(-180, 180)], nullable=False),
        },
        strict=False,
        name="raw_transactions",
    )


def fraud_labels_contract(latest_allowed: datetime) -> pa.DataFrameSchema:
    return pa.DataFrameSchema(
        {
            "transaction_id": pa.Column(pl.String, nullable=False),
            "is_fraud": pa.Column(pl.Int8, [pa.Check.isin([0, 1], error="must be 0 or 1")]),
            "reported_at": pa.Column(
                UTC_US, [_not_after(latest_allowed, "the end of the file's day")], nullable=False
            ),
        },
        strict=False,
        name="raw_fraud_labels",
    )


def cards_contract() -> pa.DataFrameSchema:
    return pa.DataFrameSchema(
        {
            "card_id": pa.Column(pl.String, nullable=False),
            "customer_id": pa.Column(pl.String, nullable=False),
            "home_lat": pa.Column(pl.Float64, [pa.Check.in_range(-90, 90)], nullable=False),
            "home_lon": pa.Column(pl.Float64, [pa.Check.in_range(-180, 180)], nullable=False),
            "credit_limit": pa.Column(pl.Float64, [_finite(), pa.Check.gt(0)], nullable=False),
            "age_band": pa.Column(pl.String, [_one_of(AGE_BANDS)], nullable=False),
            "account_open_date": pa.Column(pl.Date, nullable=False),
        },
        strict=False,
        name="raw_cards",
    )


def merchants_contract() -> pa.DataFrameSchema:
    return pa.DataFrameSchema(
        {
            "merchant_id": pa.Column(pl.String, nullable=False),
            "category": pa.Column(pl.String, [_one_of(CATEGORIES)], nullable=False),
            "lat": pa.Column(pl.Float64, [pa.Check.in_range(-90, 90)], nullable=False),
            "lon": pa.Column(pl.Float64, [pa.Check.in_range(-180, 180)], nullable=False),
            "risk_profile": pa.Column(pl.String, [_one_of(RISK_PROFILES)], nullable=False),
        },
        strict=False,
        name="raw_merchants",
    )


def feature_group_contract(spec: FeatureGroupSpec) -> pa.DataFrameSchema:
    """Contract of a feature group table: types, declared ranges, non-null keys and event_time,
    and uniqueness of (entity key, event_time)."""
    columns: dict[str, pa.Column] = {
        key: pa.Column(None, nullable=False) for key in spec.entity_keys
    }
    columns[spec.event_time] = pa.Column(UTC_US, nullable=False)
    for feature in spec.features:
        checks: list[pa.Check] = []
        low, high = feature.min_value, feature.max_value
        if low is not None:
            checks.append(pa.Check.ge(low, error=f"must be >= {low}"))
        if high is not None:
            checks.append(pa.Check.le(high, error=f"must be <= {high}"))
        if feature.dtype == "float64":
            checks.append(
                pa.Check(
                    lambda d: d.lazyframe.select(pl.col(d.key).is_nan().not_()),
                    error="must not be NaN (use null for missing)",
                )
            )
        columns[feature.name] = pa.Column(
            POLARS_DTYPES[feature.dtype], checks, nullable=feature.nullable
        )
    return pa.DataFrameSchema(
        columns,
        strict=True,
        unique=[*spec.entity_keys, spec.event_time],
        name=spec.name,
    )
