"""A model's training pipeline, built from its spec: a point-in-time-correct dataset (with the
blocking leakage canary), the model, its evaluation (with the blocking promotion gates) and the
``champion`` alias.

Versions pass from one step to the next WITHIN a run, never through "the latest
materialization" of another asset: the dataset's manifest records the run that built it, the
registry records the run that registered a model (its idempotency key), the evaluation report
records the run that evaluated it. A step run on its own (materialized alone in the UI) takes
the newest dataset version, or the ``challenger`` alias, and says so in its metadata.

The registry's status is the truth: the gates set ``validated`` or ``rejected``, and the
champion step promotes only a ``validated`` version — it never writes a status, so no order of
materializations can make a rejected version champion.
"""

import json
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from fti_assets.defs.metadata import markdown_table
from fti_assets.lib.registry.model_registry import (
    CHAMPION,
    REJECTED,
    VALIDATED,
    ModelRegistry,
    ModelVersion,
)
from fti_assets.lib.store.offline import current_snapshot
from fti_assets.lib.training.datasets import (
    DatasetConfig,
    build_training_frame,
    dataset_of_run,
    list_datasets,
    load_dataset,
    write_dataset,
)
from fti_assets.lib.training.gates import GateConfig, GateResult
from fti_assets.lib.training.leakage import check_leakage
from fti_assets.lib.training.params import TrainParams
from fti_assets.resources import (
    DataDirResource,
    ModelGatesResource,
    ModelRegistryResource,
    OfflineStoreResource,
)
from fti_assets.specs.feature_views import resolved
from fti_assets.specs.models import ModelSpec

CHALLENGER = "challenger"
GATES = ("metric_floor", "beats_champion", "no_slice_regression", "dataset_passed_leakage_check")
LEAKAGE_CHECK = "training_dataset_has_no_leakage"


def _train_config_class(spec: ModelSpec) -> type[dg.Config]:
    defaults = spec.params

    class TrainConfig(dg.Config):
        """LightGBM hyperparameters (deterministic: fixed seeds and one thread); the defaults
        are the model spec's."""

        dataset_version: str | None = None  # default: this run's dataset, else the newest
        num_leaves: int = defaults.num_leaves
        learning_rate: float = defaults.learning_rate
        n_estimators: int = defaults.n_estimators
        min_child_samples: int = defaults.min_child_samples
        feature_fraction: float = defaults.feature_fraction
        bagging_fraction: float = defaults.bagging_fraction
        lambda_l2: float = defaults.lambda_l2
        early_stopping_rounds: int = defaults.early_stopping_rounds or 0  # 0 = no stopping
        seed: int = defaults.seed
        class_weight: str = defaults.class_weight

    TrainConfig.__name__ = f"{spec.name}_train_config"
    return TrainConfig


def train_params(config: dg.Config) -> TrainParams:
    fields = config.model_dump(exclude={"dataset_version"})
    fields["early_stopping_rounds"] = fields["early_stopping_rounds"] or None  # 0 = no stopping
    return TrainParams(**fields)


def _dataset_config_class(spec: ModelSpec) -> type[dg.Config]:
    defaults = spec.dataset

    class TrainingDatasetConfig(dg.Config):
        """How labels are chosen and split (time-based, never random)."""

        label_maturity_days: int = defaults.label_maturity_days
        warmup_days: int = defaults.warmup_days
        valid_fraction: float = defaults.valid_fraction
        test_fraction: float = defaults.test_fraction
        cutoff: str | None = None  # ISO time with offset; default: end of the last landed day

    TrainingDatasetConfig.__name__ = f"{spec.name}_dataset_config"
    return TrainingDatasetConfig


def gate_config(spec: ModelSpec, overrides: ModelGatesResource) -> GateConfig:
    """The spec's gates, with any threshold the ``model_gates`` resource sets."""
    values = {k: v for k, v in overrides.model_dump().items() if v is not None}
    return GateConfig(**{**spec.gates.__dict__, **values})


def model_of_run(registry: ModelRegistry, spec: ModelSpec, run_id: str) -> ModelVersion | None:
    return registry.find_by_key(spec.name, run_id)


