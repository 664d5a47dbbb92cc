"""A model's retraining job and the sensor that turns a monitoring breach into exactly one run
of it (dataset → model → evaluation → gates → champion)."""

import functools
import json
from datetime import date, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from fti_assets.defs.models.monitoring import (
    DRIFT_SUMMARY_TABLE,
    ESTIMATE_TABLE,
    PERFORMANCE_TABLE,
    PROBABILITY,
)
from fti_assets.lib.monitoring.breach import BreachRules, find_breach, in_cooldown
from fti_assets.lib.registry.model_registry import CHAMPION
from fti_assets.lib.store.offline import OfflineStoreMissingError, read_frame, table_exists
from fti_assets.lib.training.datasets import load_dataset
from fti_assets.resources import DataDirResource, ModelRegistryResource, OfflineStoreResource
from fti_assets.specs.models import ModelSpec

# What dg.define_asset_job returns (Dagster exports no public name for its type).
AssetJob = Any

_EMPTY = {
    DRIFT_SUMMARY_TABLE: {"day": pl.Date, "model_version": pl.Int64, "status": pl.String,
                          "drift_share": pl.Float64},
    ESTIMATE_TABLE: {"day": pl.Date, "model_version": pl.Int64, "expected_pr_auc": pl.Float64},
    PERFORMANCE_TABLE: {"scored_day": pl.Date, "model_version": pl.Int64, "final": pl.Boolean,
                        "pr_auc": pl.Float64},
}  # fmt: skip


def retraining_job(spec: ModelSpec) -> AssetJob:
    return dg.define_asset_job(
        f"{spec.name}_retraining",
        selection=dg.AssetSelection.assets(
            spec.dataset_name, spec.name, f"{spec.name}_evaluation", f"{spec.name}_champion"
        ),
        description=(
            f"Retrain {spec.name}: a new dataset, a new version (the challenger), its evaluation "
            "and blocking gates; it becomes champion only if every gate passes."
        ),
        tags={"fti/model": spec.name},
    )


def _read(con, table: str, model: str, columns: dict) -> pl.DataFrame:
    if not table_exists(con, table):
        return pl.DataFrame(schema=columns)
    return read_frame(
        con, f"select {', '.join(columns)} from {table} where model_name = ?", [model]
    )


def _landed_days(con) -> int:
    if not table_exists(con, "raw_transactions"):
        return 0
    return int(
        con.execute("select count(distinct landing_date) from raw_transactions").fetchone()[0]
    )


@functools.lru_cache(maxsize=32)
def _test_references_cached(folder: str, mtimes: tuple[float, float]) -> tuple[float | None, ...]:
    from fti_assets.lib.monitoring.estimation import estimate_performance

    path = Path(folder)
    test_pr_auc = None
    if mtimes[0]:
        metrics = json.loads((path / "evaluation.json").read_text()).get("metrics") or {}
        test_pr_auc = metrics.get("pr_auc")
    test_expected = None
    if mtimes[1]:
        scores = pl.read_parquet(path / "test_scores.parquet", columns=[PROBABILITY])
        test_expected = estimate_performance(scores[PROBABILITY].to_numpy(), None).expected_pr_auc
    return (None if test_pr_auc is None else float(test_pr_auc)), test_expected


def _test_references(folder: Path) -> tuple[float | None, float | None]:
    """The champion's realized PR-AUC on its test split (its evaluation) and the performance
    estimator's PR-AUC on the same test-split scores (written by its prediction-drift report):
    the like-for-like references of the realized and the estimated rules. None when missing."""

    def mtime(name: str) -> float:
        try:
            return (folder / name).stat().st_mtime
        except FileNotFoundError:
            return 0.0

    test_pr_auc, test_expected = _test_references_cached(
        str(folder), (mtime("evaluation.json"), mtime("test_scores.parquet"))
    )
    return test_pr_auc, test_expected


