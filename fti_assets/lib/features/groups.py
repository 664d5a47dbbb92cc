"""The feature group the card windows write, declared as data, and the helper that declares a
feature with the default range of its type.

``card_transaction_features`` is declared with its windows (fti_assets/lib/features/windows.py):
the batch pipeline (Polars) and the streaming pipeline both write it. The groups dbt builds, and
the catalog of every group models select from, are the domain's: fti_assets/specs/feature_groups.py
(what a spec holds: :mod:`fti_assets.lib.store.group_spec`).
"""

from __future__ import annotations

from fti_assets.lib.features.windows import (
    card_window_feature_columns,
    card_window_nullable_features,
)
from fti_assets.lib.store.group_spec import FeatureGroupSpec, FeatureSpec


def feature(
    name: str,
    dtype: str,
    description: str,
    nullable: bool = True,
    min_value: float | None = None,
    max_value: float | None = None,
) -> FeatureSpec:
    # Counts and amounts are never negative; that is the default range of numeric features.
    if min_value is None and dtype in ("int64", "float64") and not name.endswith(("lat", "lon")):
        min_value = 0
    return FeatureSpec(name, dtype, description, nullable, min_value, max_value)


CARD_TRANSACTION_FEATURES = FeatureGroupSpec(
    name="card_transaction_features",
    version=1,
    entity_keys=("card_id",),
    source="polars",
    partition_column="event_time",
    online=True,
    description=(
        "Per card, its state right after each transaction (event_time = transaction time): "
        "counts and amounts over the trailing 1 h / 24 h / 7 d / 30 d, trailing mean and std of "
        "the amount, the gap to the previous transaction and the latest transaction's values. "
        "Windows are declared once in fti_assets/lib/features/windows.py."
    ),
    features=tuple(
        feature(name, dtype, description, nullable=name in card_window_nullable_features())
        for name, dtype, description in card_window_feature_columns()
    ),
)
