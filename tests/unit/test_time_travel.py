"""Time travel in the offline store: a group as of an event time T (the values current at T, per
entity) agrees with a brute-force oracle; an entity's history; a group as of a lake snapshot."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from fti_assets.lib.core.settings import LakeConfig
from fti_assets.lib.features.pipelines import (
    entity_history,
    key_frame,
    latest_offline_rows,
    read_group,
)
from fti_assets.lib.store.group_spec import FeatureGroupSpec, FeatureSpec
from fti_assets.lib.store.offline import Replacement, connection, replace_partitions

T0 = datetime(2026, 9, 1, tzinfo=UTC)
SPEC = FeatureGroupSpec(
    name="random_group",
    version=1,
    entity_keys=("card_id",),
    features=(FeatureSpec("value", "float64", "a value"),),
    description="random rows for the oracle",
)


def _rows(seed: int, n: int = 400) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    minutes = rng.integers(0, 60 * 24 * 20, n)  # 20 days, a few rows share an instant per card
    return pl.DataFrame(
        {
            "card_id": [f"c{i}" for i in rng.integers(0, 25, n)],
            "event_time": [T0 + timedelta(minutes=int(m)) for m in minutes],
            "value": rng.normal(size=n),
        }
    ).unique(["card_id", "event_time"])


def _oracle(rows: pl.DataFrame, as_of: datetime) -> dict[str, float]:
    """Brute force: for each card, the value of its newest row with event_time <= as_of."""
    out: dict[str, tuple[datetime, float]] = {}
    for card, at, value in rows.iter_rows():
        if at <= as_of and (card not in out or at > out[card][0]):
            out[card] = (at, value)
    return {card: value for card, (_, value) in out.items()}


@pytest.fixture
def lake(tmp_path: Path) -> LakeConfig:
    return LakeConfig.under(tmp_path / "lake")


def test_as_of_reads_agree_with_a_brute_force_oracle(lake: LakeConfig) -> None:
    rows = _rows(0)
    with connection(lake) as con:
        replace_partitions(con, [Replacement(SPEC.table, rows, "true")])
        rng = np.random.default_rng(1)
        instants = [T0 + timedelta(minutes=int(m)) for m in rng.integers(-60, 60 * 24 * 21, 60)]
        instants += list(rows["event_time"].sample(20, seed=2))  # exactly at a row's time
        for as_of in instants:
            got = latest_offline_rows(con, SPEC, as_of=as_of)
            assert dict(zip(got["card_id"], got["value"], strict=True)) == _oracle(rows, as_of)
        one = latest_offline_rows(con, SPEC, key_frame(SPEC, {"card_id": "c3"}), as_of=instants[5])
        assert one["card_id"].to_list() in ([], ["c3"])
        history = entity_history(con, SPEC, key_frame(SPEC, {"card_id": "c3"}))
    expected = rows.filter(pl.col("card_id") == "c3").sort("event_time")
    assert history["event_time"].to_list() == expected["event_time"].to_list()
    with pytest.raises(ValueError, match="naive"):
        read_group(lake, SPEC, as_of=datetime(2026, 9, 5))
    with pytest.raises(ValueError, match=r"keyed by \['card_id'\]"):
        key_frame(SPEC, {"merchant_id": "m1"})


def test_a_group_reads_as_it_was_at_a_snapshot_after_a_correction(lake: LakeConfig) -> None:
    before = pl.DataFrame({"card_id": ["c1"], "event_time": [T0], "value": [1.0]})
    with connection(lake) as con:
        first = replace_partitions(con, [Replacement(SPEC.table, before, "true")])
        corrected = before.with_columns(pl.lit(2.0).alias("value"))
        replace_partitions(con, [Replacement(SPEC.table, corrected, "true")])  # a backfill
    now = read_group(lake, SPEC, {"card_id": "c1"})
    then = read_group(lake, SPEC, {"card_id": "c1"}, snapshot=first)
    assert now["value"].to_list() == [2.0] and then["value"].to_list() == [1.0]
