"""Blocking gates on the training pipeline: the leakage canary on every dataset version."""

import dagster as dg

from fti_assets.lib.datasets import DEFAULT_NAME, load_dataset
from fti_assets.lib.leakage import check_leakage
from fti_assets.resources import DataDirResource, OfflineStoreResource


def materialized_metadata(
    context: dg.AssetCheckExecutionContext, asset: str, key: str
) -> str | None:
    """A metadata value of the asset's latest materialization (e.g. the version it wrote)."""
    event = context.instance.get_latest_materialization_event(dg.AssetKey(asset))
    if event is None or event.asset_materialization is None:
        return None
    value = event.asset_materialization.metadata.get(key)
    return None if value is None else str(value.value)


@dg.asset_check(
    asset="fraud_training_dataset",
    blocking=True,
    description=(
        "Leakage canary: every feature row used has event_time strictly before the label time; "
        "no label-derived column among the features; the merchant fraud rate, recomputed from "
        "raw data for a sample of rows, only counts fraud reported before its event_time."
    ),
)
def training_dataset_has_no_leakage(
    context: dg.AssetCheckExecutionContext,
    offline_store: OfflineStoreResource,
    data_dir: DataDirResource,
) -> dg.AssetCheckResult:
    version = materialized_metadata(context, "fraud_training_dataset", "dataset_version")
    frame, manifest = load_dataset(data_dir.layout.datasets_dir, DEFAULT_NAME, version)
    with offline_store.connection() as con:
        report = check_leakage(con, frame, manifest)
    return dg.AssetCheckResult(
        passed=report.passed,
        description="no leakage found" if report.passed else "; ".join(report.findings[:5]),
        metadata={"dataset_version": manifest["version"], **report.to_metadata()},
    )
