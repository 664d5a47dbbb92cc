"""LightGBM hyperparameters, importable without LightGBM (the Dagster definitions use them).

One set of defaults serves the library (:func:`fti_assets.lib.training.train.train_model`), the
model assets' ``dg.Config`` (which takes its defaults from here) and ``fti models
reproduce``. The defaults were chosen on the validation split of the default demo data (never on
the test split): small trees with many rows per leaf and L2 regularisation, since the positive class
is rare.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

ClassWeight = Literal["none", "balanced"]


@dataclass(frozen=True)
class TrainParams:
    num_leaves: int = 15
    learning_rate: float = 0.05
    n_estimators: int = 500
    min_child_samples: int = 100
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.8
    bagging_freq: int = 1
    lambda_l2: float = 5.0
    max_depth: int = -1
    max_bin: int = 255
    early_stopping_rounds: int | None = 50  # None trains exactly n_estimators trees
    seed: int = 42
    num_threads: int = 1
    class_weight: ClassWeight = "none"

    def __post_init__(self) -> None:
        if self.class_weight not in ("none", "balanced"):
            raise ValueError(
                f"class_weight {self.class_weight!r} is not supported; expected 'none' or "
                "'balanced'"
            )
        if self.num_threads < 1:
            raise ValueError(
                f"num_threads must be a fixed positive number for reproducible models; "
                f"got {self.num_threads}"
            )
        if self.n_estimators < 1:
            raise ValueError(f"n_estimators must be at least 1; got {self.n_estimators}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def lightgbm_params(self, n_pos: int, n_neg: int) -> dict[str, Any]:
        """The LightGBM parameter dict (canonical names) for a training set with these counts."""
        params: dict[str, Any] = {
            "objective": "binary",
            "metric": ["average_precision", "binary_logloss"],
            "num_leaves": self.num_leaves,
            "learning_rate": self.learning_rate,
            "min_data_in_leaf": self.min_child_samples,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": self.bagging_freq,
            "lambda_l2": self.lambda_l2,
            "max_depth": self.max_depth,
            "max_bin": self.max_bin,
            "seed": self.seed,
            "bagging_seed": self.seed,
            "feature_fraction_seed": self.seed,
            "data_random_seed": self.seed,
            "num_threads": self.num_threads,
            "deterministic": True,
            "force_row_wise": True,
            "verbosity": -1,
        }
        if self.class_weight == "balanced":
            params["scale_pos_weight"] = n_neg / n_pos
        return params
