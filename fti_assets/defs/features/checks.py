"""Blocking contract checks on every feature group.

A failing contract (types, ranges, nulls, duplicate (entity key, event_time)) stops everything
downstream of the feature group: training datasets and the online store never see bad rows.

The checks of daily groups are not partitioned themselves: they check the days of the run they
are part of (its partition or range). Dagster records a partitioned check run over a range of
days as one result with no partition, so the days would keep the status "planned" and the
automation conditions, which wait for upstream blocking checks to pass, would never see them
pass after a catch-up, a backfill or `fti demo`. The latest result, for the latest days, is what
the conditions read.
"""

import dagster as dg

from fti_assets.lib.features.pipelines import online_offline_mismatches
from fti_assets.lib.store.group_spec import FeatureGroupSpec
from fti_assets.lib.store.offline import quote_ident, read_frame, table_exists
from fti_assets.resources import OfflineStoreResource, OnlineStoreResource
from fti_assets.specs.feature_groups import FEATURE_GROUPS


def _contract_check(spec: FeatureGroupSpec) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=dg.AssetKey(spec.name),
        name=f"{spec.name}_contract",
        blocking=True,
        description=(
            f"Pandera contract of feature group {spec.name} v{spec.version}: column types, "
            "ranges, non-null keys and event_time, unique (entity key, event_time)."
            + (" Checks the days of the run." if spec.partition_column else "")
        ),
    )
    def _check(
        context: dg.AssetCheckExecutionContext, offline_store: OfflineStoreResource
    ) -> dg.AssetCheckResult:
        from fti_assets.lib.ingest.quality import validate_feature_group  # pandera: lazily

        sql, params = f"select * from {quote_ident(spec.table)}", []
        run_has_days = context.has_partition_key or context.has_partition_key_range
        if spec.partition_column and run_has_days:
            # A daily run checks its own days, not every row ever written.
            window = context.partition_time_window
            column = quote_ident(spec.partition_column)
            sql += f" where {column} >= ? and {column} < ?"
            params = [window.start, window.end]
            partition_is_date = spec.partition_column != spec.event_time and (
                spec.feature(spec.partition_column).dtype == "date"
            )
            if partition_is_date:
                params = [window.start.date(), window.end.date()]
        with offline_store.connection(read_only=True) as con:
            if not table_exists(con, spec.table):
                return dg.AssetCheckResult(
                    passed=False, description=f"table {spec.table} does not exist"
                )
            frame = read_frame(con, sql, params)
        report = validate_feature_group(spec, frame)
        return dg.AssetCheckResult(
            passed=report.passed,
            description=report.describe(),
            metadata={"rows": report.rows, "failures": report.failures},
        )

    return _check


feature_contract_checks = [_contract_check(spec) for spec in FEATURE_GROUPS.values()]


def _online_check(spec: FeatureGroupSpec) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=dg.AssetKey(f"online_{spec.name}"),
        name="online_matches_offline",
        description=(
            "For a random sample of entities, the online row equals the newest offline row "
            "(same event_time, same values)."
        ),
    )
    def _check(
        offline_store: OfflineStoreResource, online_store: OnlineStoreResource
    ) -> dg.AssetCheckResult:
        with (
            offline_store.connection(read_only=True) as con,
            online_store.open(readonly=True) as store,
        ):
            compared, problems = online_offline_mismatches(store, con, spec)
        return dg.AssetCheckResult(
            passed=not problems,
            description=f"{compared} entities compared; {len(problems)} mismatches",
            metadata={
                "entities_compared": compared,
                "mismatches": "\n".join(problems[:20]) or "none",
            },
        )

    return _check


online_checks = [_online_check(spec) for spec in FEATURE_GROUPS.values() if spec.online]
