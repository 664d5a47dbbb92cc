"""Train/serve skew: served vectors against their offline recomputation."""

import polars as pl
import pytest

from fti_assets.lib.monitoring.skew import compare_vectors

OFFLINE = pl.DataFrame(
    {"id": ["a", "b", "c", "d"], "count_1h": [1.0, 2.0, None, 4.0], "channel": ["x", "y", "z", "x"]}
)


def test_identical_vectors_have_no_skew() -> None:
    result = compare_vectors(OFFLINE, OFFLINE, ["count_1h", "channel"], "id")
    assert result.requests == 4 and result.mismatch_rate == 0.0
    assert result.worst_feature is None


def test_stale_values_missing_values_and_categories_are_counted() -> None:
    served = OFFLINE.with_columns(
        pl.Series("count_1h", [0.0, 2.0 + 1e-12, 3.0, None]),  # stale, equal, extra, missing
        pl.Series("channel", ["x", "y", "z", "y"]),
    )
    result = compare_vectors(served, OFFLINE, ["count_1h", "channel"], "id")
    by_name = {f.feature: f for f in result.features}
    assert by_name["count_1h"].mismatches == 3
    assert by_name["count_1h"].max_abs_diff == pytest.approx(1.0)
    assert by_name["channel"].mismatches == 1
    assert result.worst_feature == "count_1h"
    assert result.mismatch_rate == pytest.approx(4 / 8)


def test_a_served_row_without_its_offline_row_is_an_error() -> None:
    served = pl.DataFrame({"id": ["zz"], "count_1h": [1.0], "channel": ["x"]})
    with pytest.raises(ValueError, match="no offline row, e.g. id='zz'"):
        compare_vectors(served, OFFLINE, ["count_1h", "channel"], "id")


def test_no_requests_no_verdict() -> None:
    result = compare_vectors(OFFLINE.head(0), OFFLINE, ["count_1h"], "id")
    assert result.requests == 0 and result.mismatch_rate is None
