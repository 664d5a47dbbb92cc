"""Reference statistics (stored with a dataset) and the PSI drift statistic computed from them."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from fti_assets.lib.training.reference_stats import (
    OTHER,
    population_stability_index,
    reference_statistics,
)


def test_numeric_statistics_of_a_known_column() -> None:
    values = [float(v) for v in range(100)] + [None] * 25 + [float("nan")]
    stats = reference_statistics(pl.DataFrame({"x": values}), ["x"], [])["numeric"]["x"]

    assert stats["kind"] == "numeric"
    assert stats["count"] == 100
    assert stats["null_fraction"] == pytest.approx(26 / 126)  # NaN counts as missing
    assert stats["mean"] == pytest.approx(49.5)
    assert stats["std"] == pytest.approx(np.std(np.arange(100), ddof=1))
    assert (stats["min"], stats["max"]) == (0.0, 99.0)
    assert stats["quantiles"]["p50"] == pytest.approx(49.5)
    assert stats["quantiles"]["p01"] == pytest.approx(0.99)
    assert stats["bin_edges"] == [10.0 * i for i in range(1, 10)]
    # Ten equal-population bins: (-inf, 10), [10, 20), ..., [90, inf).
    assert stats["bin_proportions"] == pytest.approx([0.1] * 10)


def test_bin_edges_of_a_discrete_column_are_deduplicated() -> None:
    values = [0] * 80 + [1] * 15 + [5] * 5
    stats = reference_statistics(pl.DataFrame({"n": values}), ["n"], [])["numeric"]["n"]

    assert stats["bin_edges"] == [0.0, 1.0]
    assert stats["bin_proportions"] == pytest.approx([0.0, 0.8, 0.2])


def test_categorical_statistics_keep_the_top_values_and_pool_the_rest() -> None:
    values = ["a"] * 50 + ["b"] * 30 + ["c"] * 10 + ["d"] * 5 + ["e"] * 5 + [None] * 100
    frame = pl.DataFrame({"cat": values})
    stats = reference_statistics(frame, [], ["cat"], top_n=2)["categorical"]["cat"]

    assert stats["kind"] == "categorical"
    assert stats["null_fraction"] == 0.5
    assert stats["distinct"] == 5
    assert stats["proportions"] == pytest.approx({"a": 0.5, "b": 0.3, OTHER: 0.2})


def test_statistics_are_strict_json_even_for_empty_and_infinite_columns() -> None:
    frame = pl.DataFrame(
        {
            "empty": pl.Series([None, None], dtype=pl.Float64),
            "inf": [float("inf"), 1.0],
            "flag": [True, False],
            "cat": pl.Series([None, None], dtype=pl.String),
        }
    )
    stats = reference_statistics(frame, ["empty", "inf", "flag"], ["cat"])

    text = json.dumps(stats, allow_nan=False)
    assert json.loads(text)["numeric"]["empty"]["mean"] is None
    assert stats["numeric"]["inf"]["max"] == 1.0


def test_bad_arguments_are_refused() -> None:
    frame = pl.DataFrame({"x": [1.0], "s": ["a"]})
    with pytest.raises(ValueError, match="both numeric and categorical"):
        reference_statistics(frame, ["x"], ["x"])
    with pytest.raises(ValueError, match="lacks column"):
        reference_statistics(frame, ["y"], [])
    with pytest.raises(TypeError, match="expected int, float or bool"):
        reference_statistics(frame, ["s"], [])
    stats = reference_statistics(frame, ["x"], [])["numeric"]["x"]
    with pytest.raises(ValueError, match="empty"):
        population_stability_index(stats, pl.Series("x", [], dtype=pl.Float64))


def _normal(mean: float, n: int, seed: int) -> pl.Series:
    return pl.Series("x", np.random.default_rng(seed).normal(mean, 1.0, n))


def test_psi_is_near_zero_for_the_same_distribution_and_large_for_a_shift() -> None:
    reference = reference_statistics(_normal(0.0, 20_000, 1).to_frame(), ["x"], [])
    stats = reference["numeric"]["x"]

    same = population_stability_index(stats, _normal(0.0, 20_000, 2))
    shifted = population_stability_index(stats, _normal(1.0, 20_000, 3))

    assert same < 0.01
    assert shifted > 0.5


def test_psi_sees_a_column_going_missing() -> None:
    stats = reference_statistics(_normal(0.0, 10_000, 1).to_frame(), ["x"], [])["numeric"]["x"]
    current = (
        _normal(0.0, 10_000, 2)
        .to_frame()
        .with_row_index()
        .select(pl.when(pl.col("index") % 2 == 0).then(pl.col("x")).alias("x"))
    )

    assert population_stability_index(stats, current.get_column("x")) > 0.25


def test_categorical_psi_same_mix_vs_new_mix() -> None:
    rng = np.random.default_rng(5)
    cats = np.array(["grocery", "gas", "travel", "online"])
    reference = pl.DataFrame({"c": rng.choice(cats, 20_000, p=[0.5, 0.3, 0.15, 0.05])})
    stats = reference_statistics(reference, [], ["c"])["categorical"]["c"]

    same = pl.Series("c", rng.choice(cats, 20_000, p=[0.5, 0.3, 0.15, 0.05]))
    shifted = pl.Series("c", rng.choice(cats, 20_000, p=[0.1, 0.1, 0.3, 0.5]))
    unseen = pl.Series("c", ["crypto"] * 10_000 + ["grocery"] * 10_000)

    assert population_stability_index(stats, same) < 0.01
    assert population_stability_index(stats, shifted) > 0.5
    # A category the reference never saw lands in "__other__", which was empty: large PSI.
    assert population_stability_index(stats, unseen) > 1.0
