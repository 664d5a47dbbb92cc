"""Evidently reports on a bounded, seeded sample: drift and classification, saved as HTML.

:func:`evidently_drift_report` runs ``Report([DataDriftPreset()])`` (Evidently's new API) on at
most ``max_rows`` rows of each frame, saves the HTML and returns Evidently's own per-column
verdicts, parsed from the snapshot (``ValueDrift`` metrics and their tests). It also runs the
fast layer (:func:`~fti_assets.lib.monitoring.drift.detect_drift`) on the very same sample and
records where the two disagree, so every report carries its own cross-check.
:func:`run_data_drift` is the bare Evidently run on every row given (what the benchmark times).

Columns the fast layer cannot test (absent from the reference, no usable value on one side) are
left out of the Evidently run, which would raise on them, and are listed with the reason.
Anything Evidently itself fails on raises :class:`EvidentlyReportError` with its reason: a report
is never silently skipped.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import polars as pl
from evidently import BinaryClassification, DataDefinition, Dataset, Report
from evidently.core.report import Snapshot
from evidently.legacy.calculations.stattests import (
    chi_stat_test,
    jensenshannon_stat_test,
    ks_stat_test,
    wasserstein_stat_test,
    z_stat_test,
)
from evidently.presets import ClassificationPreset, DataDriftPreset

from fti_assets.lib.monitoring.drift import (
    CATEGORICAL,
    DEFAULT_DRIFT_SHARE,
    NUMERIC,
    ColumnKind,
    ColumnStatus,
    DriftResult,
    DriftTest,
    detect_drift,
    untested_columns,
)

DEFAULT_MAX_ROWS = 50_000
# Evidently names the test by its display name in the snapshot.
_TEST_BY_DISPLAY_NAME: dict[str, DriftTest] = {
    test.display_name: DriftTest(test.name)
    for test in (
        ks_stat_test,
        wasserstein_stat_test,
        chi_stat_test,
        jensenshannon_stat_test,
        z_stat_test,
    )
}
_VALUE_DRIFT = "evidently:metric_v2:ValueDrift"
_DRIFTED_COLUMNS_COUNT = "evidently:metric_v2:DriftedColumnsCount"
_METRIC_TYPE_PREFIX = "evidently:metric_v2:"


class EvidentlyReportError(RuntimeError):
    """Evidently failed to compute, parse or save a report; the message says why."""


@dataclass(frozen=True)
class EvidentlyColumnVerdict:
    column: str
    test: DriftTest
    threshold: float
    score: float
    drifted: bool


@dataclass(frozen=True)
class EvidentlyDrift:
    """Evidently's per-column verdicts and dataset figures, parsed from its snapshot."""

    columns: tuple[EvidentlyColumnVerdict, ...]
    number_of_drifted_columns: int
    share_of_drifted_columns: float
    dataset_drift: bool

    @property
    def verdicts(self) -> dict[str, bool]:
        return {c.column: c.drifted for c in self.columns}

    def to_polars(self) -> pl.DataFrame:
        return pl.DataFrame(
            [{**asdict(c), "test": c.test.value} for c in self.columns],
            schema={
                "column": pl.String,
                "test": pl.String,
                "threshold": pl.Float64,
                "score": pl.Float64,
                "drifted": pl.Boolean,
            },
        )


@dataclass(frozen=True)
class EvidentlyDriftReport:
    """Evidently's verdicts on the sample, the HTML's path, and the fast layer's agreement."""

    html_path: Path
    reference_rows: int  # rows of the sample
    current_rows: int
    seed: int
    untested: dict[str, ColumnStatus]  # left out of the Evidently run, and why
    evidently: EvidentlyDrift
    fast: DriftResult  # the fast layer on the same sample

    @property
    def disagreements(self) -> list[str]:
        """Columns where the fast layer's test or verdict differs from Evidently's."""
        return [
            c.column
            for c in self.evidently.columns
            if (self.fast.column(c.column).test, self.fast.column(c.column).drifted)
            != (c.test, c.drifted)
        ]

    def summary(self) -> dict[str, Any]:
        """JSON-friendly figures for asset metadata."""
        return {
            "html_path": str(self.html_path),
            "sample_reference_rows": self.reference_rows,
            "sample_current_rows": self.current_rows,
            "seed": self.seed,
            "number_of_drifted_columns": self.evidently.number_of_drifted_columns,
            "share_of_drifted_columns": self.evidently.share_of_drifted_columns,
            "dataset_drift": self.evidently.dataset_drift,
            "drifted_columns": [c for c, drifted in self.evidently.verdicts.items() if drifted],
            "untested_columns": {c: s.value for c, s in self.untested.items()},
            "fast_layer_disagreements": self.disagreements,
        }


