"""The real-time path in the asset graph: event log → streaming card features → service.

These assets are not materialized by Dagster runs: ``fti stream`` (a long-running process)
writes ``streaming_card_features`` into the online store, the service appends to the event log.
They are declared so that lineage shows where the online card rows come from between two batch
runs, and the ``streaming_pipeline_sensor`` (sensors.py) reports their state: lag, events/s,
last offset (observations) and each advance of the pipeline (materializations, which its
freshness policy watches).
"""

from datetime import timedelta

import dagster as dg

from fti_assets.defs.metadata import OWNERS, feature_group_metadata
from fti_assets.lib.features.groups import CARD_TRANSACTION_FEATURES
from fti_assets.resources import event_log_kind, online_store_kind
from fti_assets.specs.feature_groups import FEATURE_GROUPS

# The pipeline applies events within milliseconds; a report older than this means it is down or
# far behind (with traffic flowing), so the card velocity features served are stale.
STREAMING_FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=timedelta(minutes=10), warn_window=timedelta(minutes=2)
)

transaction_event_log = dg.AssetSpec(
    "transaction_event_log",
    group_name="streaming",
    kinds={event_log_kind()},
    owners=OWNERS,
    description=(
        "Durable, ordered log of every transaction the prediction service scored, appended "
        "before each answer (FTI_EVENT_LOG_URL: a SQLite table or a Redis Stream). Written by "
        "the service, read by `fti stream`."
    ),
)

streaming_card_features = dg.AssetSpec(
    "streaming_card_features",
    deps=[transaction_event_log, dg.AssetKey("raw_transactions")],
    group_name="streaming",
    kinds={"python", online_store_kind()},
    owners=OWNERS,
    freshness_policy=STREAMING_FRESHNESS,
    description=(
        "card_transaction_features rows in the online store kept current per transaction by "
        "the streaming pipeline (`fti stream`): each event of the log applied exactly once to "
        "the card's windows (declared once in lib/features/windows.py, as for the batch group), "
        "the offset committed with the rows. Windows start from the trailing 30 days of "
        "raw_transactions. Observed by streaming_pipeline_sensor: lag, events/s, last offset."
    ),
    metadata={
        **feature_group_metadata(CARD_TRANSACTION_FEATURES),
        "consumer": "card_transaction_features",
    },
)

prediction_service = dg.AssetSpec(
    "prediction_service",
    deps=[
        streaming_card_features,
        *(dg.AssetKey(f"online_{name}") for name, spec in FEATURE_GROUPS.items() if spec.online),
    ],
    group_name="streaming",
    kinds={"fastapi"},
    owners=OWNERS,
    description=(
        "The HTTP prediction service (`fti serve`): scores each transaction with the champion "
        "on the online store's rows (batch and streaming) plus on-demand features, and appends "
        "the transaction to transaction_event_log before answering."
    ),
)

streaming_assets = [transaction_event_log, streaming_card_features, prediction_service]
