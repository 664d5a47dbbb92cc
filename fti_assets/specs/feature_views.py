"""The feature views models are trained on and served with, declared as data.

A view version is immutable once locked (``feature_views.lock.json``, checked when the
definitions load and by the tests): to change what a view selects, declare a new version and run
``fti feature-views lock``. Old versions stay resolvable for the models trained on them (the
registry keeps each registered model's view definition).
"""

from __future__ import annotations

from pathlib import Path

from fti_assets.lib.features import on_demand as od
from fti_assets.lib.features.views import (
    FeatureSelection,
    FeatureView,
    FeatureViewError,
    OnDemandFeature,
    OnDemandSet,
    ResolvedView,
    check_lock,
    resolve,
    view_from_dict,
)
from fti_assets.lib.registry.model_registry import ModelRegistry, ModelVersion
from fti_assets.specs.feature_groups import FEATURE_GROUPS

LOCK_PATH = Path(__file__).with_name("feature_views.lock.json")

CARD_TRANSACTION_CONTEXT = OnDemandSet(
    name="card_transaction_context",
    features=tuple(OnDemandFeature(f.name, f.dtype, f.description) for f in od.ON_DEMAND_FEATURES),
    inputs=tuple(dict.fromkeys((*od.REQUEST_COLUMNS, *od.FEATURE_INPUTS))),
    compute_frame=od.compute_on_demand,
    compute_row=od.compute_on_demand_row,
)
ON_DEMAND_SETS = {CARD_TRANSACTION_CONTEXT.name: CARD_TRANSACTION_CONTEXT}


def _all_of(group: str) -> FeatureSelection:
    spec = FEATURE_GROUPS[group]
    return FeatureSelection(spec.name, spec.version, tuple(spec.feature_names))


FRAUD_FEATURES = FeatureView(
    name="fraud_features",
    version=1,
    description=(
        "What the fraud model sees of a transaction: the card's state right after its previous "
        "transaction, the card's and the merchant's trailing daily activity and profiles, the "
        "request's amount, category and channel, and the on-demand context features (distance "
        "from home, amount z-score, speed since the last transaction...)."
    ),
    selections=tuple(
        _all_of(g)
        for g in (
            "card_transaction_features",
            "card_daily_features",
            "merchant_daily_features",
            "card_profile_features",
            "merchant_profile_features",
        )
    ),
    request_features={"amount": "numeric", "category": "categorical", "channel": "categorical"},
    on_demand=CARD_TRANSACTION_CONTEXT,
)

CARD_RISK_FEATURES = FeatureView(
    name="card_risk_features",
    version=1,
    description=(
        "What the card risk model sees of a card at a midnight: its state after its latest "
        "transaction, its trailing daily activity and its profile (the same feature groups as "
        "the fraud model; no request, no merchant)."
    ),
    selections=tuple(
        _all_of(g)
        for g in ("card_transaction_features", "card_daily_features", "card_profile_features")
    ),
)

FEATURE_VIEWS = {view.key: view for view in (FRAUD_FEATURES, CARD_RISK_FEATURES)}

# A view whose selection changed without a new version stops the definitions from loading.
check_lock(FEATURE_VIEWS.values(), LOCK_PATH)


def resolved(view: FeatureView) -> ResolvedView:
    return resolve(view, FEATURE_GROUPS)


def view_of_model(registry: ModelRegistry, model: ModelVersion) -> ResolvedView:
    """The feature view a registered version was trained on, from the registry's copy of its
    definition (so a rollback serves the old model with the old selection, even after the code
    moved on to a new view version)."""
    key = model.feature_view_key
    if key is None:
        raise FeatureViewError(
            f"model {model.name} v{model.version} records no feature view (registered before "
            "feature views existed); retrain it"
        )
    return resolved(view_from_dict(registry.feature_view(*key), ON_DEMAND_SETS))
