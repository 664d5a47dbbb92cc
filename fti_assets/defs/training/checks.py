"""Blocking gates on the training pipeline.

* the leakage canary on every training dataset version;
* the promotion gates on every evaluated candidate model: a metric floor, not worse than the
  champion beyond a tolerance, no slice regression, and a dataset that passed the canary. A
  candidate failing any gate is marked ``rejected`` in the registry and never becomes champion
  (the gates are blocking, so ``fraud_model_champion`` does not run).
"""

import json
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from fti_assets.defs.metadata import latest_metadata
from fti_assets.lib.datasets import DEFAULT_NAME, load_dataset
from fti_assets.lib.leakage import check_leakage
from fti_assets.resources import (
    DataDirResource,
    ModelGatesResource,
    ModelRegistryResource,
    OfflineStoreResource,
)

if TYPE_CHECKING:
    from fti_assets.lib.model_eval import GateResult

MODEL_NAME = "fraud_model"
LEAKAGE_CHECK = dg.AssetCheckKey(
    dg.AssetKey("fraud_training_dataset"), "training_dataset_has_no_leakage"
)
GATES = ("metric_floor", "beats_champion", "no_slice_regression", "dataset_passed_leakage_check")


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
    version = latest_metadata(context.instance, "fraud_training_dataset", "dataset_version")
    frame, manifest = load_dataset(data_dir.layout.datasets_dir, DEFAULT_NAME, version)
    # Recount from the raw tables as they were when the dataset was built.
    with offline_store.connection(snapshot=manifest["lake_snapshot"]) as con:
        report = check_leakage(con, frame, manifest)
    return dg.AssetCheckResult(
        passed=report.passed,
        description="no leakage found" if report.passed else "; ".join(report.findings[:5]),
        metadata={"dataset_version": manifest["version"], **report.to_metadata()},
    )


def _leakage_gate(instance: dg.DagsterInstance, dataset_version: str) -> "GateResult":
    """The dataset the model trained on must have passed the canary (in this run or before)."""
    from fti_assets.lib.model_eval import GateResult

    history = instance.event_log_storage.get_asset_check_execution_history(LEAKAGE_CHECK, limit=50)
    for record in history:
        evaluation = record.event.dagster_event.event_specific_data if record.event else None
        version = getattr(evaluation, "metadata", {}).get("dataset_version")
        if version is not None and version.value == dataset_version:
            return GateResult(
                "dataset_passed_leakage_check",
                bool(evaluation.passed),
                f"leakage canary on dataset {dataset_version}: "
                + ("passed" if evaluation.passed else "FAILED"),
                {"dataset_version": dataset_version},
            )
    return GateResult(
        "dataset_passed_leakage_check",
        False,
        f"no leakage-canary result for dataset {dataset_version}: run its check first",
        {"dataset_version": dataset_version},
    )


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(name, asset="fraud_model_evaluation", blocking=True) for name in GATES
    ],
    description="Promotion gates of fraud_model: all must pass before it becomes champion.",
)
def fraud_model_gates(
    context: dg.AssetCheckExecutionContext,
    model_registry: ModelRegistryResource,
    model_gates: ModelGatesResource,
):
    from fti_assets.lib.model_eval import GateConfig, gate_config_dict, gates

    report_path = latest_metadata(context.instance, "fraud_model_evaluation", "report")
    report = json.loads(Path(report_path).read_text())
    config = GateConfig(
        pr_auc_floor=model_gates.pr_auc_floor,
        champion_tolerance=model_gates.champion_tolerance,
        max_slice_recall_drop=model_gates.max_slice_recall_drop,
        min_slice_positives=model_gates.min_slice_positives,
    )
    results = [*gates(report, config), _leakage_gate(context.instance, report["dataset_version"])]
    failed = [r for r in results if not r.passed]
    if failed:
        model_registry.registry().set_status(
            MODEL_NAME,
            report["model_version"],
            "rejected",
            "; ".join(f"{r.name}: {r.description}" for r in failed),
        )
    for result in results:
        yield dg.AssetCheckResult(
            check_name=result.name,
            asset_key="fraud_model_evaluation",
            passed=result.passed,
            description=result.description,
            metadata={
                "model_version": report["model_version"],
                **{k: v for k, v in result.metadata.items() if v is not None},
                "gate_config": dg.MetadataValue.json(gate_config_dict(config)),
            },
        )
