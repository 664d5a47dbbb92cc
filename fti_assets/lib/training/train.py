"""Deterministic LightGBM training that writes a model artifact (see :mod:`predictor`).

Same data + same :class:`TrainParams` give a byte-identical ``model.txt``: every seed is fixed,
``deterministic=True``, ``force_row_wise=True`` (no timing-based row/col-wise choice) and a fixed
``num_threads``.

Class imbalance (``class_weight``):

* ``"none"`` (default) — no reweighting. Fraud is rare, but boosting on the log loss still
  ranks well, and the probabilities stay calibrated: the Brier score, the calibration table, the
  comparison with the generator's true probabilities and any probability threshold all read the
  score as a probability.
* ``"balanced"`` — ``scale_pos_weight = n_neg / n_pos``. This can help recall on very rare
  classes, but inflates the predicted odds by about that factor, so scores are no longer
  probabilities; the validation Brier score in :class:`TrainResult` shows the cost.

Early stopping watches average precision on the validation split (rank-based, suited to a rare
positive class); only the best iteration's trees are saved.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import polars as pl

from fti_assets.lib.registry.predictor import FeatureTransform, Predictor, write_artifact
from fti_assets.lib.training.evaluation import evaluate
from fti_assets.lib.training.params import ClassWeight, TrainParams

__all__ = ["ClassWeight", "TrainParams", "TrainResult", "train_from_dataset", "train_model"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    artifact_dir: Path
    sha256: str
    best_iteration: int
    metrics: dict[str, Any]  # validation metrics from evaluation.evaluate, scored by Predictor
    params: dict[str, Any]  # TrainParams fields + the resolved LightGBM params
    feature_names: list[str]
    n_train: int
    n_valid: int


def _labels(frame: pl.DataFrame, label: str, split: str) -> np.ndarray:
    if label not in frame.columns:
        raise ValueError(f"{split} split has no label column {label!r}; it has {frame.columns}")
    column = frame.get_column(label)
    if column.null_count():
        raise ValueError(f"label {label!r} has {column.null_count()} null(s) in the {split} split")
    values = column.cast(pl.Float64).to_numpy()
    bad = np.setdiff1d(np.unique(values), [0.0, 1.0])
    if bad.size:
        raise ValueError(f"label {label!r} in the {split} split must be 0/1; got {bad[:5]}")
    return values


def train_model(
    train: pl.DataFrame,
    valid: pl.DataFrame,
    label: str,
    numeric: list[str],
    categorical: list[str],
    params: TrainParams,
    out_dir: Path,
) -> TrainResult:
    """Fit transforms on ``train``, train with early stopping on ``valid``, write the artifact."""
    if train.height == 0 or valid.height == 0:
        raise ValueError(f"empty split: train has {train.height} rows, valid {valid.height}")
    y_train, y_valid = _labels(train, label, "train"), _labels(valid, label, "valid")
    n_pos = int(y_train.sum())
    n_neg = int(y_train.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        raise ValueError(
            f"train split needs both classes; got {n_pos} positive and {n_neg} negative rows"
        )
    if label in numeric or label in categorical:
        raise ValueError(f"label {label!r} is also listed as a feature")

    transform = FeatureTransform.fit(train, numeric, categorical)
    lgb_params = params.lightgbm_params(n_pos=n_pos, n_neg=n_neg)
    categorical_idx = [transform.order.index(c) for c in transform.categorical]
    train_set = lgb.Dataset(
        transform.transform(train),
        label=y_train,
        feature_name=transform.order,
        categorical_feature=categorical_idx,
        free_raw_data=True,
    )
    valid_set = lgb.Dataset(
        transform.transform(valid),
        label=y_valid,
        reference=train_set,
        feature_name=transform.order,
        categorical_feature=categorical_idx,
        free_raw_data=True,
    )
    callbacks = []
    if params.early_stopping_rounds:
        callbacks.append(
            lgb.early_stopping(params.early_stopping_rounds, first_metric_only=True, verbose=False)
        )
    booster = lgb.train(
        lgb_params,
        train_set,
        num_boost_round=params.n_estimators,
        valid_sets=[valid_set],
        valid_names=["valid"],
        callbacks=callbacks,
    )
    best_iteration = booster.best_iteration or booster.current_iteration()
    sha = write_artifact(booster, transform, out_dir)

    # Score the validation split through the saved artifact: the metrics describe what ships.
    predictor = Predictor.load(out_dir, expected_sha256=sha)
    metrics = evaluate(y_valid, predictor.predict(valid))
    logger.info(
        "trained %d trees on %d rows (%d positive); valid pr_auc=%s brier=%.5f; sha256=%s",
        best_iteration,
        train.height,
        n_pos,
        metrics["pr_auc"],
        metrics["brier"],
        sha,
    )
    return TrainResult(
        artifact_dir=Path(out_dir),
        sha256=sha,
        best_iteration=best_iteration,
        metrics=metrics,
        params={**params.to_dict(), "lightgbm": lgb_params},
        feature_names=list(transform.order),
        n_train=train.height,
        n_valid=valid.height,
    )


def train_from_dataset(
    frame: pl.DataFrame, manifest: dict[str, Any], params: TrainParams, out_dir: Path
) -> TrainResult:
    """Train on a training dataset version: its train split, early stopping on its valid split,
    and the label and feature columns its manifest lists."""
    split = manifest.get("split_column", "split")
    return train_model(
        frame.filter(pl.col(split) == "train"),
        frame.filter(pl.col(split) == "valid"),
        label=manifest["label_column"],
        numeric=manifest["numeric_columns"],
        categorical=manifest["categorical_columns"],
        params=params,
        out_dir=out_dir,
    )
