"""One factory per model spec: training, evaluation, promotion and daily scoring assets."""

from __future__ import annotations

import dagster as dg

from fti_assets.defs.models.inference import build_predictions_asset
from fti_assets.defs.models.training import build_training_assets
from fti_assets.specs.models import ModelSpec


def model_definitions(spec: ModelSpec) -> dg.Definitions:
    """Every asset and check of one model spec."""
    built = build_training_assets(spec)
    if "batch" in spec.serving:
        built.append(build_predictions_asset(spec))
    checks = [d for d in built if isinstance(d, dg.AssetChecksDefinition)]
    assets = [d for d in built if d not in checks]
    return dg.Definitions(assets=assets, asset_checks=checks)
