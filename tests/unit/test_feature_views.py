"""Feature views: versioned selections; a changed selection needs a new version."""

import dataclasses
from datetime import timedelta
from pathlib import Path

import pytest

from fti_assets.lib.features.views import (
    FeatureSelection,
    FeatureView,
    FeatureViewError,
    check_lock,
    resolve,
    view_from_dict,
    write_lock,
)
from fti_assets.specs.feature_groups import FEATURE_GROUPS
from fti_assets.specs.feature_views import CARD_RISK_FEATURES, FRAUD_FEATURES, ON_DEMAND_SETS


def test_a_changed_selection_without_a_new_version_is_refused(tmp_path: Path) -> None:
    lock = tmp_path / "views.lock.json"
    assert write_lock([CARD_RISK_FEATURES], lock) == ["card_risk_features@v1"]
    assert check_lock([CARD_RISK_FEATURES], lock) == []
    fewer = dataclasses.replace(CARD_RISK_FEATURES, selections=CARD_RISK_FEATURES.selections[:2])
    with pytest.raises(FeatureViewError, match=r"changed its selection .* declare v2"):
        check_lock([fewer], lock)
    with pytest.raises(FeatureViewError):
        write_lock([fewer], lock)  # the lock never rewrites a locked version
    bumped = dataclasses.replace(fewer, version=2)
    assert write_lock([CARD_RISK_FEATURES, bumped], lock) == ["card_risk_features@v2"]
    # A description is not part of the selection: no new version needed.
    reworded = dataclasses.replace(CARD_RISK_FEATURES, description="other words")
    assert check_lock([reworded], lock) == []


def test_a_ttl_or_a_column_changes_the_fingerprint() -> None:
    first = CARD_RISK_FEATURES.selections[0]
    with_ttl = dataclasses.replace(first, ttl=timedelta(days=2))
    other = dataclasses.replace(
        CARD_RISK_FEATURES, selections=(with_ttl, *CARD_RISK_FEATURES.selections[1:])
    )
    assert other.fingerprint() != CARD_RISK_FEATURES.fingerprint()


def test_old_versions_resolve_from_their_stored_definition() -> None:
    stored = FRAUD_FEATURES.to_dict()
    again = view_from_dict(stored, ON_DEMAND_SETS)
    assert again.fingerprint() == FRAUD_FEATURES.fingerprint()
    columns, categorical = resolve(again, FEATURE_GROUPS).input_columns()
    assert "distance_from_home_km" in columns and "card_profile_features__age_band" in categorical
    assert not any(c.endswith(("event_time", "feature_date")) for c in columns)


def test_a_view_naming_an_unknown_column_or_group_version_is_refused() -> None:
    spec = FEATURE_GROUPS["card_daily_features"]
    for selection, message in [
        (FeatureSelection(spec.name, spec.version, ("nope",)), r"no feature\(s\) \['nope'\]"),
        (FeatureSelection(spec.name, spec.version + 1, ("tx_count_1d",)), "the code defines v1"),
    ]:
        with pytest.raises(FeatureViewError, match=message):
            resolve(FeatureView("v", 1, "d", (selection,)), FEATURE_GROUPS)
