"""The one entry point: every stage's assets, checks and schedules, one factory per model spec,
and the shared resources."""

import dagster as dg

from fti_assets.defs.automation import automation_sensor
from fti_assets.defs.features import assets as feature_assets
from fti_assets.defs.features import checks as feature_checks
from fti_assets.defs.inference import assets as inference_assets
from fti_assets.defs.ingest import assets as ingest_assets
from fti_assets.defs.ingest import sensors as ingest_sensors
from fti_assets.defs.maintenance import assets as maintenance_assets
from fti_assets.defs.models import model_definitions
from fti_assets.defs.streaming import assets as streaming_assets
from fti_assets.defs.streaming import sensors as streaming_sensors
from fti_assets.defs.transform import assets as transform_assets
from fti_assets.resources import default_resources
from fti_assets.specs.models import MODELS


def _stages() -> dg.Definitions:
    return dg.Definitions(
        assets=[
            *dg.load_assets_from_modules([ingest_assets]),
            transform_assets.dbt_reference_models,
            transform_assets.dbt_daily_models,
            feature_assets.card_transaction_features,
            *feature_assets.online_assets,
            inference_assets.inference_log,
            maintenance_assets.lake_maintenance,
            *streaming_assets.streaming_assets,
        ],
        asset_checks=[*feature_checks.feature_contract_checks, *feature_checks.online_checks],
        schedules=[maintenance_assets.lake_maintenance_schedule],
        sensors=[
            ingest_sensors.landing_sensor,
            automation_sensor,
            streaming_sensors.streaming_pipeline_sensor,
        ],
        resources={**default_resources(), "dbt": transform_assets.dbt_resource()},
        # Runs launched from the UI or a schedule execute each step in its own process. Forking
        # those from a server that imported these definitions once per run (forkserver), instead
        # of spawning a fresh interpreter per step, saves the ~4 s import for every step.
        executor=dg.multiprocess_executor.configured(
            {"start_method": {"forkserver": {"preload_modules": ["fti_assets.definitions"]}}}
        ),
    )


defs = dg.Definitions.merge(_stages(), *(model_definitions(spec) for spec in MODELS.values()))
