"""The feature groups of the card-payments domain, declared as data: one
:class:`~fti_assets.lib.store.group_spec.FeatureGroupSpec` per group, and the catalog of every
group feature views select from.

The dbt models build the daily and profile groups (their SQL is in dbt_project/models/features);
``card_transaction_features`` is declared with its windows in lib (the batch and streaming
pipelines both write it). The assets that write a group, the point-in-time join, the online store
and the asset metadata all read a group's spec from :data:`FEATURE_GROUPS`.
"""

from __future__ import annotations

from fti_assets.lib.features.groups import CARD_TRANSACTION_FEATURES
from fti_assets.lib.features.groups import feature as _f
from fti_assets.lib.store.group_spec import FeatureGroupSpec

CARD_DAILY_FEATURES = FeatureGroupSpec(
    name="card_daily_features",
    version=1,
    entity_keys=("card_id",),
    source="dbt",
    partition_column="feature_date",
    online=True,
    description=(
        "Per card and day, trailing 1/7/30-day transaction counts and amounts; available at the "
        "midnight UTC that ends the day."
    ),
    features=(
        _f("feature_date", "date", "Day the aggregates cover (event_time is its end).", False),
        _f("tx_count_1d", "int64", "Transactions on the day.", False),
        _f("tx_count_7d", "int64", "Transactions in the trailing 7 days.", False),
        _f("tx_count_30d", "int64", "Transactions in the trailing 30 days.", False),
        _f("amount_sum_1d", "float64", "Amount spent on the day.", False),
        _f("amount_sum_7d", "float64", "Amount spent in the trailing 7 days.", False),
        _f("amount_sum_30d", "float64", "Amount spent in the trailing 30 days.", False),
        _f("amount_mean_7d", "float64", "Mean amount over the trailing 7 days (null if none)."),
        _f("amount_mean_30d", "float64", "Mean amount over the trailing 30 days (null if none)."),
        _f("online_share_30d", "float64", "Share of online transactions over 30 days.", True, 0, 1),
        _f("active_days_30d", "int64", "Days with a transaction in the trailing 30 days.", False),
    ),
)

MERCHANT_DAILY_FEATURES = FeatureGroupSpec(
    name="merchant_daily_features",
    version=1,
    entity_keys=("merchant_id",),
    source="dbt",
    partition_column="feature_date",
    online=True,
    description=(
        "Per merchant and day, trailing activity and a 30-day fraud rate that counts only fraud "
        "reports that had arrived by the end of the day (no leakage through late labels)."
    ),
    features=(
        _f("feature_date", "date", "Day the aggregates cover (event_time is its end).", False),
        _f("tx_count_7d", "int64", "Transactions in the trailing 7 days.", False),
        _f("tx_count_30d", "int64", "Transactions in the trailing 30 days.", False),
        _f("amount_mean_30d", "float64", "Mean amount over the trailing 30 days."),
        _f(
            "known_fraud_30d",
            "int64",
            "Fraud among the 30-day transactions, reported by then.",
            False,
        ),
        _f(
            "fraud_rate_30d",
            "float64",
            "known_fraud_30d / tx_count_30d (null if none).",
            True,
            0,
            1,
        ),
    ),
)

CARD_PROFILE_FEATURES = FeatureGroupSpec(
    name="card_profile_features",
    version=1,
    entity_keys=("card_id",),
    source="dbt",
    online=True,
    description="Card and customer attributes, true from the day the account was opened.",
    features=(
        _f("home_lat", "float64", "Latitude of the card holder's home.", False, -90, 90),
        _f("home_lon", "float64", "Longitude of the card holder's home.", False, -180, 180),
        _f("credit_limit", "float64", "Credit limit of the card.", False),
        _f("age_band", "string", "Age band of the card holder.", False),
        _f("account_open_date", "date", "Day the account was opened.", False),
    ),
)

MERCHANT_PROFILE_FEATURES = FeatureGroupSpec(
    name="merchant_profile_features",
    version=1,
    entity_keys=("merchant_id",),
    source="dbt",
    online=True,
    description=(
        "Merchant category, risk profile and location (reference data without a validity time: "
        "event_time is the epoch)."
    ),
    features=(
        _f("merchant_category", "string", "The merchant's business category.", False),
        _f("merchant_risk_profile", "string", "Risk tier assigned by the acquirer.", False),
        _f("merchant_lat", "float64", "Merchant latitude.", False, -90, 90),
        _f("merchant_lon", "float64", "Merchant longitude.", False, -180, 180),
    ),
)

FEATURE_GROUPS: dict[str, FeatureGroupSpec] = {
    spec.name: spec
    for spec in (
        CARD_TRANSACTION_FEATURES,
        CARD_DAILY_FEATURES,
        MERCHANT_DAILY_FEATURES,
        CARD_PROFILE_FEATURES,
        MERCHANT_PROFILE_FEATURES,
    )
}


def online_groups() -> list[FeatureGroupSpec]:
    """The feature groups the online store serves, in catalog order."""
    return [spec for spec in FEATURE_GROUPS.values() if spec.online]