def bounded_sample(frame: pl.DataFrame, max_rows: int, seed: int) -> pl.DataFrame:
    """At most ``max_rows`` rows, drawn without replacement with ``seed`` (all rows if fewer)."""
    if max_rows < 1:
        raise ValueError(f"max_rows must be at least 1; got {max_rows}")
    if frame.height <= max_rows:
        return frame
    return frame.sample(n=max_rows, seed=seed)


def _data_definition(kinds: Mapping[str, ColumnKind]) -> DataDefinition:
    return DataDefinition(
        numerical_columns=[c for c, k in kinds.items() if k == NUMERIC],
        categorical_columns=[c for c, k in kinds.items() if k == CATEGORICAL],
        text_columns=[],
        datetime_columns=[],
    )


def _dataset(frame: pl.DataFrame, columns: list[str], definition: DataDefinition) -> Dataset:
    return Dataset.from_pandas(frame.select(columns).to_pandas(), data_definition=definition)


def run_data_drift(
    reference: pl.DataFrame,
    current: pl.DataFrame,
    kinds: Mapping[str, ColumnKind],
    *,
    drift_share: float = DEFAULT_DRIFT_SHARE,
) -> tuple[Snapshot, EvidentlyDrift]:
    """Evidently ``DataDriftPreset`` on every row given (all columns must be testable)."""
    definition = _data_definition(kinds)
    columns = list(kinds)
    try:
        with warnings.catch_warnings():  # SciPy warns on every chi-square with a new value
            warnings.simplefilter("ignore", RuntimeWarning)
            snapshot = Report([DataDriftPreset(drift_share=drift_share)], include_tests=True).run(
                _dataset(current, columns, definition), _dataset(reference, columns, definition)
            )
            result = snapshot.dict()
    except Exception as exc:  # re-raised with the run's context: never skipped
        raise EvidentlyReportError(
            f"Evidently DataDriftPreset failed on {len(columns)} column(s) {columns} "
            f"({current.height} current / {reference.height} reference rows): "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    return snapshot, _parse_drift(result, columns)


def evidently_drift_report(
    reference: pl.DataFrame,
    current: pl.DataFrame,
    kinds: Mapping[str, ColumnKind],
    html_path: Path,
    *,
    max_rows: int = DEFAULT_MAX_ROWS,
    seed: int = 0,
    drift_share: float = DEFAULT_DRIFT_SHARE,
) -> EvidentlyDriftReport:
    """Evidently ``DataDriftPreset`` on a seeded sample of each frame; HTML to ``html_path``.

    The same ``max_rows`` and ``seed`` give the same sample (:func:`bounded_sample`). An empty
    ``current`` or one where no column can be tested is a ``ValueError``: there is nothing for
    Evidently to report (the fast layer records those days as "no verdict").
    """
    ref = bounded_sample(reference, max_rows, seed)
    cur = bounded_sample(current, max_rows, seed)
    if cur.height == 0:
        raise ValueError("the current frame has no rows: no Evidently drift report to make")
    untested = untested_columns(ref, cur, kinds)
    tested = {c: k for c, k in kinds.items() if c not in untested}
    if not tested:
        statuses = {c: s.value for c, s in untested.items()}
        raise ValueError(f"no column can be tested for drift: {statuses}")
    snapshot, evidently = run_data_drift(ref, cur, tested, drift_share=drift_share)
    _save_html(snapshot, html_path)
    return EvidentlyDriftReport(
        html_path=html_path,
        reference_rows=ref.height,
        current_rows=cur.height,
        seed=seed,
        untested=untested,
        evidently=evidently,
        fast=detect_drift(ref, cur, tested, drift_share=drift_share),
    )


def _save_html(snapshot: Snapshot, html_path: Path) -> None:
    try:
        html_path.parent.mkdir(parents=True, exist_ok=True)
        snapshot.save_html(str(html_path))
    except Exception as exc:
        raise EvidentlyReportError(
            f"could not save the Evidently report to {html_path}: {type(exc).__name__}: {exc}"
        ) from exc


def _test_status(tests: list[dict[str, Any]], metric_id: str) -> str:
    statuses = [str(t["status"]) for t in tests if t["metric_config"]["metric_id"] == metric_id]
    if len(statuses) != 1:
        raise EvidentlyReportError(
            f"expected one Evidently test for metric {metric_id}; found {statuses}"
        )
    status = statuses[0].rsplit(".", 1)[-1]  # a TestStatus enum or its value
    if status not in ("FAIL", "SUCCESS"):
        raise EvidentlyReportError(f"Evidently test of metric {metric_id} ended {status}")
    return status


def _parse_drift(result: Mapping[str, Any], columns: list[str]) -> EvidentlyDrift:
    """Per-column verdicts and the dataset figures from ``snapshot.dict()``."""
    tests = result["tests"]
    by_column: dict[str, EvidentlyColumnVerdict] = {}
    counts = []
    for metric in result["metrics"]:
        config = metric["config"]
        if config["type"] == _VALUE_DRIFT:
            method = config["method"]
            if method not in _TEST_BY_DISPLAY_NAME:
                raise EvidentlyReportError(
                    f"Evidently used test {method!r} for column {config['column']!r}; expected "
                    f"one of {sorted(_TEST_BY_DISPLAY_NAME)}"
                )
            by_column[config["column"]] = EvidentlyColumnVerdict(
                column=config["column"],
                test=_TEST_BY_DISPLAY_NAME[method],
                threshold=float(config["threshold"]),
                score=float(metric["value"]),
                drifted=_test_status(tests, metric["id"]) == "FAIL",
            )
        elif config["type"] == _DRIFTED_COLUMNS_COUNT:
            counts.append(metric)
    missing = [c for c in columns if c not in by_column]
    if missing or len(counts) != 1:
        raise EvidentlyReportError(
            f"Evidently's result lacks drift for column(s) {missing} or has "
            f"{len(counts)} DriftedColumnsCount metric(s) (expected 1)"
        )
    value = counts[0]["value"]
    dataset_drift = _test_status(tests, counts[0]["id"]) == "FAIL"  # share < drift_share failed
    return EvidentlyDrift(
        columns=tuple(by_column[c] for c in columns),
        number_of_drifted_columns=int(value["count"]),
        share_of_drifted_columns=float(value["share"]),
        dataset_drift=dataset_drift,
    )


@dataclass(frozen=True)
class EvidentlyClassificationReport:
    html_path: Path
    rows: int  # rows of the sample
    metrics: dict[str, float]  # Evidently's scalar metrics: accuracy, precision, recall, ...


def evidently_classification_report(
    rows: pl.DataFrame,
    html_path: Path,
    *,
    target: str,
    probability: str,
    threshold: float,
    reference: pl.DataFrame | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
    seed: int = 0,
) -> EvidentlyClassificationReport:
    """Evidently ``ClassificationPreset`` of labelled rows at the operating ``threshold``.

    ``target`` holds 0/1 labels and ``probability`` the positive-class probability; the
    ``reference`` (e.g. the champion's test split, same two columns) is drawn beside the
    current rows when given. Both classes must be present: Evidently cannot score a day with
    only one.
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1); got {threshold}")
    frames = {"current": rows} if reference is None else {"current": rows, "reference": reference}
    for name, frame in frames.items():
        absent = [c for c in (target, probability) if c not in frame.columns]
        if absent:
            raise ValueError(f"{name} rows lack column(s) {absent}; they have {frame.columns}")
        classes = sorted(frame.get_column(target).drop_nulls().unique().to_list())
        if classes != [0, 1]:
            raise ValueError(
                f"{name} rows need both classes 0 and 1 in {target!r} for a classification "
                f"report; found {classes}"
            )
    definition = DataDefinition(
        classification=[BinaryClassification(target=target, prediction_probas=probability)],
        numerical_columns=[probability],
        categorical_columns=[target],
    )
    sample = bounded_sample(rows, max_rows, seed)
    current = _dataset(sample, [target, probability], definition)
    ref = None
    if reference is not None:
        ref = _dataset(bounded_sample(reference, max_rows, seed), [target, probability], definition)
    try:
        with warnings.catch_warnings():  # sklearn warns on every undefined precision
            warnings.simplefilter("ignore")
            snapshot = Report(
                [ClassificationPreset(probas_threshold=threshold)], include_tests=True
            ).run(current, ref)
            result = snapshot.dict()
    except Exception as exc:
        raise EvidentlyReportError(
            f"Evidently ClassificationPreset failed on {sample.height} rows: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    _save_html(snapshot, html_path)
    metrics = {
        m["config"]["type"].removeprefix(_METRIC_TYPE_PREFIX): float(m["value"])
        for m in result["metrics"]
        if isinstance(m["value"], int | float)
    }
    return EvidentlyClassificationReport(html_path=html_path, rows=sample.height, metrics=metrics)
