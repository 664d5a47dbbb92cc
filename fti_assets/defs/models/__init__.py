"""One factory per model spec: training, evaluation, promotion, daily scoring and monitoring
assets, the retraining job and the sensor that starts it.

The factory is called once per spec in ``per_spec.py``, which the defs folder loader picks up;
this module and the stage modules next to it hold builders only (no module-level Dagster
objects), so nothing here is loaded twice."""

import dagster as dg

from fti_assets.defs.models.inference import build_predictions_asset
from fti_assets.defs.models.monitoring import build_monitoring_assets
from fti_assets.defs.models.retraining import retraining_job, retraining_sensor
from fti_assets.defs.models.training import build_training_assets
from fti_assets.specs.models import ModelSpec


def model_definitions(spec: ModelSpec) -> dg.Definitions:
    """Every asset, check, job and sensor of one model spec."""
    built = build_training_assets(spec)
    if "batch" in spec.serving:
        built.append(build_predictions_asset(spec))
        built.extend(build_monitoring_assets(spec))
    checks = [d for d in built if isinstance(d, dg.AssetChecksDefinition)]
    assets = [d for d in built if d not in checks]
    job = retraining_job(spec)
    return dg.Definitions(
        assets=assets, asset_checks=checks, jobs=[job], sensors=[retraining_sensor(spec, job)]
    )
