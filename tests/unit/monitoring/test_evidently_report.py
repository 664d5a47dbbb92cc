"""Evidently reports: HTML on disk, verdicts parsed from the snapshot, failures with a reason."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import roc_auc_score

from fti_assets.lib.monitoring.drift import CATEGORICAL, NUMERIC, detect_drift
from fti_assets.lib.monitoring.evidently_report import (
    EvidentlyReportError,
    bounded_sample,
    evidently_classification_report,
    evidently_drift_report,
)

KINDS = {"amount": NUMERIC, "channel": CATEGORICAL}


def _frame(rows: int, seed: int, amount_mean: float = 3.5) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            "amount": rng.lognormal(amount_mean, 1.0, rows),
            "channel": rng.choice(["pos", "web", "app"], rows),
        }
    )


def test_drift_report_is_saved_and_parsed_on_a_seeded_bounded_sample(tmp_path: Path) -> None:
    reference, current = _frame(4000, 1), _frame(3000, 2, amount_mean=4.5)
    html = tmp_path / "reports" / "day" / "drift.html"

    report = evidently_drift_report(reference, current, KINDS, html, max_rows=1200, seed=7)
    again = evidently_drift_report(
        reference, current, KINDS, tmp_path / "again.html", max_rows=1200, seed=7
    )
    fast = detect_drift(bounded_sample(reference, 1200, 7), bounded_sample(current, 1200, 7), KINDS)

    assert "Wasserstein distance (normed)" in html.read_text()  # the report, not a stub
    assert (report.reference_rows, report.current_rows) == (1200, 1200)
    evidently = report.evidently
    assert evidently.verdicts == {"amount": True, "channel": False} == again.evidently.verdicts
    assert [c.score for c in evidently.columns] == [c.score for c in again.evidently.columns]
    assert evidently.verdicts == {c.column: c.drifted for c in fast.columns}
    assert (evidently.number_of_drifted_columns, evidently.share_of_drifted_columns) == (1, 0.5)
    assert evidently.dataset_drift is True  # Evidently's rule: share >= drift_share
    assert evidently.to_polars()["test"].to_list() == ["wasserstein", "jensenshannon"]
    assert json.loads(json.dumps(report.summary()))["fast_layer_disagreements"] == []


def test_bounded_sample_keeps_small_frames_whole() -> None:
    small = _frame(50, 0)

    assert bounded_sample(small, 100, 0) is small
    assert bounded_sample(_frame(500, 0), 100, 0).height == 100
    with pytest.raises(ValueError, match="max_rows must be at least 1"):
        bounded_sample(small, 0, 0)


def test_an_evidently_failure_raises_with_its_reason(tmp_path: Path) -> None:
    lists = pl.DataFrame({"basket": [[1, 2], [3]] * 100, "amount": np.arange(200.0)})

    with pytest.raises(EvidentlyReportError, match="DataDriftPreset failed.*unhashable"):
        evidently_drift_report(
            lists, lists, {"basket": CATEGORICAL, "amount": NUMERIC}, tmp_path / "r.html"
        )
    assert not (tmp_path / "r.html").exists()


def test_an_unwritable_report_path_raises(tmp_path: Path) -> None:
    frame = _frame(300, 0)
    (tmp_path / "taken").mkdir()

    with pytest.raises(EvidentlyReportError, match="could not save the Evidently report"):
        evidently_drift_report(frame, frame, KINDS, tmp_path / "taken")


def test_nothing_to_report_is_an_explicit_error(tmp_path: Path) -> None:
    frame = _frame(300, 0)

    with pytest.raises(ValueError, match="current frame has no rows"):
        evidently_drift_report(frame, frame.head(0), KINDS, tmp_path / "r.html")
    with pytest.raises(ValueError, match="no column can be tested.*no_reference"):
        evidently_drift_report(
            frame.drop("amount"), frame, {"amount": NUMERIC}, tmp_path / "r.html"
        )


def _scored(rows: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    p = rng.beta(0.5, 8, rows)
    return pl.DataFrame({"is_fraud": (rng.random(rows) < p).astype(np.int8), "p": p})


def test_classification_report_matches_sklearn(tmp_path: Path) -> None:
    rows, reference = _scored(3000, 1), _scored(2000, 2)
    html = tmp_path / "classification.html"

    report = evidently_classification_report(
        rows, html, target="is_fraud", probability="p", threshold=0.3, reference=reference
    )
    y, p = rows["is_fraud"].to_numpy(), rows["p"].to_numpy()
    flagged = p >= 0.3

    assert html.stat().st_size > 10_000  # the report, not a stub
    assert report.rows == 3000
    assert report.metrics["RocAuc"] == pytest.approx(roc_auc_score(y, p))
    assert report.metrics["Recall"] == pytest.approx(y[flagged].sum() / y.sum(), abs=2e-3)
    assert report.metrics["Precision"] == pytest.approx(y[flagged].mean(), abs=2e-3)


def test_classification_report_needs_both_classes(tmp_path: Path) -> None:
    negatives = _scored(500, 0).with_columns(pl.lit(0, dtype=pl.Int8).alias("is_fraud"))

    with pytest.raises(ValueError, match=r"both classes 0 and 1 in 'is_fraud'.*\[0\]"):
        evidently_classification_report(
            negatives, tmp_path / "c.html", target="is_fraud", probability="p", threshold=0.5
        )
    with pytest.raises(ValueError, match=r"lack column\(s\) \['score'\]"):
        evidently_classification_report(
            negatives, tmp_path / "c.html", target="is_fraud", probability="score", threshold=0.5
        )
