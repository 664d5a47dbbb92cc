"""The point-in-time join against a brute-force oracle, plus every documented error."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import polars as pl
import pytest

from fti_assets.lib.features.pit import pit_join

UTC = dt.UTC
T0 = dt.datetime(2024, 3, 1, tzinfo=UTC)
ENGINES = ["polars", "duckdb"]


def _oracle(
    labels: pl.DataFrame,
    features: pl.DataFrame,
    keys: list[str],
    label_time: str,
    feature_time: str,
    ttl: dt.timedelta | None,
) -> tuple[pl.DataFrame, int]:
    """Row by row: the latest feature row with equal keys and a strictly earlier time.

    Also returns how many label rows found a feature row.
    """
    feature_cols = [c for c in features.columns if c not in keys and c != feature_time]
    feature_rows = features.rows(named=True)
    picked: list[dict[str, Any]] = []
    n_matched = 0
    for label in labels.iter_rows(named=True):
        best = None
        if label[label_time] is not None and all(label[k] is not None for k in keys):
            for row in feature_rows:
                same_key = all(row[k] is not None and row[k] == label[k] for k in keys)
                earlier = row[feature_time] is not None and row[feature_time] < label[label_time]
                if (
                    same_key
                    and earlier
                    and (best is None or row[feature_time] > best[feature_time])
                ):
                    best = row
        if best is not None and ttl is not None and label[label_time] - best[feature_time] > ttl:
            best = None
        n_matched += best is not None
        picked.append({c: None if best is None else best[c] for c in feature_cols})
    expected = pl.DataFrame(picked, schema={c: features.schema[c] for c in feature_cols})
    return labels.hstack(expected.get_columns()), n_matched


def _random_case(rng: random.Random) -> dict[str, Any]:
    two_keys = rng.random() < 0.5
    keys = ["card_id", "merchant_id"] if two_keys else ["card_id"]
    aware = rng.random() < 0.8
    label_zone = feature_zone = "UTC" if aware else None
    if aware and rng.random() < 0.2:
        feature_zone = "Europe/Paris"  # another zone, same instants
    offsets = [dt.timedelta(0), dt.timedelta(microseconds=1), dt.timedelta(milliseconds=1)]

    def moment() -> dt.datetime | None:
        if rng.random() < 0.08:
            return None
        # Few distinct minutes, so equal times across and within the two sides are common.
        value = T0 + dt.timedelta(minutes=rng.randrange(6)) + rng.choice(offsets)
        return value if aware else value.replace(tzinfo=None)

    def key_values() -> dict[str, Any]:
        values: dict[str, Any] = {"card_id": rng.choice(["a", "b", "c", None])}
        if two_keys:
            values["merchant_id"] = rng.choice([1, 2, None])
        return values

    labels = [{**key_values(), "ts": moment(), "label": i} for i in range(rng.randrange(9))]
    features: list[dict[str, Any]] = []
    seen: set[tuple[Any, ...]] = set()
    for _ in range(rng.randrange(12)):
        row = {**key_values(), "event_time": moment()}
        identity = tuple(row[k] for k in [*keys, "event_time"])
        if None not in identity and identity in seen:
            continue  # a real duplicate is an error case, tested apart
        seen.add(identity)
        row.update(amount=rng.choice([1.5, -2.0, None]), channel=rng.choice(["web", "pos", None]))
        features.append(row)

    key_schema = {"card_id": pl.String, "merchant_id": pl.Int32}
    label_schema = {k: key_schema[k] for k in keys}
    label_schema.update(ts=pl.Datetime("us", label_zone), label=pl.Int64)
    feature_schema = {k: key_schema[k] for k in keys}
    feature_schema.update(
        event_time=pl.Datetime("us", feature_zone), amount=pl.Float64, channel=pl.Categorical
    )
    label_frame = pl.DataFrame(labels, schema=label_schema, orient="row")
    feature_frame = pl.DataFrame(
        [{**r, "event_time": _in_zone(r["event_time"], feature_zone)} for r in features],
        schema=feature_schema,
        orient="row",
    )
    label_frame = label_frame.with_columns(
        pl.col("ts").cast(pl.Datetime(rng.choice(["us", "ns"]), label_zone))
    )
    feature_frame = feature_frame.with_columns(
        pl.col("event_time").cast(pl.Datetime(rng.choice(["us", "ns"]), feature_zone))
    )
    ttl = rng.choice(
        [None, None, dt.timedelta(0), dt.timedelta(minutes=1), dt.timedelta(minutes=2)]
    )
    return {"labels": label_frame, "features": feature_frame, "keys": keys, "ttl": ttl}


def _in_zone(value: dt.datetime | None, zone: str | None) -> dt.datetime | None:
    if value is None or zone is None or zone == "UTC":
        return value
    from zoneinfo import ZoneInfo

    return value.astimezone(ZoneInfo(zone))


# DuckDB pays ~50 ms per connection, so it gets fewer cases; both see the same first 100.
@pytest.mark.parametrize(("engine", "n_cases"), [("polars", 300), ("duckdb", 100)])
def test_matches_brute_force_oracle_on_random_cases(engine: str, n_cases: int) -> None:
    rng = random.Random(20240301)
    matched = 0
    for case_no in range(n_cases):
        case = _random_case(rng)
        labels, features, keys, ttl = case["labels"], case["features"], case["keys"], case["ttl"]
        got = pit_join(labels, features, keys=keys, ttl=ttl, engine=engine)
        expected, n_matched = _oracle(labels, features, keys, "ts", "event_time", ttl)
        assert got.schema == expected.schema, f"case {case_no}"
        assert got.to_dicts() == expected.to_dicts(), f"case {case_no}: {case}"
        matched += n_matched
    assert matched > n_cases // 3  # the random cases do exercise matches, not only nulls


def _frame(rows: list[dict[str, Any]], **schema: Any) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=schema, orient="row")


def _utc(minutes: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


LABEL_SCHEMA = {"card_id": pl.String, "ts": pl.Datetime("us", "UTC")}
FEATURE_SCHEMA = {"card_id": pl.String, "event_time": pl.Datetime("us", "UTC"), "v": pl.Int64}


@pytest.mark.parametrize("engine", ENGINES)
def test_equal_time_is_not_visible_but_an_earlier_one_is(engine: str) -> None:
    labels = _frame([{"card_id": "a", "ts": _utc(10)}], **LABEL_SCHEMA)
    features = _frame(
        [
            {"card_id": "a", "event_time": _utc(10), "v": 2},
            {"card_id": "a", "event_time": _utc(9), "v": 1},
            {"card_id": "a", "event_time": _utc(11), "v": 3},
        ],
        **FEATURE_SCHEMA,
    )
    assert pit_join(labels, features, engine=engine)["v"].to_list() == [1]


@pytest.mark.parametrize("engine", ENGINES)
def test_order_and_duplicate_label_rows_are_kept(engine: str) -> None:
    labels = _frame(
        [
            {"card_id": "b", "ts": _utc(5), "row": 0},
            {"card_id": "a", "ts": _utc(1), "row": 1},
            {"card_id": "b", "ts": _utc(5), "row": 2},
            {"card_id": "a", "ts": _utc(9), "row": 3},
            {"card_id": "z", "ts": _utc(9), "row": 4},
            {"card_id": "b", "ts": _utc(5), "row": 5},
        ],
        **LABEL_SCHEMA,
        row=pl.Int64,
    )
    features = _frame(
        [
            {"card_id": "a", "event_time": _utc(8), "v": 80},
            {"card_id": "b", "event_time": _utc(4), "v": 40},
            {"card_id": "a", "event_time": _utc(0), "v": 0},
        ],
        **FEATURE_SCHEMA,
    )
    got = pit_join(labels, features, engine=engine)
    assert got.columns == ["card_id", "ts", "row", "v"]
    assert got["row"].to_list() == [0, 1, 2, 3, 4, 5]
    assert got["v"].to_list() == [40, 0, 40, 80, None, 40]


@pytest.mark.parametrize("engine", ENGINES)
def test_ttl_nulls_features_older_than_ttl_only(engine: str) -> None:
    labels = _frame(
        [{"card_id": "a", "ts": _utc(10)}, {"card_id": "b", "ts": _utc(10)}], **LABEL_SCHEMA
    )
    features = _frame(
        [
            {"card_id": "a", "event_time": _utc(5), "v": 1},  # 5 min old: exactly the ttl
            {"card_id": "b", "event_time": _utc(4), "v": 2},  # 6 min old: too old
        ],
        **FEATURE_SCHEMA,
    )
    got = pit_join(labels, features, ttl=dt.timedelta(minutes=5), engine=engine)
    assert got["v"].to_list() == [1, None]


@pytest.mark.parametrize("engine", ENGINES)
def test_multiple_keys_of_mixed_dtypes(engine: str) -> None:
    labels = pl.DataFrame(
        {"card_id": ["a", "a"], "merchant_id": [1, 2], "ts": [_utc(5), _utc(5)]},
        schema_overrides={"ts": pl.Datetime("us", "UTC")},
    )
    features = pl.DataFrame(
        {
            "card_id": ["a", "a", "a"],
            "merchant_id": [1, 2, 2],
            "event_time": [_utc(1), _utc(2), _utc(3)],
            "spend": [10.0, 20.0, 30.0],
        },
        schema_overrides={"event_time": pl.Datetime("us", "UTC")},
    )
    got = pit_join(labels, features, keys=["card_id", "merchant_id"], engine=engine)
    assert got.columns == ["card_id", "merchant_id", "ts", "spend"]
    assert got["spend"].to_list() == [10.0, 30.0]


@pytest.mark.parametrize("engine", ENGINES)
def test_time_units_and_zones_are_compared_as_instants(engine: str) -> None:
    labels = pl.DataFrame({"card_id": ["a"], "ts": [_utc(10)]}).with_columns(
        pl.col("ts").cast(pl.Datetime("ms", "UTC"))
    )
    features = pl.DataFrame(
        {"card_id": ["a", "a"], "event_time": [_utc(10) - dt.timedelta(microseconds=1), _utc(10)]}
    ).with_columns(
        pl.col("event_time").cast(pl.Datetime("ns", "UTC")).dt.convert_time_zone("Asia/Tokyo"),
        v=pl.Series([1, 2]),
    )
    assert pit_join(labels, features, engine=engine)["v"].to_list() == [1]


@pytest.mark.parametrize("engine", ENGINES)
def test_naive_times_on_both_sides_and_dates_work(engine: str) -> None:
    labels = pl.DataFrame({"card_id": ["a", "a"], "ts": [dt.date(2024, 1, 2), dt.date(2024, 1, 3)]})
    features = pl.DataFrame(
        {"card_id": ["a"], "event_time": [dt.datetime(2024, 1, 2, 12)], "v": [7]}
    )
    assert pit_join(labels, features, engine=engine)["v"].to_list() == [None, 7]


@pytest.mark.parametrize("engine", ENGINES)
def test_dates_on_both_sides_work(engine: str) -> None:
    labels = pl.DataFrame({"card_id": ["a", "a"], "ts": [dt.date(2024, 1, 2), dt.date(2024, 1, 9)]})
    features = pl.DataFrame({"card_id": ["a"], "event_time": [dt.date(2024, 1, 1)], "v": [7]})
    got = pit_join(labels, features, ttl=dt.timedelta(days=7), engine=engine)
    assert got["v"].to_list() == [7, None]


def test_same_time_column_name_on_both_sides_and_label_copy_of_feature_time() -> None:
    labels = _frame(
        [{"card_id": "a", "event_time": _utc(5), "ts": _utc(0)}],
        card_id=pl.String,
        event_time=pl.Datetime("us", "UTC"),
        ts=pl.Datetime("us", "UTC"),
    )
    got = pit_join(labels, _one_feature(), label_time="event_time")
    assert got.columns == ["card_id", "event_time", "ts", "v"]
    assert got["v"].to_list() == [5]


@pytest.mark.parametrize("engine", ENGINES)
def test_empty_inputs_keep_the_schema(engine: str) -> None:
    labels = _frame([{"card_id": "a", "ts": _utc(1)}], **LABEL_SCHEMA)
    features = pl.DataFrame(
        schema={
            "card_id": pl.String,
            "event_time": pl.Datetime("us", "UTC"),
            "tags": pl.List(pl.String),
            "kind": pl.Categorical,
        }
    )
    got = pit_join(labels, features, engine=engine)
    assert got.schema == pl.Schema(
        {**LABEL_SCHEMA, "tags": features.schema["tags"], "kind": features.schema["kind"]}
    )
    assert got.row(0) == ("a", _utc(1), None, None)

    no_labels = labels.clear()
    got = pit_join(no_labels, features, engine=engine)
    assert got.height == 0
    assert got.columns == ["card_id", "ts", "tags", "kind"]


@pytest.mark.parametrize("engine", ENGINES)
def test_lazy_and_arrow_inputs_give_the_same_result(engine: str) -> None:
    labels = _frame([{"card_id": "a", "ts": _utc(3)}], **LABEL_SCHEMA)
    features = _frame([{"card_id": "a", "event_time": _utc(2), "v": 5}], **FEATURE_SCHEMA)
    eager = pit_join(labels, features, engine=engine)
    assert eager["v"].to_list() == [5]
    assert pit_join(labels.lazy(), features.lazy(), engine=engine).equals(eager)
    assert pit_join(labels.to_arrow(), features.to_arrow(), engine=engine).equals(eager)


def test_engines_agree_on_a_larger_random_input() -> None:
    rng = random.Random(7)
    n_labels, n_features = 3_000, 20_000
    labels = pl.DataFrame(
        {
            "card_id": [f"c{rng.randrange(300)}" for _ in range(n_labels)],
            "ts": [_utc(rng.randrange(10_000)) for _ in range(n_labels)],
        }
    )
    features = (
        pl.DataFrame(
            {
                "card_id": [f"c{rng.randrange(300)}" for _ in range(n_features)],
                "event_time": [_utc(rng.randrange(10_000)) for _ in range(n_features)],
                "x": [rng.random() for _ in range(n_features)],
            }
        )
        .unique(["card_id", "event_time"])
        .sample(fraction=1.0, shuffle=True, seed=1)
    )
    by_polars = pit_join(labels, features, ttl=dt.timedelta(hours=20), engine="polars")
    by_duckdb = pit_join(labels, features, ttl=dt.timedelta(hours=20), engine="duckdb")
    assert by_polars.equals(by_duckdb)
    assert 0 < by_polars["x"].null_count() < n_labels


# --- errors -------------------------------------------------------------------------------


def _one_label() -> pl.DataFrame:
    return _frame([{"card_id": "a", "ts": _utc(3)}], **LABEL_SCHEMA)


def _one_feature() -> pl.DataFrame:
    return _frame([{"card_id": "a", "event_time": _utc(2), "v": 5}], **FEATURE_SCHEMA)


@pytest.mark.parametrize("engine", ENGINES)
def test_duplicate_feature_rows_are_rejected_naming_one(engine: str) -> None:
    features = _frame(
        [
            {"card_id": "b", "event_time": _utc(1), "v": 1},
            {"card_id": "a", "event_time": _utc(2), "v": 5},
            {"card_id": "b", "event_time": _utc(2), "v": 6},
            {"card_id": "a", "event_time": _utc(2), "v": 7},
        ],
        **FEATURE_SCHEMA,
    )
    with pytest.raises(ValueError, match=r"card_id='a'.*2024-03-01 00:02:00"):
        pit_join(_one_label(), features, engine=engine)


@pytest.mark.parametrize("engine", ENGINES)
def test_duplicates_among_rows_that_can_never_match_are_allowed(engine: str) -> None:
    features = _frame(
        [
            {"card_id": None, "event_time": _utc(1), "v": 1},
            {"card_id": None, "event_time": _utc(1), "v": 2},
            {"card_id": "a", "event_time": _utc(2), "v": 5},
        ],
        **FEATURE_SCHEMA,
    )
    assert pit_join(_one_label(), features, engine=engine)["v"].to_list() == [5]


def test_clashing_feature_columns_are_named() -> None:
    labels = _one_label().with_columns(v=pl.lit(1), w=pl.lit(2))
    features = _one_feature().with_columns(w=pl.lit(3))
    with pytest.raises(ValueError, match=r"\['v', 'w'\]"):
        pit_join(labels, features)


def test_key_dtype_mismatch_names_key_and_dtypes() -> None:
    features = _one_feature().with_columns(pl.col("card_id").cast(pl.Categorical))
    with pytest.raises(TypeError, match=r"'card_id'.*String.*Categorical"):
        pit_join(_one_label(), features)


@pytest.mark.parametrize("side", ["labels", "features"])
def test_missing_key_is_rejected(side: str) -> None:
    labels, features = _one_label(), _one_feature()
    if side == "labels":
        labels = labels.rename({"card_id": "card"})
    else:
        features = features.rename({"card_id": "card"})
    with pytest.raises(ValueError, match=rf"{side} lack column\(s\) \['card_id'\]"):
        pit_join(labels, features)


def test_missing_time_column_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"labels lack column\(s\) \['when'\]"):
        pit_join(_one_label(), _one_feature(), label_time="when")


def test_naive_and_aware_times_are_rejected() -> None:
    features = _one_feature().with_columns(pl.col("event_time").dt.replace_time_zone(None))
    with pytest.raises(ValueError, match="timezone-aware.*timezone-naive"):
        pit_join(_one_label(), features)


@pytest.mark.parametrize("bad", [pl.lit("2024-03-01"), pl.lit(3)])
def test_non_temporal_time_column_is_rejected(bad: pl.Expr) -> None:
    labels = _one_label().with_columns(bad.alias("ts"))
    with pytest.raises(TypeError, match="label_time column has dtype"):
        pit_join(labels, _one_feature())


def test_negative_ttl_is_rejected() -> None:
    with pytest.raises(ValueError, match="ttl must not be negative"):
        pit_join(_one_label(), _one_feature(), ttl=dt.timedelta(seconds=-1))


def test_non_frame_input_is_rejected() -> None:
    with pytest.raises(TypeError, match="labels must be a Polars DataFrame"):
        pit_join(_one_label().to_dicts(), _one_feature())  # type: ignore[arg-type]
