"""The fast drift layer: Evidently's test choice and verdicts, PSI, and the edge cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
from evidently.core.datasets import infer_column_type
from evidently.legacy.calculations.stattests.psi import _psi
from evidently.legacy.core import ColumnType
from scipy.stats import wasserstein_distance

from fti_assets.lib.monitoring.drift import (
    CATEGORICAL,
    NUMERIC,
    ColumnStatus,
    DatasetStatus,
    DriftTest,
    detect_drift,
    infer_column_kinds,
    wasserstein_sorted,
)
from fti_assets.lib.monitoring.evidently_report import evidently_drift_report

KINDS = {
    "amount": NUMERIC,  # continuous: KS (small reference) / Wasserstein (large)
    "gap": NUMERIC,  # continuous with NaN and ±inf
    "items": NUMERIC,  # 4 values: chi-square (small) / Jensen-Shannon (large)
    "is_night": NUMERIC,  # 2 values: Z-test (small) / Jensen-Shannon (large)
    "channel": CATEGORICAL,  # 4 values: chi-square / Jensen-Shannon
    "country": CATEGORICAL,  # 8 values, a new one when shifted
    "is_web": CATEGORICAL,  # 2 values: Z-test / Jensen-Shannon
    "cards": CATEGORICAL,  # integers, 3 values
    "is_new": CATEGORICAL,  # booleans
    "stable": NUMERIC,  # never shifted
}
SHIFTED = set(KINDS) - {"stable"}


def frame(rows: int, seed: int, shift: bool) -> pl.DataFrame:
    """Fraud-like columns; ``shift`` moves every column but ``stable`` clearly."""
    rng = np.random.default_rng(seed)
    s = float(shift)
    gap = rng.exponential(3600 * (1 + s), rows)
    gap[rng.random(rows) < 0.05] = np.nan
    gap[rng.random(rows) < 0.01] = np.inf
    countries = [f"c{i}" for i in range(8 + int(shift))]
    return pl.DataFrame(
        {
            "amount": rng.lognormal(3.5 + 0.8 * s, 1.0, rows),
            "gap": gap,
            "items": rng.choice(
                [1.0, 2.0, 3.0, 4.0], rows, p=[0.4, 0.3, 0.2, 0.1][:: 1 - 2 * shift]
            ),
            "is_night": (rng.random(rows) < 0.2 + 0.3 * s).astype(np.float64),
            "channel": rng.choice(
                ["pos", "web", "app", "moto"], rows, p=[0.55 - 0.3 * s, 0.25 + 0.3 * s, 0.15, 0.05]
            ),
            "country": rng.choice(countries, rows),
            "is_web": rng.choice(["yes", "no"], rows, p=[0.3 + 0.4 * s, 0.7 - 0.4 * s]),
            "cards": rng.choice([1, 2, 3], rows, p=[0.6, 0.3, 0.1][:: 1 - 2 * shift]),
            "is_new": rng.random(rows) < 0.1 + 0.4 * s,
            "stable": rng.normal(0.0, 1.0, rows),
        }
    )


@pytest.mark.parametrize("reference_rows", [600, 2500])
@pytest.mark.parametrize("shift", [False, True])
def test_fast_layer_gives_evidentlys_test_and_verdict_for_every_column(
    tmp_path: Path, reference_rows: int, shift: bool
) -> None:
    reference = frame(reference_rows, seed=1, shift=False)
    current = frame(1500, seed=2, shift=shift)

    report = evidently_drift_report(reference, current, KINDS, tmp_path / "drift.html")
    fast = detect_drift(reference, current, KINDS)

    assert report.untested == {}
    for verdict in report.evidently.columns:
        ours = fast.column(verdict.column)
        assert (ours.test, ours.drifted) == (verdict.test, verdict.drifted), verdict.column
        assert ours.score == pytest.approx(verdict.score, rel=1e-6, abs=1e-12), verdict.column
    assert report.disagreements == []
    assert fast.drifted_columns == [c.column for c in report.evidently.columns if c.drifted]
    assert fast.share_of_drifted_columns == pytest.approx(report.evidently.share_of_drifted_columns)
    assert fast.dataset_drift is report.evidently.dataset_drift
    # The data exercise both verdicts: the injected shift is caught. Without it, only
    # Evidently's chi-square flags columns: it takes the reference's proportions as exact, so
    # with a small reference chance differences look significant.
    drifted = set(fast.drifted_columns)
    assert "stable" not in drifted
    if shift:
        assert drifted >= SHIFTED
    else:
        assert {fast.column(c).test for c in drifted} <= {DriftTest.CHI_SQUARE}
    assert fast.dataset_drift is shift


def test_every_test_evidently_can_choose_is_covered(tmp_path: Path) -> None:
    chosen = {
        detect_drift(frame(rows, seed=1, shift=False), frame(1500, seed=2, shift=True), KINDS)
        .column(column)
        .test
        for rows in (600, 2500)
        for column in KINDS
    }

    assert chosen == set(DriftTest)


def test_reference_size_boundary_is_evidentlys_after_dropping_missing_values() -> None:
    values = np.random.default_rng(0).normal(size=1002)
    with_nan = np.append(values[:1000], [np.nan, np.inf])  # 1002 rows, 1000 usable values
    current = pl.DataFrame({"x": np.random.default_rng(1).normal(size=500)})

    small = detect_drift(pl.DataFrame({"x": with_nan}), current, {"x": NUMERIC}).column("x")
    large = detect_drift(pl.DataFrame({"x": values}), current, {"x": NUMERIC}).column("x")

    assert (small.test, small.reference_values, small.reference_missing) == (DriftTest.KS, 1000, 2)
    assert large.test is DriftTest.WASSERSTEIN


def test_psi_is_evidentlys_psi_and_grows_with_the_shift() -> None:
    rng = np.random.default_rng(3)
    reference = rng.normal(0.0, 1.0, 5000)
    psi = {}
    for shift in (0.0, 0.1, 1.0):
        current = rng.normal(shift, 1.0, 4000)
        result = detect_drift(
            pl.DataFrame({"x": reference}), pl.DataFrame({"x": current}), {"x": NUMERIC}
        )
        psi[shift] = result.column("x").psi
        evidently_psi = _psi(pd.Series(reference), pd.Series(current), ColumnType.Numerical, 0.1)[0]
        assert psi[shift] == pytest.approx(evidently_psi, rel=1e-9)
    identical = detect_drift(
        pl.DataFrame({"x": reference}), pl.DataFrame({"x": reference}), {"x": NUMERIC}
    )

    assert identical.column("x").psi == 0.0
    assert psi[0.0] < 0.01 < psi[0.1] < 0.1 < 0.25 < psi[1.0]


def test_psi_of_categories_counts_a_new_category() -> None:
    reference = pl.DataFrame({"c": ["a"] * 500 + ["b"] * 500})
    current = pl.DataFrame({"c": ["a"] * 400 + ["b"] * 400 + ["new"] * 200})

    result = detect_drift(reference, current, {"c": CATEGORICAL}).column("c")
    evidently_psi = _psi(
        reference.to_pandas()["c"], current.to_pandas()["c"], ColumnType.Categorical, 0.1
    )[0]

    assert result.psi == pytest.approx(evidently_psi)
    assert result.psi > 1.0 and result.drifted


def test_empty_current_frame_has_no_verdict() -> None:
    reference = frame(2000, seed=1, shift=False)

    for current in (reference.head(0), pl.DataFrame()):
        result = detect_drift(reference, current, KINDS)

        assert result.status is DatasetStatus.NO_ROWS
        assert {c.status for c in result.columns} == {ColumnStatus.EMPTY_CURRENT}
        assert result.drifted_columns == []
        assert result.share_of_drifted_columns is None
        assert result.dataset_drift is None
        assert result.to_polars().height == len(KINDS)
        assert result.summary()["dataset_drift"] is None


def test_column_absent_from_the_reference_is_recorded_not_tested() -> None:
    reference = frame(2000, seed=1, shift=False).drop("amount")
    current = frame(1000, seed=2, shift=False)

    result = detect_drift(reference, current, KINDS)
    amount = result.column("amount")

    assert amount.status is ColumnStatus.NO_REFERENCE
    assert (amount.test, amount.score, amount.drifted) == (None, None, None)
    assert amount.current_values == 1000
    assert len(result.tested) == len(KINDS) - 1
    assert result.summary()["untested_columns"] == {"amount": "no_reference"}


@pytest.mark.parametrize("rows", [300, 3000])
def test_constant_column_is_not_drift_unless_the_constant_changes(rows: int) -> None:
    same = detect_drift(
        pl.DataFrame({"k": [7.0] * rows, "c": ["x"] * rows}),
        pl.DataFrame({"k": [7.0] * 200, "c": ["x"] * 200}),
        {"k": NUMERIC, "c": CATEGORICAL},
    )
    moved = detect_drift(
        pl.DataFrame({"k": [7.0] * rows}), pl.DataFrame({"k": [8.0] * 200}), {"k": NUMERIC}
    )

    expected_test = DriftTest.Z if rows <= 1000 else DriftTest.JENSEN_SHANNON
    for column in ("k", "c"):
        assert same.column(column).test is expected_test
        assert same.column(column).drifted is False
        assert same.column(column).psi == 0.0
    assert moved.column("k").drifted is True


def test_nan_and_inf_are_dropped_counted_and_never_drift_by_themselves() -> None:
    values = np.random.default_rng(5).normal(size=3000)
    polluted = values.copy()
    polluted[::3] = np.nan
    polluted[1::7] = np.inf
    polluted[2::11] = -np.inf
    finite = polluted[np.isfinite(polluted)]

    result = detect_drift(
        pl.DataFrame({"x": values}), pl.DataFrame({"x": polluted}), {"x": NUMERIC}
    ).column("x")
    on_finite = detect_drift(
        pl.DataFrame({"x": values}), pl.DataFrame({"x": finite}), {"x": NUMERIC}
    ).column("x")

    assert result.current_missing == polluted.size - finite.size
    assert result.current_values == finite.size
    assert result.drifted is False
    assert (result.test, result.score, result.psi) == (
        on_finite.test,
        on_finite.score,
        on_finite.psi,
    )


def test_all_null_columns_are_recorded_and_left_out_of_evidently(tmp_path: Path) -> None:
    reference = frame(2000, seed=1, shift=False).with_columns(
        pl.lit(None, dtype=pl.Float64).alias("empty_in_reference")
    )
    current = frame(1000, seed=2, shift=False).with_columns(
        pl.lit(None, dtype=pl.Float64).alias("amount"),
        pl.lit(None, dtype=pl.String).alias("channel"),
        pl.lit(1.0).alias("empty_in_reference"),
    )
    kinds = {**KINDS, "empty_in_reference": NUMERIC}

    result = detect_drift(reference, current, kinds)
    report = evidently_drift_report(reference, current, kinds, tmp_path / "drift.html")

    assert result.column("amount").status is ColumnStatus.EMPTY_CURRENT
    assert result.column("amount").current_missing == 1000
    assert result.column("channel").status is ColumnStatus.EMPTY_CURRENT
    assert result.column("empty_in_reference").status is ColumnStatus.EMPTY_REFERENCE
    assert report.untested == {
        "amount": ColumnStatus.EMPTY_CURRENT,
        "channel": ColumnStatus.EMPTY_CURRENT,
        "empty_in_reference": ColumnStatus.EMPTY_REFERENCE,
    }
    assert [c.column for c in report.evidently.columns] == [c.column for c in result.tested]
    assert report.disagreements == []
    assert result.drifted_columns == []


def test_inferred_kinds_are_evidentlys() -> None:
    rng = np.random.default_rng(0)
    frame_ = pl.DataFrame(
        {
            "float": rng.normal(size=100),
            "int_few": rng.integers(0, 5, 100),
            "int_many": rng.integers(0, 50, 100),
            "int_with_null": pl.Series([None] + list(range(99)), dtype=pl.Int64),
            "int_few_with_null": pl.Series([None] + [1, 2] * 49 + [3], dtype=pl.Int64),
            "category": rng.choice(["a", "b", "c"], 100),
            "flag": rng.random(100) < 0.5,
        }
    )
    evidently = {
        name: {ColumnType.Numerical: NUMERIC, ColumnType.Categorical: CATEGORICAL}[
            infer_column_type(series)
        ]
        for name, series in frame_.to_pandas().items()
    }

    assert infer_column_kinds(frame_) == evidently
    assert detect_drift(frame_, frame_).column_names == list(frame_.columns)


def test_text_like_and_untyped_columns() -> None:
    ids = pl.DataFrame({"id": [f"tx_{i}" for i in range(100)], "when": [None] * 100})

    with pytest.raises(ValueError, match="'id' looks like free text"):
        infer_column_kinds(ids)
    assert infer_column_kinds(ids.drop("id")) == {}


def test_bad_input_names_the_problem() -> None:
    frame_ = pl.DataFrame({"x": [1.0, 2.0], "s": ["a", "b"]})

    with pytest.raises(ValueError, match="unknown column kind"):
        detect_drift(frame_, frame_, {"x": "ordinal"})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="numeric column 's' has dtype String"):
        detect_drift(frame_, frame_, {"s": NUMERIC})
    with pytest.raises(ValueError, match=r"current frame lacks column\(s\) \['y'\]"):
        detect_drift(frame_, frame_, {"y": NUMERIC})
    with pytest.raises(ValueError, match="drift_share"):
        detect_drift(frame_, frame_, {"x": NUMERIC}, drift_share=0.0)


@pytest.mark.parametrize(("n", "m"), [(1000, 1000), (1000, 333), (57, 2000), (1, 5)])
def test_wasserstein_on_sorted_samples_is_scipys(n: int, m: int) -> None:
    rng = np.random.default_rng(n + m)
    u = np.round(rng.lognormal(0, 1, n), 1)  # ties across and within samples
    v = np.round(rng.lognormal(0.2, 1, m), 1)

    assert wasserstein_sorted(np.sort(u), np.sort(v)) == pytest.approx(
        wasserstein_distance(u, v), rel=1e-10
    )
