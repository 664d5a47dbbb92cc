"""Evaluating a candidate model on a test split and the gates that decide its promotion.

The report compares the candidate with the current champion on the SAME test rows and with the
generator's oracle (the true probability of each label: its PR-AUC is the Bayes limit). The
gates are pure functions of the report, so the Dagster checks that enforce them stay thin.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from fti_assets.lib.registry.predictor import Predictor
from fti_assets.lib.training.evaluation import (
    evaluate,
    plot_calibration,
    plot_pr_curve,
    pr_auc,
    slice_metrics,
)

# Slices are judged at the threshold reaching this precision overall: strict enough to be a
# realistic operating point, loose enough that small slices still flag some positives.
SLICE_TARGET_PRECISION = 0.5


@dataclass(frozen=True)
class GateConfig:
    pr_auc_floor: float = 0.25  # absolute minimum test PR-AUC
    champion_tolerance: float = 0.02  # challenger may be at most this much PR-AUC below champion
    max_slice_recall_drop: float = 0.15  # per slice, recall vs champion at the same precision
    min_slice_positives: int = 15  # slices with fewer test positives are too noisy to judge


@dataclass(frozen=True)
class GateResult:
    name: str
    passed: bool
    description: str
    metadata: dict[str, Any]


def _slices(
    frame: pl.DataFrame, label: str, slice_columns: Sequence[str], scores: np.ndarray
) -> pl.DataFrame:
    present = [c for c in slice_columns if c in frame.columns]
    scored = frame.select(label, *present).with_columns(pl.Series("p", scores))
    return slice_metrics(scored, label, "p", present, target_precision=SLICE_TARGET_PRECISION)


def evaluate_candidate(
    candidate: Predictor,
    test: pl.DataFrame,
    *,
    label: str,
    slice_columns: Sequence[str] = (),
    champion: Predictor | None = None,
    champion_version: int | None = None,
    oracle: np.ndarray | None = None,
    plots_dir: Path | None = None,
) -> dict[str, Any]:
    """A JSON report: candidate metrics and slices; the champion and the oracle (the true
    probability of each test row's label, the Bayes limit) on the same test rows."""
    if test.is_empty():
        raise ValueError("the test split is empty: nothing to evaluate on")
    y = test.get_column(label).cast(pl.Float64).to_numpy()
    p = candidate.predict(test)
    report: dict[str, Any] = {
        "label": label,
        "test_rows": test.height,
        "test_positives": int(y.sum()),
        "metrics": evaluate(y, p),
        "slices": _slices(test, label, slice_columns, p).to_dicts(),
        "champion": None,
        "oracle": None,
    }
    curves = {"candidate": (y, p)}
    if champion is not None:
        try:
            p_champion = champion.predict(test)
        except (ValueError, TypeError) as exc:
            report["champion"] = {
                "version": champion_version,
                "comparable": False,
                "error": str(exc),
            }
        else:
            report["champion"] = {
                "version": champion_version,
                "comparable": True,
                "metrics": evaluate(y, p_champion),
                "slices": _slices(test, label, slice_columns, p_champion).to_dicts(),
            }
            curves[f"champion v{champion_version}"] = (y, p_champion)
    if oracle is not None:
        if len(oracle) != test.height:
            raise ValueError(f"oracle has {len(oracle)} values for {test.height} test rows")
        oracle_pr_auc = pr_auc(y, oracle)
        model_pr_auc = report["metrics"]["pr_auc"]
        report["oracle"] = {
            "pr_auc": oracle_pr_auc,
            "model_to_oracle_pr_auc": (
                model_pr_auc / oracle_pr_auc if model_pr_auc and oracle_pr_auc else None
            ),
            "brier": evaluate(y, oracle)["brier"],
        }
        curves["oracle (Bayes limit)"] = (y, oracle)
    if plots_dir is not None:
        plots_dir.mkdir(parents=True, exist_ok=True)
        report["plots"] = {
            "pr_curve": str(plot_pr_curve(curves, plots_dir / "pr_curve.png")),
            "calibration": str(plot_calibration(curves, plots_dir / "calibration.png")),
        }
    return report


def gate_floor(report: Mapping[str, Any], config: GateConfig) -> GateResult:
    value = report["metrics"]["pr_auc"]
    passed = value is not None and value >= config.pr_auc_floor
    return GateResult(
        "metric_floor",
        passed,
        f"test PR-AUC {value} {'>=' if passed else '<'} floor {config.pr_auc_floor}",
        {"pr_auc": value, "floor": config.pr_auc_floor},
    )


def gate_champion(report: Mapping[str, Any], config: GateConfig) -> GateResult:
    champion = report.get("champion")
    if champion is None:
        return GateResult("beats_champion", True, "no champion yet: nothing to beat", {})
    if not champion["comparable"]:
        return GateResult(
            "beats_champion",
            False,
            f"champion v{champion['version']} cannot score this test split "
            f"({champion['error']}); promote by hand if intended",
            {"champion_version": champion["version"]},
        )
    mine, theirs = report["metrics"]["pr_auc"], champion["metrics"]["pr_auc"]
    passed = mine is not None and (theirs is None or mine >= theirs - config.champion_tolerance)
    return GateResult(
        "beats_champion",
        passed,
        f"challenger PR-AUC {mine:.4f} vs champion v{champion['version']} {theirs:.4f} "
        f"(tolerance {config.champion_tolerance})",
        {
            "challenger_pr_auc": mine,
            "champion_pr_auc": theirs,
            "champion_version": champion["version"],
        },
    )


def gate_slices(report: Mapping[str, Any], config: GateConfig) -> GateResult:
    champion = report.get("champion")
    if champion is None or not champion.get("comparable"):
        return GateResult("no_slice_regression", True, "no comparable champion: no regression", {})
    theirs = {(s["slice_column"], s["slice_value"]): s for s in champion["slices"]}
    drops = []
    for mine in report["slices"]:
        other = theirs.get((mine["slice_column"], mine["slice_value"]))
        if other is None or mine["positives"] < config.min_slice_positives:
            continue
        if mine["recall"] is None or other["recall"] is None:
            continue
        drop = other["recall"] - mine["recall"]
        if drop > config.max_slice_recall_drop:
            drops.append(
                f"{mine['slice_column']}={mine['slice_value']}: recall {mine['recall']:.3f} vs "
                f"champion {other['recall']:.3f}"
            )
    return GateResult(
        "no_slice_regression",
        not drops,
        "; ".join(drops)
        if drops
        else f"no slice's recall dropped more than {config.max_slice_recall_drop} vs the champion",
        {"regressions": len(drops), "max_drop": config.max_slice_recall_drop},
    )


def gates(report: Mapping[str, Any], config: GateConfig) -> list[GateResult]:
    return [gate_floor(report, config), gate_champion(report, config), gate_slices(report, config)]


def gate_config_dict(config: GateConfig) -> dict[str, Any]:
    return asdict(config)