def _candidate(registry: ModelRegistry, spec: ModelSpec, run_id: str) -> tuple[ModelVersion, str]:
    """The version this run registered, else the ``challenger`` alias (a step run alone)."""
    version = model_of_run(registry, spec, run_id)
    if version is not None:
        return version, "registered in this run"
    version = registry.resolve(spec.name, CHALLENGER)
    if version is None:
        raise dg.Failure(
            f"model {spec.name!r} has no version registered in this run and no "
            f"{CHALLENGER!r} alias: materialize {spec.name} first"
        )
    return version, f"the {CHALLENGER} alias (no version registered in this run)"


def evaluation_path(reports_dir: Path, spec: ModelSpec, version: int) -> Path:
    return reports_dir / spec.name / f"v{version}" / "evaluation.json"


def build_training_assets(spec: ModelSpec) -> list[Any]:
    """The dataset, model, evaluation and champion assets of ``spec`` with their checks."""
    dataset_key = dg.AssetKey(spec.dataset_name)
    model_key = dg.AssetKey(spec.name)
    evaluation_key = dg.AssetKey(f"{spec.name}_evaluation")
    champion_key = dg.AssetKey(f"{spec.name}_champion")
    owners = list(spec.owners)
    dataset_config_class = _dataset_config_class(spec)
    train_config_class = _train_config_class(spec)

    @dg.asset(
        key=dataset_key,
        group_name="training",
        kinds={"ducklake", "polars", "parquet"},
        owners=owners,
        deps=[*spec.feature_groups, *spec.label_sources],
        description=(
            f"Immutable, versioned training dataset of {spec.name}: every mature example with "
            "its label as known at the cutoff, joined point-in-time (ASOF, strictly earlier "
            "event_time) with the feature groups, plus on-demand features; time-based "
            "train/valid/test split; Parquet + JSON manifest (sources, lake snapshot, split "
            "boundaries, hashes, reference statistics)."
        ),
    )
    def _dataset(
        context: dg.AssetExecutionContext,
        config: dataset_config_class,  # type: ignore[valid-type]
        offline_store: OfflineStoreResource,
        data_dir: DataDirResource,
    ) -> dg.MaterializeResult:
        dataset_config = DatasetConfig(
            name=spec.dataset_name,
            cutoff=datetime.fromisoformat(config.cutoff) if config.cutoff else None,
            label_maturity_days=config.label_maturity_days,
            warmup_days=config.warmup_days,
            valid_fraction=config.valid_fraction,
            test_fraction=config.test_fraction,
        )
        view = resolved(spec.feature_view)
        # Every table is read at ONE lake snapshot, recorded in the manifest: the dataset can
        # be rebuilt from exactly these rows later, whatever backfills change in between.
        with offline_store.connection(read_only=True) as con:
            snapshot = current_snapshot(con)
        with offline_store.connection(snapshot=snapshot) as con:
            frame, info = build_training_frame(con, view, spec.label, dataset_config)
        feature_columns, categorical = view.input_columns()
        version = write_dataset(
            frame,
            info,
            data_dir.layout.datasets_dir,
            feature_columns=feature_columns,
            categorical_columns=categorical,
            label=spec.label.column,
            run_id=context.run_id,
        )
        manifest = version.manifest
        context.log.info(f"wrote {version.name} {version.version} to {version.path}")
        return dg.MaterializeResult(
            metadata={
                "dataset_version": version.version,
                "path": dg.MetadataValue.path(str(version.path)),
                "dagster/row_count": manifest["rows"]["total"],
                "rows_per_split": markdown_table(
                    [
                        {
                            "split": s,
                            "rows": manifest["rows"][s],
                            "positives": manifest["positives"][s],
                        }
                        for s in ("train", "valid", "test")
                    ]
                ),
                "split_boundaries": markdown_table(
                    [{"boundary": k, "time": v} for k, v in manifest["split"]["boundaries"].items()]
                ),
                "label_cutoff": manifest["label"]["cutoff"],
                "feature_groups": markdown_table(
                    [
                        {
                            "group": name,
                            "version": g["version"],
                            "keys": ", ".join(g["entity_keys"]),
                        }
                        for name, g in manifest["feature_groups"].items()
                    ]
                ),
                "content_hash": manifest["content_hash"]["frame_sha256"],
                "feature_count": len(feature_columns),
                "feature_view": spec.feature_view.key,
                "feature_view_fingerprint": spec.feature_view.fingerprint()[:12],
                "label_rule": spec.label.rule,
                "lake_snapshot": snapshot,
            }
        )

    @dg.asset_check(
        asset=dataset_key,
        name=LEAKAGE_CHECK,
        blocking=True,
        description=(
            "Leakage canary: every feature row used has event_time strictly before the "
            "prediction time; no label-derived column among the features (the spec's rules); "
            "each allow-listed label-derived feature, recounted from raw data at the dataset's "
            "lake snapshot for a sample of rows, only counts labels reported before its "
            "event_time."
        ),
    )
    def _leakage(
        context: dg.AssetCheckExecutionContext,
        offline_store: OfflineStoreResource,
        data_dir: DataDirResource,
    ) -> dg.AssetCheckResult:
        datasets_dir = data_dir.layout.datasets_dir
        built = dataset_of_run(datasets_dir, spec.dataset_name, context.run.run_id)
        version = built.version if built is not None else None  # alone: the newest version
        frame, manifest = load_dataset(datasets_dir, spec.dataset_name, version)
        with offline_store.connection(snapshot=manifest["lake_snapshot"]) as con:
            report = check_leakage(con, frame, manifest, spec.leakage)
        return dg.AssetCheckResult(
            passed=report.passed,
            description="no leakage found" if report.passed else "; ".join(report.findings[:5]),
            metadata={"dataset_version": manifest["version"], **report.to_metadata()},
        )

    @dg.asset(
        key=model_key,
        group_name="training",
        kinds={"lightgbm"},
        owners=owners,
        deps=[dataset_key],
        description=(
            f"{spec.description} LightGBM classifier trained on one dataset version, with its "
            "model-dependent transforms (feature order, category codes) saved beside it; "
            f"registered as a candidate and aliased {CHALLENGER!r}."
        ),
    )
    def _model(
        context: dg.AssetExecutionContext,
        config: train_config_class,  # type: ignore[valid-type]
        data_dir: DataDirResource,
        model_registry: ModelRegistryResource,
    ) -> dg.MaterializeResult:
        from fti_assets.lib.training.train import train_from_dataset  # lightgbm: only when training

        datasets_dir = data_dir.layout.datasets_dir
        if config.dataset_version:
            version, source = config.dataset_version, "run config"
        else:
            built = dataset_of_run(datasets_dir, spec.dataset_name, context.run_id)
            if built is not None:
                version, source = built.version, "built in this run"
            else:
                versions = list_datasets(datasets_dir, spec.dataset_name)
                if not versions:
                    raise dg.Failure(
                        f"no version of {spec.dataset_name} exists: materialize it first"
                    )
                version, source = versions[-1].version, "the newest version (none in this run)"
        frame, manifest = load_dataset(datasets_dir, spec.dataset_name, version)
        params = train_params(config)
        registry = model_registry.registry()
        with tempfile.TemporaryDirectory() as tmp:
            result = train_from_dataset(frame, manifest, params, Path(tmp) / "artifact")
            registered = registry.register(
                spec.name,
                result.artifact_dir,
                training_dataset_version=manifest["version"],
                feature_group_versions={
                    name: int(g["version"]) for name, g in manifest["feature_groups"].items()
                },
                params=result.params,
                metrics={f"valid_{k}": v for k, v in result.metrics.items()},
                tags={
                    "dataset_frame_sha256": manifest["content_hash"]["frame_sha256"],
                    "dagster_run_id": context.run_id,
                },
                idempotency_key=context.run_id,
                feature_view=manifest["feature_view"],
            )
        registry.promote(spec.name, registered.version, alias=CHALLENGER, reason="trained")
        valid = result.metrics
        return dg.MaterializeResult(
            metadata={
                "model_name": spec.name,
                "model_version": registered.version,
                "model_sha256": registered.sha256,
                "dataset_version": manifest["version"],
                "dataset_source": source,
                "feature_view": registered.feature_view,
                "feature_group_versions": markdown_table(
                    [
                        {"group": k, "version": v}
                        for k, v in registered.feature_group_versions.items()
                    ]
                ),
                "code_version": registered.code_version,
                "best_iteration": result.best_iteration,
                "valid_pr_auc": valid["pr_auc"],
                "valid_roc_auc": valid["roc_auc"],
                "valid_brier": valid["brier"],
                "train_rows": result.n_train,
                "valid_rows": result.n_valid,
                "features": len(result.feature_names),
                "artifact": dg.MetadataValue.path(str(registered.artifact_path)),
                "params": dg.MetadataValue.json(params.to_dict()),
            }
        )

    @dg.asset(
        key=evaluation_key,
        group_name="training",
        kinds={"lightgbm", "matplotlib"},
        owners=owners,
        deps=[model_key],
        description=(
            f"Test-split evaluation of the {spec.name} candidate of this run (or the "
            f"{CHALLENGER} alias): PR-AUC, ROC-AUC, recall at 90% precision, Brier and "
            "calibration, per-slice metrics, the current champion on the same rows, and the "
            "oracle's PR-AUC (the Bayes limit); PR curve and calibration plots linked."
        ),
    )
    def _evaluation(
        context: dg.AssetExecutionContext,
        data_dir: DataDirResource,
        model_registry: ModelRegistryResource,
        offline_store: OfflineStoreResource,
    ) -> dg.MaterializeResult:
        from fti_assets.lib.training.gates import evaluate_candidate  # sklearn, matplotlib: lazily

        registry = model_registry.registry()
        candidate_meta, source = _candidate(registry, spec, context.run_id)
        version = candidate_meta.version
        candidate = registry.load(spec.name, version)
        frame, _ = load_dataset(
            data_dir.layout.datasets_dir, spec.dataset_name, candidate_meta.training_dataset_version
        )
        champion_meta = registry.resolve(spec.name, CHAMPION)
        champion = None
        if champion_meta is not None and champion_meta.version != version:
            champion = registry.load(spec.name, champion_meta.version)
        test = frame.filter(pl.col("split") == "test")
        with offline_store.connection(read_only=True) as con:
            oracle = spec.oracle(con, data_dir.layout.data_dir, test)
        report_path = evaluation_path(data_dir.layout.reports_dir, spec, version)
        report = evaluate_candidate(
            candidate,
            test,
            label=spec.label.column,
            slice_columns=spec.slice_columns,
            champion=champion,
            champion_version=champion_meta.version if champion is not None else None,
            oracle=oracle,
            plots_dir=report_path.parent,
        )
        report["model_version"] = version
        report["dataset_version"] = candidate_meta.training_dataset_version
        report["run_id"] = context.run_id
        report_path.write_text(json.dumps(report, indent=2, default=str))
        metrics = report["metrics"]
        oracle_info = report.get("oracle") or {}
        champion_info = report.get("champion") or {}
        return dg.MaterializeResult(
            metadata={
                "model_version": version,
                "candidate_source": source,
                "feature_view": candidate_meta.feature_view,
                "report": dg.MetadataValue.path(str(report_path)),
                "test_pr_auc": metrics["pr_auc"],
                "test_roc_auc": metrics["roc_auc"],
                "test_recall_at_precision_90": metrics["recall_at_precision"],
                "test_brier": metrics["brier"],
                "oracle_pr_auc": oracle_info.get("pr_auc"),
                "model_to_oracle_pr_auc": oracle_info.get("model_to_oracle_pr_auc"),
                "champion_version": champion_info.get("version"),
                "champion_pr_auc": (champion_info.get("metrics") or {}).get("pr_auc"),
                "slices": markdown_table(
                    [
                        {
                            "slice": f"{s['slice_column']}={s['slice_value']}",
                            "n": s["n"],
                            "positives": s["positives"],
                            "pr_auc": _fmt(s["pr_auc"]),
                            "recall": _fmt(s["recall"]),
                        }
                        for s in report["slices"]
                    ],
                    limit=40,
                ),
                "pr_curve": dg.MetadataValue.md(f"![PR curve]({report['plots']['pr_curve']})"),
                "pr_curve_path": dg.MetadataValue.path(report["plots"]["pr_curve"]),
                "calibration_path": dg.MetadataValue.path(report["plots"]["calibration"]),
            }
        )

    leakage_key = dg.AssetCheckKey(dataset_key, LEAKAGE_CHECK)

    def _leakage_gate(instance: dg.DagsterInstance, dataset_version: str) -> GateResult:
        """The dataset the model trained on must have passed the canary (in this run or an
        earlier one): its check results are found by the dataset version they name."""
        history = instance.event_log_storage.get_asset_check_execution_history(
            leakage_key, limit=50
        )
        for record in history:
            evaluation = record.event.dagster_event.event_specific_data if record.event else None
            found = getattr(evaluation, "metadata", {}).get("dataset_version")
            if found is not None and found.value == dataset_version:
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
        specs=[dg.AssetCheckSpec(name, asset=evaluation_key, blocking=True) for name in GATES],
        name=f"{spec.name}_gates",
        description=(
            f"Promotion gates of {spec.name}: all must pass before a version can become "
            "champion. The result is written to the registry: validated or rejected."
        ),
    )
    def _gates(
        context: dg.AssetCheckExecutionContext,
        data_dir: DataDirResource,
        model_registry: ModelRegistryResource,
        model_gates: ModelGatesResource,
    ):
        from fti_assets.lib.training.gates import gate_config_dict, gates

        registry = model_registry.registry()
        candidate, _ = _candidate(registry, spec, context.run.run_id)
        report_path = evaluation_path(data_dir.layout.reports_dir, spec, candidate.version)
        if not report_path.exists():
            raise dg.Failure(
                f"{spec.name} v{candidate.version} has no evaluation report at {report_path}: "
                f"materialize {evaluation_key.to_user_string()} first"
            )
        report = json.loads(report_path.read_text())
        config = gate_config(spec, model_gates)
        results = [
            *gates(report, config),
            _leakage_gate(context.instance, report["dataset_version"]),
        ]
        failed = [r for r in results if not r.passed]
        if failed:
            if candidate.status != REJECTED:
                registry.set_status(
                    spec.name,
                    candidate.version,
                    REJECTED,
                    "; ".join(f"{r.name}: {r.description}" for r in failed),
                )
        elif candidate.status != VALIDATED:
            registry.set_status(spec.name, candidate.version, VALIDATED, "passed every gate")
        for result in results:
            yield dg.AssetCheckResult(
                check_name=result.name,
                asset_key=evaluation_key,
                passed=result.passed,
                description=result.description,
                metadata={
                    "model_version": candidate.version,
                    **{k: v for k, v in result.metadata.items() if v is not None},
                    "gate_config": dg.MetadataValue.json(gate_config_dict(config)),
                },
            )

    @dg.asset(
        key=champion_key,
        group_name="training",
        kinds={"lightgbm"},
        owners=owners,
        deps=[evaluation_key],
        description=(
            f"The registry alias {CHAMPION!r} of {spec.name}: moved to the candidate of this "
            f"run (or the {CHALLENGER} alias) only when the registry says it is validated — "
            "every blocking gate passed. A rejected or unchecked version is never promoted."
            + ("" if spec.auto_promote else " Auto-promotion is off: a person promotes.")
        ),
    )
    def _champion(
        context: dg.AssetExecutionContext, model_registry: ModelRegistryResource
    ) -> dg.MaterializeResult:
        registry = model_registry.registry()
        candidate, source = _candidate(registry, spec, context.run_id)
        previous = registry.resolve(spec.name, CHAMPION)
        if candidate.status != VALIDATED:
            raise dg.Failure(
                f"{spec.name} v{candidate.version} ({source}) is {candidate.status!r}, not "
                f"validated ({candidate.status_reason or 'its gates have not run'}): it cannot "
                "become champion"
            )
        if previous is not None and previous.version == candidate.version:
            changed = f"v{candidate.version} already champion"
        elif not spec.auto_promote:
            changed = (
                f"auto-promotion is off: v{candidate.version} is validated; promote it with "
                f"`fti models promote {spec.name} {candidate.version}`"
            )
        else:
            registry.promote(
                spec.name, candidate.version, alias=CHAMPION, reason=f"gates passed ({source})"
            )
            changed = f"v{previous.version if previous else '—'} → v{candidate.version}"
        context.log.info(f"champion of {spec.name}: {changed}")
        current = registry.resolve(spec.name, CHAMPION)
        return dg.MaterializeResult(
            metadata={
                "model_name": spec.name,
                "candidate_version": candidate.version,
                "champion_version": current.version if current else None,
                "previous_champion_version": previous.version if previous else None,
                "alias_change": changed,
            }
        )

    return [_dataset, _leakage, _model, _evaluation, _gates, _champion]


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"
