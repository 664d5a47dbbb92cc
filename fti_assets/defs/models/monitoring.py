"""A model's daily monitoring, built from its spec (group ``monitoring``).

* ``<model>_feature_drift_report`` — every model input of the day's scored rows against the
  training split of the dataset the scoring version was trained on: per column the test
  Evidently's DataDriftPreset would pick, computed on all rows (fti_assets.lib.monitoring.drift),
  plus PSI; and an Evidently report on a bounded sample, saved as HTML and linked.
* ``<model>_prediction_drift_report`` — the day's score distribution against the scoring
  version's scores on its own test split.
* ``<model>_estimated_performance`` — PR-AUC and precision/recall at the operating threshold
  expected from the calibrated probabilities, before any label arrives.
* ``<model>_performance_report`` — for the scored days whose labels may still arrive (the
  maturity window), the figures on the labels known at the end of the report day: coverage,
  provisional figures, the final one for the day whose window just closed (with the estimate
  beside it and its error), per slice, against the version's test figures.
* ``<model>_training_serving_skew`` — (online models) the logged online feature vectors against
  the same features recomputed offline, point in time, at each request's time.

Every report also lands in a table of the offline store (one partition = one model and day,
replaced atomically), which the retraining sensor and `fti sql` read.
"""

import json
import math
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import polars as pl

from fti_assets.defs.automation import daily_condition
from fti_assets.defs.metadata import markdown_table
from fti_assets.lib.registry.model_registry import ModelRegistry, ModelVersion
from fti_assets.lib.store.offline import Replacement, read_frame, replace_partitions, table_exists
from fti_assets.lib.training.datasets import load_dataset
from fti_assets.partitions import DAILY_TAGS, daily_partitions, log_partitions, single_run
from fti_assets.resources import (
    DataDirResource,
    ModelRegistryResource,
    OfflineStoreResource,
)
from fti_assets.specs.feature_views import view_of_model
from fti_assets.specs.models import ModelSpec

DRIFT_TABLE = "monitoring_feature_drift"
DRIFT_SUMMARY_TABLE = "monitoring_drift_summary"
PREDICTION_DRIFT_TABLE = "monitoring_prediction_drift"
ESTIMATE_TABLE = "monitoring_estimated_performance"
PERFORMANCE_TABLE = "monitoring_performance"
SKEW_TABLE = "monitoring_training_serving_skew"
PROBABILITY = "probability"

_S, _I, _F, _B, _D = pl.String(), pl.Int64(), pl.Float64(), pl.Boolean(), pl.Date()
_KEY = {"model_name": _S, "day": _D, "model_version": _I, "status": _S}
SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    DRIFT_SUMMARY_TABLE: _KEY
    | {"rows": _I, "tested_columns": _I, "drifted_columns": _S, "drift_share": _F,
       "dataset_drift": _B, "evidently_html": _S},
    PREDICTION_DRIFT_TABLE: _KEY
    | {"rows": _I, "mean_probability": _F, "reference_mean_probability": _F, "test": _S,
       "score": _F, "threshold": _F, "psi": _F, "drifted": _B},
    ESTIMATE_TABLE: _KEY
    | {"rows": _I, "threshold": _F, "flagged": _I, "expected_positives": _F,
       "expected_precision": _F, "expected_recall": _F, "expected_pr_auc": _F, "pr_auc_low": _F,
       "pr_auc_high": _F, "expected_brier": _F},
    PERFORMANCE_TABLE: {"model_name": _S, "report_day": _D, "scored_day": _D,
                        "model_version": _I, "status": _S, "final": _B, "rows": _I,
                        "labels_arrived": _I, "label_coverage": _F, "pr_auc": _F,
                        "recall_at_precision": _F, "brier": _F, "precision_at_threshold": _F,
                        "recall_at_threshold": _F, "test_pr_auc": _F, "estimated_pr_auc": _F,
                        "pr_auc_estimate_error": _F},
}  # fmt: skip


