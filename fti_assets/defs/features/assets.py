"""Python feature pipelines (Polars) and the online store.

``card_transaction_features`` is built by Polars from the window declarations in
fti_assets/lib/features/windows.py. The ``online_*`` assets copy the latest row per entity of
each online feature group into the online store (SQLite or Redis, ``FTI_ONLINE_URL``), in one
atomic write per group, once the group's blocking contract check has passed. The streaming pipeline
(``fti stream``) writes the same card rows between two batch runs; an entity's row never moves
back in time, whichever path wrote it last.
"""

import dagster as dg

from fti_assets.defs.automation import daily_condition, latest_condition
from fti_assets.defs.metadata import (
    FEATURE_FRESHNESS,
    OWNERS,
    feature_group_metadata,
    frame_preview,
)
from fti_assets.lib.features.groups import CARD_TRANSACTION_FEATURES
from fti_assets.lib.features.pipelines import latest_offline_rows, refresh_card_transaction_features
from fti_assets.lib.store.offline import current_snapshot
from fti_assets.partitions import DAILY_TAGS, daily_partitions, lookback_dep, single_run
from fti_assets.resources import OfflineStoreResource, OnlineStoreResource, online_store_kind
from fti_assets.specs.feature_groups import FEATURE_GROUPS


@dg.asset(
    name=CARD_TRANSACTION_FEATURES.name,
    group_name="features",
    kinds={"polars", "duckdb"},
    owners=OWNERS,
    partitions_def=daily_partitions,
    backfill_policy=single_run,
    deps=[lookback_dep("raw_transactions", days=30)],  # trailing windows reach 30 days back
    metadata=feature_group_metadata(CARD_TRANSACTION_FEATURES),
    freshness_policy=FEATURE_FRESHNESS,
    description=CARD_TRANSACTION_FEATURES.description,
    tags=DAILY_TAGS,
    automation_condition=daily_condition(),
)
def card_transaction_features(
    context: dg.AssetExecutionContext, offline_store: OfflineStoreResource
) -> dg.MaterializeResult:
    window = context.partition_time_window
    with offline_store.connection() as con:
        rows, stats = refresh_card_transaction_features(con, window.start, window.end)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": stats.rows_written,
            "history_rows_read": stats.rows_read,
            "cards": stats.entities,
            "window": f"[{window.start.isoformat()}, {window.end.isoformat()})",
            "lake_snapshot": stats.lake_snapshot,
            "preview": frame_preview(rows),
        }
    )


def _online_asset(group: str) -> dg.AssetsDefinition:
    spec = FEATURE_GROUPS[group]

    @dg.asset(
        name=f"online_{group}",
        group_name="online",
        kinds={online_store_kind()},
        owners=OWNERS,
        deps=[dg.AssetDep(group)],
        description=(
            f"Latest row per {', '.join(spec.entity_keys)} of feature group {group} "
            f"v{spec.version} in the online store (one atomic write per run)."
        ),
        metadata={"feature_group": group, "feature_group_version": spec.version},
        automation_condition=latest_condition(),
    )
    def _asset(
        offline_store: OfflineStoreResource, online_store: OnlineStoreResource
    ) -> dg.MaterializeResult:
        # Copy the newest rows as of one lake snapshot, recorded in the metadata.
        with offline_store.connection(read_only=True) as con:
            snapshot = current_snapshot(con)
        with offline_store.connection(snapshot=snapshot) as con:
            latest = latest_offline_rows(con, spec)
        with online_store.open() as store:
            result = store.write_group(spec, latest)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": result.entities_written,
                "rows_in": result.rows_in,
                "entities_skipped_older": result.entities_skipped_older,
                "max_event_time": str(latest[spec.event_time].max()),
                "online_store": online_store.display_url,
                "offline_lake_snapshot": snapshot,
            }
        )

    return _asset


online_assets = [_online_asset(name) for name, spec in FEATURE_GROUPS.items() if spec.online]
