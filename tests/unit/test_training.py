from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import polars as pl
import pytest

from fti_assets.lib.registry.predictor import FeatureTransform, Predictor, artifact_sha256
from fti_assets.lib.training import train as training
from fti_assets.lib.training.evaluation import evaluate
from fti_assets.lib.training.train import TrainParams, train_model
from tests.unit.synthetic import CATEGORICAL, NUMERIC, synthetic_frame

FAST = TrainParams(n_estimators=30, early_stopping_rounds=None)


@pytest.fixture(scope="module")
def splits() -> tuple[pl.DataFrame, pl.DataFrame]:
    return synthetic_frame(3000, 0), synthetic_frame(1500, 1)


def _train(splits: tuple[pl.DataFrame, pl.DataFrame], out: Path, params: TrainParams = FAST):
    train, valid = splits
    return train_model(train, valid, "is_fraud", NUMERIC, CATEGORICAL, params, out)


def test_same_data_and_params_give_a_byte_identical_model(
    splits: tuple[pl.DataFrame, pl.DataFrame], tmp_path: Path
) -> None:
    params = TrainParams(n_estimators=60, early_stopping_rounds=10)
    first = _train(splits, tmp_path / "a", params)
    second = _train(splits, tmp_path / "b", params)
    reseeded = _train(splits, tmp_path / "c", TrainParams(n_estimators=60, seed=7))

    assert first.sha256 == second.sha256 == artifact_sha256(tmp_path / "b")
    assert (tmp_path / "a" / "model.txt").read_bytes() == (
        tmp_path / "b" / "model.txt"
    ).read_bytes()
    assert reseeded.sha256 != first.sha256  # the seed really drives bagging


def test_model_is_trained_on_exactly_the_predictor_transform(
    splits: tuple[pl.DataFrame, pl.DataFrame], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[np.ndarray] = []

    class RecordingDataset(lgb.Dataset):
        def __init__(self, data: Any, *args: Any, **kwargs: Any) -> None:
            seen.append(np.array(data, copy=True))
            super().__init__(data, *args, **kwargs)

    monkeypatch.setattr(training.lgb, "Dataset", RecordingDataset)
    result = _train(splits, tmp_path / "m")
    predictor = Predictor.load(result.artifact_dir)

    train_matrix, valid_matrix = seen
    np.testing.assert_array_equal(train_matrix, predictor.transform.transform(splits[0]))
    np.testing.assert_array_equal(valid_matrix, predictor.transform.transform(splits[1]))
    assert predictor.transform == FeatureTransform.fit(splits[0], NUMERIC, CATEGORICAL)


def test_categorical_features_are_declared_to_lightgbm(
    splits: tuple[pl.DataFrame, pl.DataFrame], tmp_path: Path
) -> None:
    result = _train(splits, tmp_path / "m")

    model_text = (result.artifact_dir / "model.txt").read_text()
    indexes = [result.feature_names.index(c) for c in CATEGORICAL]
    assert f"[categorical_feature: {','.join(map(str, indexes))}]" in model_text


def test_early_stopping_keeps_only_the_best_trees(
    splits: tuple[pl.DataFrame, pl.DataFrame], tmp_path: Path
) -> None:
    params = TrainParams(n_estimators=400, learning_rate=0.3, early_stopping_rounds=10)

    result = _train(splits, tmp_path / "m", params)

    assert result.best_iteration < 400
    assert Predictor.load(result.artifact_dir).booster.num_trees() == result.best_iteration


def test_reported_metrics_are_the_saved_model_on_the_validation_split(
    splits: tuple[pl.DataFrame, pl.DataFrame], tmp_path: Path
) -> None:
    result = _train(splits, tmp_path / "m")
    valid = splits[1]

    scores = Predictor.load(result.artifact_dir).predict(valid)

    assert result.metrics == evaluate(valid["is_fraud"].to_numpy(), scores)
    assert result.metrics["pr_auc"] > valid["is_fraud"].mean()  # better than random
    assert result.params["lightgbm"]["deterministic"] is True
    assert result.n_train == 3000 and result.n_valid == 1500


def test_balanced_class_weight_reweights_and_inflates_probabilities(
    splits: tuple[pl.DataFrame, pl.DataFrame], tmp_path: Path
) -> None:
    train = splits[0]
    n_pos = int(train["is_fraud"].sum())
    n_neg = train.height - n_pos

    plain = _train(splits, tmp_path / "plain")
    balanced = _train(
        splits, tmp_path / "balanced", TrainParams(n_estimators=30, class_weight="balanced")
    )

    assert "scale_pos_weight" not in plain.params["lightgbm"]
    assert balanced.params["lightgbm"]["scale_pos_weight"] == pytest.approx(n_neg / n_pos)
    rate = plain.metrics["positive_rate"]
    assert abs(plain.metrics["mean_prediction"] - rate) < 0.03
    assert balanced.metrics["mean_prediction"] > 1.5 * rate
    assert balanced.metrics["brier"] > plain.metrics["brier"]


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ([0, 1, None, 0], "null"),
        ([0, 1, 2, 0], "0/1"),
        ([0, 0, 0, 0], "both classes"),
    ],
)
def test_bad_labels_are_refused(labels: list[int | None], message: str, tmp_path: Path) -> None:
    frame = pl.DataFrame(
        {"amount": [1.0, 2.0, 3.0, 4.0], "channel": ["a", "b", "a", "b"], "y": labels}
    )

    with pytest.raises(ValueError, match=message):
        train_model(frame, frame, "y", ["amount"], ["channel"], FAST, tmp_path)


def test_unknown_class_weight_is_refused() -> None:
    with pytest.raises(ValueError, match="class_weight"):
        TrainParams(class_weight="auto")  # type: ignore[arg-type]