def _rows(table: str, rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Rows of a monitoring table with its fixed schema (a None never decides a type)."""
    schema = SCHEMAS[table]
    return pl.DataFrame([{k: r.get(k) for k in schema} for r in rows], schema=schema)


def days_of(context: dg.AssetExecutionContext) -> list[date]:
    window = context.partition_time_window
    day, days = window.start.date(), []
    while day < window.end.date():
        days.append(day)
        day += timedelta(days=1)
    return days


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


class _WindowWriter:
    """Collects a run's rows per monitoring table and replaces the run's days of each table
    in ONE commit at the end: a reader sees all of a backfill's days or none of them."""

    def __init__(self, model: str, days: list[date]) -> None:
        self.model, self.first, self.last = model, days[0], days[-1]
        self.frames: dict[tuple[str, str], list[pl.DataFrame]] = {}

    def add(self, table: str, day_column: str, frame: pl.DataFrame) -> None:
        self.frames.setdefault((table, day_column), []).append(frame)

    def commit(self, con) -> int:
        replacements = []
        for (table, day_column), frames in self.frames.items():
            frame = pl.concat(frames, how="diagonal_relaxed")
            replacements.append(
                Replacement(
                    table,
                    frame,
                    f"model_name = ? and {day_column} >= ? and {day_column} <= ?",
                    [self.model, self.first, self.last],
                    create_if_missing=not frame.is_empty(),
                )
            )
        return replace_partitions(
            con, replacements, message=f"monitoring {self.model} {self.first}..{self.last}"
        )


class _Versions:
    """Per-run cache of what a model version needs for monitoring: its training reference,
    column kinds, test-split scores and operating threshold."""

    def __init__(self, spec: ModelSpec, registry: ModelRegistry, data_dir: DataDirResource):
        self.spec, self.registry, self.data_dir = spec, registry, data_dir
        self._cache: dict[int, dict[str, Any]] = {}

    def get(self, version: int) -> dict[str, Any]:
        if version not in self._cache:
            meta = self.registry.get(self.spec.name, version)
            frame, manifest = load_dataset(
                self.data_dir.layout.datasets_dir,
                self.spec.dataset_name,
                meta.training_dataset_version,
            )
            features = list(manifest["feature_columns"])
            kinds = {c: "numeric" for c in manifest["numeric_columns"]} | {
                c: "categorical" for c in manifest["categorical_columns"]
            }
            test = frame.filter(pl.col(manifest["split_column"]) == "test")
            self._cache[version] = {
                "meta": meta,
                "reference": frame.filter(pl.col(manifest["split_column"]) == "train").select(
                    features
                ),
                "kinds": {c: kinds[c] for c in features},
                "test": test,
                "label": manifest["label_column"],
                "evaluation": self._evaluation(meta),
            }
        return self._cache[version]

    def _evaluation(self, meta: ModelVersion) -> dict[str, Any]:
        path = self.data_dir.layout.reports_dir / self.spec.name / f"v{meta.version}"
        report = path / "evaluation.json"
        return json.loads(report.read_text()) if report.exists() else {}

    def test_scores(self, version: int) -> pl.DataFrame:
        entry = self.get(version)
        if "test_scores" not in entry:
            path = (
                self.data_dir.layout.reports_dir
                / self.spec.name
                / f"v{version}"
                / "test_scores.parquet"
            )
            if path.exists():
                scores = pl.read_parquet(path)
            else:
                predictor = self.registry.load(self.spec.name, version)
                scores = pl.DataFrame(
                    {
                        PROBABILITY: predictor.predict(entry["test"]),
                        "label": entry["test"].get_column(entry["label"]).cast(pl.Int8),
                    }
                )
                path.parent.mkdir(parents=True, exist_ok=True)
                scores.write_parquet(path)
            entry["test_scores"] = scores
        return entry["test_scores"]

    def operating_threshold(self, version: int) -> float | None:
        """The threshold reaching the target precision on the version's test split (its
        evaluation), else on its validation split (the registry's metrics)."""
        entry = self.get(version)
        value = (entry["evaluation"].get("metrics") or {}).get("threshold_at_precision")
        if value is None:
            value = entry["meta"].metrics.get("valid_threshold_at_precision")
        return None if value is None else float(value)

    def test_figures(self, version: int) -> dict[str, float | None]:
        return dict(self.get(version)["evaluation"].get("metrics") or {})


# Days of scored rows read per query when monitoring a window (a backfill reads its days in a
# few queries rather than one per day).
SCORED_DAYS_PER_READ = 7


def _latest_version(rows: pl.DataFrame) -> int | None:
    if rows.is_empty():
        return None
    return int(rows.get_column("model_version").max())


def _newest_scores_by_day(
    con, spec: ModelSpec, days: list[date]
) -> Iterator[tuple[date, int | None, pl.DataFrame]]:
    """Each day with its rows scored by the newest version that scored it (a day rescored
    after a promotion holds both versions' rows) and that version; (day, None, empty) for a
    day nobody scored. Read SCORED_DAYS_PER_READ days per query."""
    exists = table_exists(con, spec.predictions_table)
    for i in range(0, len(days), SCORED_DAYS_PER_READ):
        chunk = days[i : i + SCORED_DAYS_PER_READ]
        scored = (
            read_frame(
                con,
                f'select * from "{spec.predictions_table}" where score_day >= ? and score_day <= ?',
                [min(chunk), max(chunk)],
            )
            if exists
            else pl.DataFrame()
        )
        by_day = (
            scored.partition_by("score_day", as_dict=True, maintain_order=True)
            if not scored.is_empty()
            else {}
        )
        for day in chunk:
            rows = by_day.get((day,), scored.clear())
            version = _latest_version(rows)
            if version is None:
                yield day, None, rows
            else:
                yield day, version, rows.filter(pl.col("model_version") == version)


def _report_url(data_dir: DataDirResource, path: Path) -> dg.MetadataValue:
    relative = path.relative_to(data_dir.layout.reports_dir)
    return dg.MetadataValue.url(f"{data_dir.reports_url.rstrip('/')}/{relative.as_posix()}")


def _none_if_nan(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def build_monitoring_assets(spec: ModelSpec) -> list[Any]:
    from fti_assets.lib.monitoring.drift import detect_drift

    predictions = dg.AssetKey(spec.predictions_table)
    owners = list(spec.owners)
    settings = spec.monitoring
    drift_key = dg.AssetKey(f"{spec.name}_feature_drift_report")
    common = {
        "group_name": "monitoring",
        "owners": owners,
        "partitions_def": daily_partitions,
        "backfill_policy": single_run,
        "tags": DAILY_TAGS,
    }

    @dg.asset(
        key=drift_key,
        kinds={"evidently", "polars", "ducklake"},
        deps=[predictions],
        automation_condition=daily_condition(),
        description=(
            f"Feature drift of {spec.name}'s scored rows against its training reference: the "
            "test Evidently's DataDriftPreset picks per column, on every row, plus PSI; and an "
            "Evidently report on a sample (HTML, linked). Table: " + DRIFT_TABLE + "."
        ),
        **common,
    )
    def _feature_drift(
        context: dg.AssetExecutionContext,
        offline_store: OfflineStoreResource,
        model_registry: ModelRegistryResource,
        data_dir: DataDirResource,
    ) -> dg.MaterializeResult:
        from fti_assets.lib.monitoring.evidently_report import evidently_drift_report

        versions = _Versions(spec, model_registry.registry(), data_dir)
        days = days_of(context)
        summaries, last_report = [], None
        writer = _WindowWriter(spec.name, days_of(context))
        with offline_store.connection() as con:
            for day, version, rows in _newest_scores_by_day(con, spec, days):
                if version is None:
                    summaries.append({"day": day, "status": "no_rows", "model_version": None})
                    continue
                entry = versions.get(version)
                current = rows.select(list(entry["kinds"]))
                result = detect_drift(
                    entry["reference"], current, entry["kinds"],
                    drift_share=settings.drift_share_threshold,
                )  # fmt: skip
                summary = result.summary()
                detail = result.to_polars().with_columns(
                    pl.lit(spec.name).alias("model_name"),
                    pl.lit(day).alias("day"),
                    pl.lit(version, dtype=pl.Int64).alias("model_version"),
                )
                writer.add(DRIFT_TABLE, "day", detail)
                if day == days[-1] and result.status.value == "tested":
                    # The Evidently report: for the newest day of the run (a backfill of many
                    # days would otherwise spend seconds per day on HTML nobody opens).
                    html = data_dir.layout.reports_dir / spec.name / "drift" / f"{day}.html"
                    last_report = evidently_drift_report(
                        entry["reference"], current, entry["kinds"], html,
                        max_rows=settings.sample_rows, drift_share=settings.drift_share_threshold,
                    )  # fmt: skip
                row = {
                    "model_name": spec.name,
                    "day": day,
                    "model_version": version,
                    "status": summary["status"],
                    "rows": summary["current_rows"],
                    "tested_columns": summary["tested_columns"],
                    "drifted_columns": ", ".join(summary["drifted_columns"]),
                    "drift_share": summary["share_of_drifted_columns"],
                    "dataset_drift": summary["dataset_drift"],
                    "evidently_html": str(last_report.html_path)
                    if last_report is not None and day == days[-1]
                    else None,
                }
                writer.add(DRIFT_SUMMARY_TABLE, "day", _rows(DRIFT_SUMMARY_TABLE, [row]))
                summaries.append(row | {"detail": detail})
            writer.commit(con)
        newest = summaries[-1]
        metadata: dict[str, Any] = {
            "days": len(days),
            "model_version": newest.get("model_version"),
            "status": newest.get("status"),
            "drift_share": _none_if_nan(newest.get("drift_share")),
            "dataset_drift": newest.get("dataset_drift"),
            "drifted_columns": newest.get("drifted_columns") or "none",
            "drift_share_threshold": settings.drift_share_threshold,
            "per_day": markdown_table(
                [
                    {
                        "day": s["day"],
                        "status": s["status"],
                        "drift_share": _fmt(s.get("drift_share")),
                        "drifted": s.get("drifted_columns") or "—",
                    }
                    for s in summaries
                ],
                limit=31,
            ),
        }
        if "detail" in newest:
            metadata["columns"] = markdown_table(
                newest["detail"]
                .select("column", "test", "score", "threshold", "psi", "drifted", "status")
                .with_columns(pl.col("score", "psi").round(4))
                .to_dicts(),
                limit=60,
            )
        if last_report is not None:
            metadata["evidently_report"] = _report_url(data_dir, last_report.html_path)
            metadata["evidently_report_path"] = dg.MetadataValue.path(str(last_report.html_path))
            metadata["evidently_disagreements"] = ", ".join(last_report.disagreements) or "none"
        return dg.MaterializeResult(metadata=metadata)

    @dg.asset_check(
        asset=drift_key,
        name="no_dataset_drift",
        description=(
            "The newest day's share of drifted features stays below the drift-share threshold "
            "(warning: the retraining sensor decides what a breach is)."
        ),
    )
    def _drift_check(
        context: dg.AssetCheckExecutionContext, offline_store: OfflineStoreResource
    ) -> dg.AssetCheckResult:
        with offline_store.connection(read_only=True) as con:
            latest = pl.DataFrame()
            if table_exists(con, DRIFT_SUMMARY_TABLE):
                latest = read_frame(
                    con,
                    "select day, drift_share, dataset_drift, drifted_columns "
                    f"from {DRIFT_SUMMARY_TABLE} where model_name = ? and status = 'tested' "
                    "order by day desc limit 1",
                    [spec.name],
                )
        if latest.is_empty():
            return dg.AssetCheckResult(
                passed=True, description="no tested day yet", severity=dg.AssetCheckSeverity.WARN
            )
        row = latest.row(0, named=True)
        return dg.AssetCheckResult(
            passed=not row["dataset_drift"],
            severity=dg.AssetCheckSeverity.WARN,
            description=(
                f"{row['day']}: {row['drift_share']:.0%} of features drifted "
                f"({row['drifted_columns'] or 'none'})"
            ),
            metadata={"day": str(row["day"]), "drift_share": row["drift_share"]},
        )

    @dg.asset(
        key=dg.AssetKey(f"{spec.name}_prediction_drift_report"),
        kinds={"polars", "ducklake"},
        deps=[predictions],
        automation_condition=daily_condition(),
        description=(
            f"Drift of {spec.name}'s score distribution: the day's probabilities against the "
            "scoring version's probabilities on its own test split (the test Evidently would "
            "pick, and PSI). Table: " + PREDICTION_DRIFT_TABLE + "."
        ),
        **common,
    )
    def _prediction_drift(
        context: dg.AssetExecutionContext,
        offline_store: OfflineStoreResource,
        model_registry: ModelRegistryResource,
        data_dir: DataDirResource,
    ) -> dg.MaterializeResult:
        versions = _Versions(spec, model_registry.registry(), data_dir)
        rows_out = []
        writer = _WindowWriter(spec.name, days_of(context))
        with offline_store.connection() as con:
            for day, version, rows in _newest_scores_by_day(con, spec, days_of(context)):
                if version is None:
                    rows_out.append({"day": day, "status": "no_rows"})
                    continue
                reference = versions.test_scores(version).select(PROBABILITY)
                current = rows.select(PROBABILITY)
                column = detect_drift(reference, current, {PROBABILITY: "numeric"}).column(
                    PROBABILITY
                )
                row = {
                    "model_name": spec.name,
                    "day": day,
                    "model_version": version,
                    "status": column.status.value,
                    "rows": current.height,
                    "mean_probability": float(current[PROBABILITY].mean()),
                    "reference_mean_probability": float(reference[PROBABILITY].mean()),
                    "test": column.test.value if column.test else None,
                    "score": column.score,
                    "threshold": column.threshold,
                    "psi": column.psi,
                    "drifted": column.drifted,
                }
                writer.add(PREDICTION_DRIFT_TABLE, "day", _rows(PREDICTION_DRIFT_TABLE, [row]))
                rows_out.append(row)
            writer.commit(con)
        newest = rows_out[-1]
        return dg.MaterializeResult(
            metadata={
                "model_version": newest.get("model_version"),
                "status": newest["status"],
                "test": newest.get("test"),
                "score": _none_if_nan(newest.get("score")),
                "psi": _none_if_nan(newest.get("psi")),
                "drifted": newest.get("drifted"),
                "mean_probability": newest.get("mean_probability"),
                "reference_mean_probability": newest.get("reference_mean_probability"),
                "per_day": markdown_table(
                    [
                        {
                            "day": r["day"],
                            "status": r["status"],
                            "score": _fmt(r.get("score")),
                            "psi": _fmt(r.get("psi")),
                            "drifted": r.get("drifted", "—"),
                        }
                        for r in rows_out
                    ],
                    limit=31,
                ),
            }
        )

    estimate_key = dg.AssetKey(f"{spec.name}_estimated_performance")

    @dg.asset(
        key=estimate_key,
        kinds={"numpy", "ducklake"},
        deps=[predictions],
        automation_condition=daily_condition(),
        description=(
            f"{spec.name}'s performance expected from its calibrated probabilities before any "
            "label arrives (confidence-based estimation, the idea NannyML calls CBPE): expected "
            "PR-AUC with an interval, precision and recall at the operating threshold. Table: "
            + ESTIMATE_TABLE
            + "."
        ),
        **common,
    )
    def _estimated(
        context: dg.AssetExecutionContext,
        offline_store: OfflineStoreResource,
        model_registry: ModelRegistryResource,
        data_dir: DataDirResource,
    ) -> dg.MaterializeResult:
        from fti_assets.lib.monitoring.estimation import estimate_performance

        versions = _Versions(spec, model_registry.registry(), data_dir)
        rows_out = []
        writer = _WindowWriter(spec.name, days_of(context))
        with offline_store.connection() as con:
            for day, version, rows in _newest_scores_by_day(con, spec, days_of(context)):
                if version is None:
                    rows_out.append({"day": day, "status": "no_rows"})
                    continue
                # Without an operating threshold (the test split never reached the target
                # precision) PR-AUC and Brier are still estimated; precision/recall are None.
                threshold = versions.operating_threshold(version)
                probabilities = rows[PROBABILITY]
                estimate = estimate_performance(probabilities.to_numpy(), threshold)
                interval = estimate.pr_auc_interval or (None, None)
                row = {
                    "model_name": spec.name,
                    "day": day,
                    "model_version": version,
                    "status": "estimated",
                    "rows": estimate.rows,
                    "threshold": threshold,
                    "flagged": estimate.flagged,
                    "expected_positives": estimate.expected_positives,
                    "expected_precision": estimate.expected_precision,
                    "expected_recall": estimate.expected_recall,
                    "expected_pr_auc": estimate.expected_pr_auc,
                    "pr_auc_low": interval[0],
                    "pr_auc_high": interval[1],
                    "expected_brier": estimate.expected_brier,
                }
                writer.add(ESTIMATE_TABLE, "day", _rows(ESTIMATE_TABLE, [row]))
                rows_out.append(row)
            writer.commit(con)
        newest = rows_out[-1]
        return dg.MaterializeResult(
            metadata={
                "model_version": newest.get("model_version"),
                "status": newest["status"],
                "expected_pr_auc": newest.get("expected_pr_auc"),
                "pr_auc_interval": f"[{_fmt(newest.get('pr_auc_low'))}, "
                f"{_fmt(newest.get('pr_auc_high'))}]",
                "expected_precision": newest.get("expected_precision"),
                "expected_recall": newest.get("expected_recall"),
                "operating_threshold": newest.get("threshold"),
                "test_pr_auc": (
                    versions.test_figures(newest["model_version"]).get("pr_auc")
                    if newest.get("model_version")
                    else None
                ),
                "per_day": markdown_table(
                    [
                        {
                            "day": r["day"],
                            "expected_pr_auc": _fmt(r.get("expected_pr_auc")),
                            "expected_precision": _fmt(r.get("expected_precision")),
                            "expected_recall": _fmt(r.get("expected_recall")),
                        }
                        for r in rows_out
                    ],
                    limit=31,
                ),
            }
        )

    maturity_days = settings.label_maturity_days

    @dg.asset(
        key=dg.AssetKey(f"{spec.name}_performance_report"),
        kinds={"evidently", "ducklake"},
        # The report day's scored rows and labels: it also reads the earlier scored days of its
        # label window from the lake, not declared as dependencies, so a window reaching back
        # before the first champion (days never scored) does not hold it up.
        deps=[
            predictions,
            *(dg.AssetDep(source) for source in spec.label_sources if source != "raw_transactions"),
        ],
        automation_condition=daily_condition(),
        description=(
            f"{spec.name}'s performance on the labels known at the end of the report day, for "
            f"every scored day of the {maturity_days}-day label window: label coverage, "
            "provisional figures while labels arrive, the final figures of the day whose "
            "window just closed (beside the estimate made before its labels, with its error), "
            "per slice, against the version's test figures; an Evidently classification "
            "report of the final day. Table: " + PERFORMANCE_TABLE + "."
        ),
        **common,
    )
    def _performance(
        context: dg.AssetExecutionContext,
        offline_store: OfflineStoreResource,
        model_registry: ModelRegistryResource,
        data_dir: DataDirResource,
    ) -> dg.MaterializeResult:
        from fti_assets.lib.monitoring.evidently_report import evidently_classification_report
        from fti_assets.lib.monitoring.performance import Columns, matured_performance

        versions = _Versions(spec, model_registry.registry(), data_dir)
        maturity = timedelta(days=maturity_days)
        columns = Columns(
            key="example_id", probability=PROBABILITY, prediction_time="prediction_time",
            label=spec.label.column, reported_at="reported_at",
        )  # fmt: skip
        report_rows, final_report = [], None
        days = days_of(context)
        first_scored = days[0] - timedelta(days=maturity_days)
        writer = _WindowWriter(spec.name, days_of(context))
        with offline_store.connection() as con:
            # One read of every scored row, label and estimate the run's windows cover.
            scored = _scored_between(con, spec, first_scored, days[-1])
            labels = spec.monitoring_labels(
                con, day_bounds(first_scored)[0], day_bounds(days[-1])[1]
            )
            estimates = _estimates(con, spec.name)
            by_day = _split_by_day(scored, labels)
            for report_day in days:
                as_of = day_bounds(report_day)[1]
                rows_today = []
                scored_day = report_day - timedelta(days=maturity_days)
                while scored_day <= report_day:
                    rows, day_labels = by_day.get(scored_day, (None, None))
                    version = None if rows is None else _latest_version(rows)
                    if version is not None:
                        rows = rows.filter(pl.col("model_version") == version)
                        report = matured_performance(
                            rows, day_labels, as_of=as_of, maturity=maturity,
                            operating_threshold=versions.operating_threshold(version),
                            slice_columns=[c for c in settings.slice_columns if c in rows.columns],
                            reference=versions.test_figures(version), columns=columns,
                        )  # fmt: skip
                        summary = report.summary()
                        estimated = estimates.get(scored_day)
                        realized = summary["pr_auc"]
                        rows_today.append(
                            {
                                "model_name": spec.name,
                                "report_day": report_day,
                                "scored_day": scored_day,
                                "model_version": version,
                                **{k: summary[k] for k in _PERFORMANCE_FIGURES},
                                "test_pr_auc": versions.test_figures(version).get("pr_auc"),
                                "estimated_pr_auc": estimated,
                                "pr_auc_estimate_error": None
                                if estimated is None or realized is None
                                else estimated - realized,
                            }
                        )
                        if summary["final"] and report_day == days[-1]:
                            final_report = (scored_day, rows, day_labels, version)
                    scored_day += timedelta(days=1)
                writer.add(PERFORMANCE_TABLE, "report_day", _rows(PERFORMANCE_TABLE, rows_today))
                report_rows.extend(rows_today)
            writer.commit(con)
        metadata: dict[str, Any] = {"report_days": len(days_of(context))}
        newest_day = days_of(context)[-1]
        newest = [r for r in report_rows if r["report_day"] == newest_day]
        final = [r for r in newest if r["final"]]
        metadata["final_day"] = str(final[0]["scored_day"]) if final else "none yet"
        metadata["final_pr_auc"] = final[0]["pr_auc"] if final else None
        metadata["final_estimated_pr_auc"] = final[0]["estimated_pr_auc"] if final else None
        metadata["final_estimate_error"] = final[0]["pr_auc_estimate_error"] if final else None
        metadata["label_window"] = markdown_table(
            [
                {
                    "scored_day": r["scored_day"],
                    "status": r["status"],
                    "coverage": _fmt(r["label_coverage"]),
                    "pr_auc": _fmt(r["pr_auc"]),
                    "estimated_pr_auc": _fmt(r["estimated_pr_auc"]),
                }
                for r in newest
            ],
            limit=40,
        )
        if final_report is not None:
            scored_day, rows, labels, version = final_report
            threshold = versions.operating_threshold(version)
            labelled = rows.join(
                labels.sort("reported_at").unique("example_id", keep="last"),
                on="example_id",
                how="left",
            ).with_columns(pl.col(spec.label.column).fill_null(0).cast(pl.Int64))
            if threshold is not None and labelled[spec.label.column].n_unique() == 2:
                html = (
                    data_dir.layout.reports_dir / spec.name / "performance" / f"{scored_day}.html"
                )
                evidently_classification_report(
                    labelled, html, target=spec.label.column, probability=PROBABILITY,
                    threshold=threshold, max_rows=settings.sample_rows,
                )  # fmt: skip
                metadata["evidently_report"] = _report_url(data_dir, html)
        return dg.MaterializeResult(metadata=metadata)

    assets: list[Any] = [_feature_drift, _drift_check, _prediction_drift, _estimated, _performance]
    if "online" in spec.serving:
        assets.extend(_skew_assets(spec))
    return assets


_PERFORMANCE_FIGURES = (
    "status", "final", "rows", "labels_arrived", "label_coverage", "pr_auc",
    "recall_at_precision", "brier", "precision_at_threshold", "recall_at_threshold",
)  # fmt: skip


def _scored_between(con, spec: ModelSpec, first: date, last: date) -> pl.DataFrame:
    if not table_exists(con, spec.predictions_table):
        return pl.DataFrame()
    return read_frame(
        con,
        f'select * from "{spec.predictions_table}" where score_day >= ? and score_day <= ?',
        [first, last],
    )


def _split_by_day(
    scored: pl.DataFrame, labels: pl.DataFrame
) -> dict[date, tuple[pl.DataFrame, pl.DataFrame]]:
    """Scored rows and their labels, per UTC day of the prediction."""
    if scored.is_empty():
        return {}
    scored = scored.with_columns(pl.col("score_day").alias("__day"))
    days = scored.select("example_id", "__day")
    labelled = labels.join(days, on="example_id", how="inner")
    label_parts = labelled.partition_by("__day", as_dict=True)
    out = {}
    for (day,), rows in scored.partition_by("__day", as_dict=True).items():
        part = label_parts.get((day,), labels.head(0).with_columns(pl.lit(day).alias("__day")))
        out[day] = (rows.drop("__day"), part.drop("__day"))
    return out


def _estimates(con, model: str) -> dict[date, float | None]:
    """The PR-AUC estimated for each day before its labels."""
    if not table_exists(con, ESTIMATE_TABLE):
        return {}
    rows = con.execute(
        f"select day, expected_pr_auc from {ESTIMATE_TABLE} where model_name = ?", [model]
    ).fetchall()
    return dict(rows)


def _skew_of(con, logged: pl.DataFrame, registry: ModelRegistry, spec: ModelSpec):
    """Served vectors of the logged requests against their offline recomputation, per model
    version that served them."""
    import orjson

    from fti_assets.lib.features.vectors import join_features
    from fti_assets.lib.monitoring.skew import FeatureSkew, SkewResult, compare_vectors

    if logged.is_empty():
        return SkewResult(requests=0, features=())
    totals: dict[str, list] = {}
    for (version,), rows in logged.group_by("model_version"):
        model = registry.get(spec.name, int(version))
        inputs = registry.load(spec.name, int(version)).transform.order
        label = spec.label
        requests = rows.select(*label.id_columns, label.time_column, *label.request_columns)
        offline = join_features(
            con, requests.sort(label.time_column), view_of_model(registry, model),
            label.time_column,
        )  # fmt: skip
        served = pl.DataFrame(
            [orjson.loads(text) for text in rows["features"]], infer_schema_length=None
        ).with_columns(rows[spec.label.id_columns[0]])
        result = compare_vectors(
            served.select(spec.label.id_columns[0], *[c for c in inputs if c in served.columns]),
            offline,
            [c for c in inputs if c in served.columns],
            spec.label.id_columns[0],
        )
        for f in result.features:
            entry = totals.setdefault(f.feature, [0, 0, None])
            entry[0] += f.compared
            entry[1] += f.mismatches
            if f.max_abs_diff is not None:
                entry[2] = max(entry[2] or 0.0, f.max_abs_diff)
    return SkewResult(
        requests=logged.height,
        features=tuple(FeatureSkew(name, c, m, d) for name, (c, m, d) in totals.items()),
    )


def _skew_assets(spec: ModelSpec) -> list[Any]:
    key = dg.AssetKey(f"{spec.name}_training_serving_skew")
    tolerance = spec.monitoring.skew_tolerance

    @dg.asset(
        key=key,
        group_name="monitoring",
        kinds={"polars", "ducklake"},
        owners=list(spec.owners),
        partitions_def=log_partitions,
        backfill_policy=single_run,
        tags=DAILY_TAGS,
        # It reads the feature groups (point in time) too; not declared, so that a logged day
        # whose feature day has not landed yet (a replayed world) is not held up.
        deps=["inference_log"],
        automation_condition=daily_condition(),
        description=(
            f"Train/serve skew of {spec.name}: each logged online request's feature vector "
            "against the same features recomputed offline (point-in-time join at the request's "
            "time + the shared on-demand function): per feature, mismatch rate and largest "
            "difference. Table: " + SKEW_TABLE + "."
        ),
    )
    def _skew(
        context: dg.AssetExecutionContext,
        offline_store: OfflineStoreResource,
        model_registry: ModelRegistryResource,
    ) -> dg.MaterializeResult:
        registry = model_registry.registry()
        per_day = []
        writer = _WindowWriter(spec.name, days_of(context))
        with offline_store.connection() as con:
            for day in days_of(context):
                start, end = day_bounds(day)
                logged = (
                    read_frame(
                        con,
                        "select * from inference_log where logged_at >= ? and logged_at < ? "
                        "and model_name = ?",
                        [start, end, spec.name],
                    )
                    if table_exists(con, "inference_log")
                    else pl.DataFrame()
                )
                result = _skew_of(con, logged, registry, spec)
                frame = result.to_polars().with_columns(
                    pl.lit(spec.name).alias("model_name"), pl.lit(day).alias("day")
                )
                writer.add(SKEW_TABLE, "day", frame)
                per_day.append((day, result))
            writer.commit(con)
        day, newest = per_day[-1]
        return dg.MaterializeResult(
            metadata={
                "day": str(day),
                "requests": newest.requests,
                "mismatch_rate": newest.mismatch_rate,
                "worst_feature": newest.worst_feature or "none",
                "features": markdown_table(
                    newest.to_polars()
                    .sort("mismatch_rate", descending=True)
                    .select("feature", "compared", "mismatches", "mismatch_rate", "max_abs_diff")
                    .to_dicts(),
                    limit=40,
                ),
            }
        )

    @dg.asset_check(
        asset=key,
        name="skew_within_tolerance",
        description=(
            f"The share of logged feature values that differ from their offline recomputation "
            f"stays at most {tolerance:.0%} for every feature (the newest logged day)."
        ),
    )
    def _skew_check(offline_store: OfflineStoreResource) -> dg.AssetCheckResult:
        with offline_store.connection(read_only=True) as con:
            if not table_exists(con, SKEW_TABLE):
                return dg.AssetCheckResult(passed=True, description="no logged requests yet")
            worst = read_frame(
                con,
                f"select day, feature, mismatch_rate from {SKEW_TABLE} where model_name = ? and "
                f"day = (select max(day) from {SKEW_TABLE} where model_name = ?) "
                "order by mismatch_rate desc nulls last",
                [spec.name, spec.name],
            )
        if worst.is_empty() or worst["mismatch_rate"].is_null().all():
            return dg.AssetCheckResult(passed=True, description="no logged requests that day")
        over = worst.filter(pl.col("mismatch_rate") > tolerance)
        return dg.AssetCheckResult(
            passed=over.is_empty(),
            description=(
                "every feature within tolerance"
                if over.is_empty()
                else f"{over.height} feature(s) above {tolerance:.0%}: "
                + ", ".join(
                    f"{r['feature']} {r['mismatch_rate']:.1%}" for r in over.head(5).to_dicts()
                )
            ),
            metadata={"day": str(worst["day"][0]), "tolerance": tolerance},
        )

    return [_skew, _skew_check]


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:.3f}" if isinstance(value, float | np.floating) else str(value)