def retraining_sensor(spec: ModelSpec, job: AssetJob) -> dg.SensorDefinition:
    rules = BreachRules(
        drift_share_threshold=spec.monitoring.drift_share_threshold,
        drift_days=spec.monitoring.drift_days,
        pr_auc_drop=spec.monitoring.pr_auc_drop,
        cooldown_days=spec.monitoring.cooldown_days,
    )
    # Warm-up, the label window and its maturity, and a week of examples to split.
    first_training_days = (
        spec.dataset.warmup_days + spec.dataset.label_maturity_days + spec.label.horizon.days + 7
    )

    @dg.sensor(
        name=f"{spec.name}_retraining_sensor",
        job=job,
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Retrains {spec.name} when monitoring breaches its rules: feature drift on "
            f"{rules.drift_days} consecutive days (share ≥ {rules.drift_share_threshold:.0%}), "
            f"or estimated or matured PR-AUC (mean of {rules.drift_days} days) below "
            f"{1 - rules.pr_auc_drop:.0%} of the champion's own figure on its test split "
            "(realized, or estimated the same way); only days after "
            "the champion's training data count. Exactly one run per breach (run key), none "
            f"within {rules.cooldown_days} data days of the last request (cursor). Also trains "
            f"the first version once {first_training_days} days landed."
        ),
    )
    def _sensor(
        context: dg.SensorEvaluationContext,
        offline_store: OfflineStoreResource,
        model_registry: ModelRegistryResource,
        data_dir: DataDirResource,
    ) -> dg.SensorResult | dg.SkipReason:
        cursor = json.loads(context.cursor) if context.cursor else {}
        champion = model_registry.registry().resolve(spec.name, CHAMPION)
        try:
            with offline_store.connection(read_only=True) as con:
                if champion is None:
                    return _first_training(spec, _landed_days(con), first_training_days, cursor)
                frames = {t: _read(con, t, spec.name, c) for t, c in _EMPTY.items()}
        except OfflineStoreMissingError:
            return dg.SkipReason("the offline store does not exist yet")
        reference = champion.metrics.get("valid_pr_auc")
        if reference is None:
            return dg.SkipReason(f"champion v{champion.version} records no validation PR-AUC")
        _, manifest = load_dataset(
            data_dir.layout.datasets_dir, spec.dataset_name, champion.training_dataset_version,
            verify=False,
        )  # fmt: skip
        since = datetime.fromisoformat(manifest["label"]["cutoff"]).date()
        test_pr_auc, test_expected_pr_auc = _test_references(
            data_dir.layout.reports_dir / spec.name / f"v{champion.version}"
        )
        breach = find_breach(
            model=spec.name,
            champion_version=champion.version,
            reference_pr_auc=float(reference),
            test_pr_auc=test_pr_auc,
            test_expected_pr_auc=test_expected_pr_auc,
            since=since,
            drift=frames[DRIFT_SUMMARY_TABLE],
            estimates=frames[ESTIMATE_TABLE],
            performance=frames[PERFORMANCE_TABLE],
            rules=rules,
        )
        if breach is None:
            return dg.SkipReason(f"no breach for champion v{champion.version} since {since}")
        if breach.key in cursor.get("requested", []):
            return dg.SkipReason(f"breach {breach.key} was already turned into a run")
        last = cursor.get("last_request_day")
        # The cooldown counts from the newest day monitored when the request is made, and
        # ends on the newest day monitored now.
        newest = frames[DRIFT_SUMMARY_TABLE]["day"].max() or breach.day
        if in_cooldown(breach, date.fromisoformat(last) if last else None, rules, newest):
            return dg.SkipReason(
                f"{breach.kind} breach {breach.key} (detected {breach.day}) within the "
                f"{rules.cooldown_days}-day cooldown of the request on {last}; newest monitored "
                f"day {newest}"
            )
        cursor = {
            "last_request_day": max(newest, breach.day).isoformat(),
            "requested": [*cursor.get("requested", [])[-50:], breach.key],
        }
        context.log.info(f"breach {breach.key}: {breach.detail}")
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    run_key=breach.key,
                    tags={
                        "fti/breach": breach.key,
                        "fti/breach_kind": breach.kind,
                        "fti/breach_day": breach.day.isoformat(),
                        "fti/breach_detail": breach.detail[:200],
                        "fti/champion_version": str(champion.version),
                    },
                )
            ],
            cursor=json.dumps(cursor),
        )

    return _sensor


def _first_training(
    spec: ModelSpec, landed: int, needed: int, cursor: dict
) -> dg.SensorResult | dg.SkipReason:
    if landed < needed:
        return dg.SkipReason(
            f"no champion yet; {landed} of the {needed} landed days the first training needs"
        )
    # One attempt per week of landed data while there is no champion (a first version that
    # failed its gates, or its run, is tried again with more data, not on every tick).
    key = f"{spec.name}:first_version:{(landed - needed) // 7}"
    if key in cursor.get("requested", []):
        return dg.SkipReason(f"the first training of {spec.name} was requested already ({key})")
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=key, tags={"fti/breach_kind": "no_champion"})],
        cursor=json.dumps({**cursor, "requested": [*cursor.get("requested", []), key]}),
    )
