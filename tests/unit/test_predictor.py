from pathlib import Path

import lightgbm as lgb
import numpy as np
import polars as pl
import pytest

from fti_assets.lib.registry.predictor import (
    FeatureTransform,
    Predictor,
    TamperedModelError,
    artifact_sha256,
)
from fti_assets.lib.training.train import TrainParams, TrainResult, train_model
from tests.unit.synthetic import CATEGORICAL, NUMERIC, synthetic_frame


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    out = tmp_path_factory.mktemp("artifact")
    params = TrainParams(n_estimators=40, early_stopping_rounds=None)
    return train_model(
        synthetic_frame(3000, 0),
        synthetic_frame(1000, 1),
        "is_fraud",
        NUMERIC,
        CATEGORICAL,
        params,
        out,
    )


@pytest.fixture(scope="module")
def predictor(trained: TrainResult) -> Predictor:
    return Predictor.load(trained.artifact_dir, expected_sha256=trained.sha256)


def test_category_maps_come_from_the_training_split_only() -> None:
    train = pl.DataFrame({"x": [1.0, 2.0, 3.0], "c": ["b", "a", None]})
    scored = pl.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "c": ["a", "b", "zzz", None]})

    transform = FeatureTransform.fit(train, ["x"], ["c"])

    assert transform.categorical == {"c": ["a", "b"]}
    assert transform.order == ["x", "c"]
    assert transform.transform(scored)[:, 1].tolist() == [0.0, 1.0, 2.0, 2.0]


def test_transform_survives_json_round_trip(predictor: Predictor) -> None:
    restored = FeatureTransform.from_json(predictor.transform.to_json())

    assert restored == predictor.transform


def test_predict_equals_raw_booster_on_transformed_matrix(
    trained: TrainResult, predictor: Predictor
) -> None:
    frame = synthetic_frame(500, 7)
    raw = lgb.Booster(model_file=str(trained.artifact_dir / "model.txt"))

    expected = raw.predict(predictor.transform.transform(frame))

    np.testing.assert_array_equal(predictor.predict(frame), expected)
    assert ((expected > 0) & (expected < 1)).all()


def test_predict_accepts_pandas_and_arrow(predictor: Predictor) -> None:
    frame = synthetic_frame(200, 8)
    expected = predictor.predict(frame)

    np.testing.assert_array_equal(predictor.predict(frame.to_pandas()), expected)
    np.testing.assert_array_equal(predictor.predict(frame.to_arrow()), expected)


def test_predict_one_equals_predict_for_the_same_row(predictor: Predictor) -> None:
    frame = synthetic_frame(120, 9).with_columns(
        channel=pl.when(pl.col("tx_id") == 3).then(pl.lit("satellite")).otherwise("channel")
    )
    batch = predictor.predict(frame)

    singles = [predictor.predict_one(row) for row in frame.iter_rows(named=True)]

    # rows 0, 37 and 74 have a null amount; 0 and 82 a null category; 3 an unseen channel
    assert frame["amount"].null_count() > 0 and frame["merchant_category"].null_count() > 0
    assert singles == batch.tolist()


def test_missing_feature_column_is_named(predictor: Predictor) -> None:
    frame = synthetic_frame(10, 10)
    row = frame.row(0, named=True)
    del row["amount"]

    with pytest.raises(ValueError, match="channel"):
        predictor.predict(frame.drop("channel"))
    with pytest.raises(ValueError, match="amount"):
        predictor.predict_one(row)


def test_text_in_numeric_feature_is_a_type_error(predictor: Predictor) -> None:
    frame = synthetic_frame(10, 11).with_columns(pl.col("amount").cast(pl.String))
    row = {**frame.row(0, named=True), "amount": "12.5"}

    with pytest.raises(TypeError, match=r"'amount'.*String.*numeric"):
        predictor.predict(frame)
    with pytest.raises(TypeError, match=r"'amount'.*str"):
        predictor.predict_one(row)


def test_number_in_categorical_feature_is_a_type_error(predictor: Predictor) -> None:
    frame = synthetic_frame(10, 12).with_columns(channel=pl.lit(3))
    row = {**synthetic_frame(10, 12).row(0, named=True), "channel": 3}

    with pytest.raises(TypeError, match=r"'channel'.*Int32.*categorical"):
        predictor.predict(frame)
    with pytest.raises(TypeError, match=r"'channel'.*int"):
        predictor.predict_one(row)


def test_unseen_and_null_categories_share_the_unknown_bucket(predictor: Predictor) -> None:
    base = synthetic_frame(1, 13)
    frame = pl.concat([base, base, base]).with_columns(
        channel=pl.Series(["satellite", None, "web"], dtype=pl.String)
    )

    codes = predictor.transform.transform(frame)[:, predictor.feature_names.index("channel")]
    scores = predictor.predict(frame)

    unknown = predictor.transform.unknown_code("channel")
    assert codes.tolist() == [unknown, unknown, predictor.categorical["channel"].index("web")]
    assert scores[0] == scores[1]


def test_extra_columns_and_column_order_do_not_matter(predictor: Predictor) -> None:
    frame = synthetic_frame(100, 14)
    shuffled = frame.select(list(reversed(frame.columns))).with_columns(note=pl.lit("x"))

    np.testing.assert_array_equal(predictor.predict(shuffled), predictor.predict(frame))


def test_null_numeric_is_scored_as_missing(predictor: Predictor) -> None:
    frame = synthetic_frame(1, 15).with_columns(amount=pl.lit(None, dtype=pl.Float64))

    matrix = predictor.transform.transform(frame)

    assert np.isnan(matrix[0, predictor.feature_names.index("amount")])
    assert predictor.predict(frame)[0] == predictor.booster.predict(matrix)[0]


def test_integer_and_boolean_numeric_columns_are_accepted(predictor: Predictor) -> None:
    frame = synthetic_frame(50, 16)
    as_float = frame.with_columns(pl.col("hour", "n_tx_24h").cast(pl.Float64))

    np.testing.assert_array_equal(predictor.predict(frame), predictor.predict(as_float))
    assert predictor.predict_one({**frame.row(0, named=True), "hour": True}) == (
        predictor.predict_one({**frame.row(0, named=True), "hour": 1.0})
    )


def test_load_refuses_an_artifact_with_another_sha256(trained: TrainResult) -> None:
    assert artifact_sha256(trained.artifact_dir) == trained.sha256

    with pytest.raises(TamperedModelError, match=trained.sha256):
        Predictor.load(trained.artifact_dir, expected_sha256="0" * 64)


def test_sha256_covers_the_transforms(trained: TrainResult, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "model.txt").write_bytes((trained.artifact_dir / "model.txt").read_bytes())
    transforms = (trained.artifact_dir / "transforms.json").read_text()
    (copy / "transforms.json").write_text(transforms.replace('"games"', '"gamez"'))

    assert artifact_sha256(copy) != trained.sha256
    with pytest.raises(TamperedModelError):
        Predictor.load(copy, expected_sha256=trained.sha256)


def test_missing_artifact_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "model.txt").write_text("tree\n")

    with pytest.raises(FileNotFoundError, match="transforms.json"):
        Predictor.load(tmp_path)
