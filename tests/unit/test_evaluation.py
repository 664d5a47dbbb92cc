from pathlib import Path

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from fti_assets.lib.training.evaluation import (
    brier,
    calibration_table,
    evaluate,
    plot_calibration,
    plot_pr_curve,
    pr_auc,
    recall_at_precision,
    roc_auc,
    slice_metrics,
    threshold_at_precision,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def scored() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = (rng.random(2000) < 0.1).astype(int)
    p = np.clip(0.1 + 0.3 * y + rng.normal(0, 0.15, 2000), 0, 1)
    return y, p


def test_ranking_metrics_match_sklearn(scored: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = scored

    assert pr_auc(y, p) == pytest.approx(average_precision_score(y, p))
    assert roc_auc(y, p) == pytest.approx(roc_auc_score(y, p))
    assert brier(y, p) == pytest.approx(brier_score_loss(y, p))


def test_recall_at_precision_by_hand() -> None:
    y = [1, 1, 0, 1, 0, 0]
    p = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    # flag top-2: precision 1, recall 2/3; top-4: precision 3/4, recall 1

    assert recall_at_precision(y, p, precision=0.9) == pytest.approx(2 / 3)
    assert threshold_at_precision(y, p, precision=0.9) == (0.8, pytest.approx(2 / 3))
    assert recall_at_precision(y, p, precision=0.75) == 1.0


def test_recall_at_precision_is_zero_when_unreachable_and_none_without_positives() -> None:
    # tied scores cannot be split: flagging 0.5 takes both rows (precision 1/2)
    assert recall_at_precision([1, 0, 1], [0.5, 0.5, 0.2], precision=0.9) == 0.0
    assert threshold_at_precision([0, 1], [0.9, 0.1], precision=0.9) == (None, 0.0)
    assert recall_at_precision([0, 0], [0.3, 0.1]) is None


def test_brier_by_hand() -> None:
    assert brier([1, 0], [0.8, 0.4]) == pytest.approx((0.2**2 + 0.4**2) / 2)


def test_calibration_table_by_hand() -> None:
    table = calibration_table([0, 1, 0, 1, 1], [0.05, 0.15, 0.15, 0.95, 1.0], n_bins=10)

    assert table["bin"].to_list() == [0, 1, 9]
    assert table["n"].to_list() == [1, 2, 2]
    assert table["mean_predicted"].to_list() == pytest.approx([0.05, 0.15, 0.975])
    assert table["observed_rate"].to_list() == pytest.approx([0.0, 0.5, 1.0])


def test_quantile_calibration_bins_hold_similar_counts(
    scored: tuple[np.ndarray, np.ndarray],
) -> None:
    y, p = scored

    table = calibration_table(y, p, n_bins=5, strategy="quantile")

    assert table["n"].sum() == len(y)
    assert table["n"].min() >= 0.15 * len(y)


def test_evaluate_reports_undefined_metrics_as_none() -> None:
    metrics = evaluate([0, 0, 0], [0.1, 0.2, 0.3])

    assert metrics["positives"] == 0
    assert metrics["pr_auc"] is None
    assert metrics["roc_auc"] is None
    assert metrics["recall_at_precision"] is None
    assert metrics["brier"] == pytest.approx((0.01 + 0.04 + 0.09) / 3)


def test_evaluate_matches_the_single_metrics(scored: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = scored

    metrics = evaluate(y, p, precision=0.8)

    assert metrics["n"] == 2000 and metrics["positives"] == int(y.sum())
    assert metrics["pr_auc"] == pr_auc(y, p)
    assert metrics["recall_at_precision"] == recall_at_precision(y, p, precision=0.8)
    assert metrics["target_precision"] == 0.8


def test_slice_metrics_share_one_threshold_and_survive_slices_without_positives() -> None:
    frame = pl.DataFrame(
        {
            "y": [1, 0, 1, 0, 0, 0, 0, 1],
            "p": [0.9, 0.2, 0.6, 0.7, 0.1, 0.8, 0.3, 0.4],
            "channel": ["web", "web", "web", "web", "pos", "pos", "pos", None],
        }
    )

    table = slice_metrics(frame, "y", "p", ["channel"], threshold=0.5)

    rows = {r["slice_value"]: r for r in table.iter_rows(named=True)}
    assert list(rows) == ["pos", "web", None]
    web, pos, null = rows["web"], rows["pos"], rows[None]
    assert (web["n"], web["positives"]) == (4, 2)
    assert web["recall"] == 1.0 and web["precision"] == pytest.approx(2 / 3)
    assert web["false_positive_rate"] == 0.5
    assert web["pr_auc"] == pytest.approx(
        average_precision_score([1, 0, 1, 0], [0.9, 0.2, 0.6, 0.7])
    )
    assert (pos["n"], pos["positives"]) == (3, 0)
    assert pos["pr_auc"] is None and pos["roc_auc"] is None and pos["recall"] is None
    assert pos["false_positive_rate"] == pytest.approx(1 / 3)
    assert null["n"] == 1 and null["recall"] == 0.0 and null["precision"] is None
    assert set(table["threshold"].to_list()) == {0.5}


def test_slice_threshold_defaults_to_the_target_precision_on_the_whole_frame(
    scored: tuple[np.ndarray, np.ndarray],
) -> None:
    y, p = scored
    frame = pl.DataFrame({"y": y, "p": p, "segment": np.arange(len(y)) % 3})

    table = slice_metrics(frame, "y", "p", ["segment"], target_precision=0.8)

    expected, _ = threshold_at_precision(y, p, precision=0.8)
    assert table["threshold"].unique().to_list() == [expected]
    assert table["slice_value"].to_list() == ["0", "1", "2"]
    assert table["n"].sum() == len(y)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="0/1"):
        pr_auc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="2 values"):
        brier([0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="NaN"):
        evaluate([0, 1], [0.1, float("nan")])
    with pytest.raises(ValueError, match="missing"):
        slice_metrics(pl.DataFrame({"y": [1], "p": [0.5]}), "y", "p", ["channel"])


def test_plots_are_written_as_png(scored: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    y, p = scored
    curves = {
        "champion": (y, p),
        "challenger": (y, np.sqrt(p)),
        "no positives": ([0, 0], [0.1, 0.2]),
    }

    pr_path = plot_pr_curve(curves, tmp_path / "plots" / "pr.png")
    cal_path = plot_calibration(curves, tmp_path / "plots" / "calibration.png")

    for path in (pr_path, cal_path):
        assert path.read_bytes().startswith(PNG_MAGIC)
        assert path.stat().st_size > 5000
