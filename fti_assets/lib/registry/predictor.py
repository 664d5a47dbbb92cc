"""The one way any code scores a model: model-dependent transforms + LightGBM, as one artifact.

A model artifact is a directory holding two files:

* ``model.txt`` — the LightGBM booster in its text format (never pickle);
* ``transforms.json`` — the :class:`FeatureTransform` fitted on the training split: the feature
  order, which features are numeric, and for each categorical feature its known categories
  (category ``i`` of the list is encoded as code ``i``; anything else — an unseen category or a
  null — is the *unknown* bucket, code ``len(categories)``).

Training, batch inference, the HTTP service and evaluation all go through :class:`Predictor`, so
the matrix a model sees is built by the same code everywhere. LightGBM itself accepts a matrix
with missing, extra or mistyped columns without complaint, so the checks live here:

* a missing feature column raises :class:`ValueError` naming it;
* extra columns are ignored (a scoring frame may carry ids, timestamps, labels…);
* a wrong dtype (text in a numeric feature, a number in a categorical one) raises
  :class:`TypeError` naming the column, the dtype received and the dtype expected;
* a null or unseen category goes to the unknown bucket; a null number becomes NaN, which
  LightGBM routes as missing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

if TYPE_CHECKING:
    import lightgbm as lgb
    import pandas as pd
    import pyarrow as pa

logger = logging.getLogger(__name__)

MODEL_FILE = "model.txt"
TRANSFORMS_FILE = "transforms.json"
ARTIFACT_FILES = (MODEL_FILE, TRANSFORMS_FILE)
TRANSFORMS_FORMAT_VERSION = 1

_CATEGORICAL_DTYPES = (pl.String, pl.Categorical, pl.Enum, pl.Null)
_NUMERIC_SCALARS = (int, float, np.number, np.bool_)  # bool is an int


class TamperedModelError(ValueError):
    """The artifact on disk does not have the sha256 it was registered with."""


def _check_numeric_dtype(column: str, dtype: pl.DataType) -> None:
    if dtype.is_numeric() or dtype == pl.Boolean or dtype == pl.Null:
        return
    raise TypeError(
        f"feature column {column!r} has dtype {dtype}; expected a numeric dtype "
        "(int, float or bool; nulls allowed)"
    )


def _check_categorical_dtype(column: str, dtype: pl.DataType) -> None:
    if isinstance(dtype, _CATEGORICAL_DTYPES) or dtype in _CATEGORICAL_DTYPES:
        return
    raise TypeError(
        f"feature column {column!r} has dtype {dtype}; expected a categorical dtype "
        "(String, Categorical or Enum; nulls allowed)"
    )


def _require_columns(frame: pl.DataFrame, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} is missing feature column(s) {missing}; it has {frame.columns}")


@dataclass(frozen=True)
class FeatureTransform:
    """Model-dependent transformations, fitted on the training split and saved with the model."""

    numeric: list[str]
    categorical: dict[str, list[str]]  # column -> known categories (code = index)
    order: list[str]

    @classmethod
    def fit(
        cls, train: pl.DataFrame, numeric: list[str], categorical: list[str]
    ) -> FeatureTransform:
        """Learn the category maps from ``train`` (the training split only, never validation)."""
        features = [*numeric, *categorical]
        if not features:
            raise ValueError("no features given: numeric and categorical are both empty")
        duplicated = sorted({c for c in features if features.count(c) > 1})
        if duplicated:
            raise ValueError(f"feature(s) {duplicated} listed twice; each must appear once")
        _require_columns(train, features, "training frame")
        for column in numeric:
            _check_numeric_dtype(column, train.schema[column])
        categories: dict[str, list[str]] = {}
        for column in categorical:
            _check_categorical_dtype(column, train.schema[column])
            values = train.get_column(column).cast(pl.String).drop_nulls().unique()
            categories[column] = sorted(values.to_list())
        return cls(numeric=list(numeric), categorical=categories, order=features)

    def unknown_code(self, column: str) -> int:
        """Code of the bucket for null and unseen categories of ``column``."""
        return len(self.categorical[column])

    def transform(self, frame: pl.DataFrame) -> np.ndarray:
        """The float64 matrix (rows × ``order``) the model is trained on and scores."""
        _require_columns(frame, self.order, "scoring frame")
        schema = frame.schema
        matrix = np.empty((frame.height, len(self.order)), dtype=np.float64)
        for j, column in enumerate(self.order):
            series = frame.get_column(column)
            if column in self.categorical:
                _check_categorical_dtype(column, schema[column])
                known = self.categorical[column]
                codes = series.cast(pl.String).replace_strict(
                    known,
                    list(range(len(known))),
                    default=len(known),
                    return_dtype=pl.Float64,
                )
                matrix[:, j] = codes.to_numpy()
            else:
                _check_numeric_dtype(column, schema[column])
                matrix[:, j] = series.cast(pl.Float64).to_numpy()
        return matrix

    def to_json(self) -> str:
        payload = {
            "format_version": TRANSFORMS_FORMAT_VERSION,
            "order": self.order,
            "numeric": self.numeric,
            "categorical": self.categorical,
        }
        return json.dumps(payload, indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> FeatureTransform:
        payload = json.loads(text)
        version = payload.get("format_version")
        if version != TRANSFORMS_FORMAT_VERSION:
            raise ValueError(
                f"transforms.json has format_version {version!r}; "
                f"expected {TRANSFORMS_FORMAT_VERSION}"
            )
        transform = cls(
            numeric=list(payload["numeric"]),
            categorical={k: list(v) for k, v in payload["categorical"].items()},
            order=list(payload["order"]),
        )
        if sorted(transform.order) != sorted([*transform.numeric, *transform.categorical]):
            raise ValueError(
                f"transforms.json order {transform.order} does not list exactly the numeric "
                f"{transform.numeric} and categorical {list(transform.categorical)} features"
            )
        return transform


def _sha256_of(contents: Mapping[str, bytes]) -> str:
    """Hash file names, lengths and bytes in a fixed order, so the digest cannot be ambiguous."""
    digest = hashlib.sha256()
    for name in ARTIFACT_FILES:
        data = contents[name]
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


def _read_artifact(artifact_dir: Path) -> dict[str, bytes]:
    missing = [name for name in ARTIFACT_FILES if not (artifact_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"model artifact {artifact_dir} lacks {missing}; expected files {list(ARTIFACT_FILES)}"
        )
    return {name: (artifact_dir / name).read_bytes() for name in ARTIFACT_FILES}


def artifact_sha256(artifact_dir: Path) -> str:
    """sha256 over ``model.txt`` and ``transforms.json`` of an artifact directory."""
    return _sha256_of(_read_artifact(Path(artifact_dir)))


def write_artifact(booster: lgb.Booster, transform: FeatureTransform, artifact_dir: Path) -> str:
    """Write ``model.txt`` + ``transforms.json`` into ``artifact_dir``; returns the sha256.

    Only the best iteration's trees are saved, so scoring needs no ``num_iteration``.
    """
    if booster.feature_name() != transform.order:
        raise ValueError(
            f"booster features {booster.feature_name()} differ from transform order "
            f"{transform.order}"
        )
    artifact_dir = Path(artifact_dir)
    artifact_dir.mkdir(parents=True, exist_ok=True)
    best = booster.best_iteration if booster.best_iteration > 0 else None
    contents = {
        MODEL_FILE: booster.model_to_string(num_iteration=best).encode(),
        TRANSFORMS_FILE: transform.to_json().encode(),
    }
    for name, data in contents.items():
        tmp = artifact_dir / f".{name}.tmp"
        tmp.write_bytes(data)
        tmp.replace(artifact_dir / name)
    return _sha256_of(contents)


def _as_polars(frame: pl.DataFrame | pd.DataFrame | pa.Table) -> pl.DataFrame:
    if isinstance(frame, pl.DataFrame):
        return frame
    # pandas and pyarrow are looked up, not imported: an object of theirs implies they are loaded.
    pandas, pyarrow = sys.modules.get("pandas"), sys.modules.get("pyarrow")
    if pandas is not None and isinstance(frame, pandas.DataFrame):
        return pl.from_pandas(frame)
    if pyarrow is not None and isinstance(frame, pyarrow.Table):
        converted = pl.from_arrow(frame)
        assert isinstance(converted, pl.DataFrame)  # a Table always converts to a DataFrame
        return converted
    raise TypeError(
        f"cannot score a {type(frame).__name__}; expected a polars or pandas DataFrame "
        "or a pyarrow Table"
    )


class Predictor:
    """A loaded model artifact: validates and encodes inputs, returns the positive class's
    probabilities."""

    def __init__(
        self,
        booster: lgb.Booster,
        transform: FeatureTransform,
        model_sha256: str,
        artifact_dir: Path | None = None,
        num_threads: int = 0,
    ) -> None:
        """``num_threads`` is for batch :meth:`predict` (0 = LightGBM's default, all cores)."""
        if booster.feature_name() != transform.order:
            raise ValueError(
                f"booster features {booster.feature_name()} differ from transform order "
                f"{transform.order}; the artifact is inconsistent"
            )
        self.booster = booster
        self.transform = transform
        self.model_sha256 = model_sha256
        self.artifact_dir = artifact_dir
        self._batch_params = {"num_threads": num_threads} if num_threads > 0 else {}
        self.feature_names: list[str] = list(transform.order)
        self.categorical: dict[str, list[str]] = transform.categorical
        # Single-row plan per feature: (column, index, category codes or None if numeric, unknown).
        self._row_plan: list[tuple[str, int, dict[str, int] | None, int]] = [
            (
                column,
                j,
                {c: i for i, c in enumerate(transform.categorical[column])}
                if column in transform.categorical
                else None,
                len(transform.categorical.get(column, ())),
            )
            for j, column in enumerate(transform.order)
        ]

    @classmethod
    def load(
        cls, artifact_dir: Path, expected_sha256: str | None = None, num_threads: int = 0
    ) -> Predictor:
        """Load an artifact directory; with ``expected_sha256`` refuse bytes that differ."""
        artifact_dir = Path(artifact_dir)
        contents = _read_artifact(artifact_dir)
        sha = _sha256_of(contents)
        if expected_sha256 is not None and sha != expected_sha256:
            raise TamperedModelError(
                f"model artifact {artifact_dir} has sha256 {sha}; expected {expected_sha256} "
                "(the files changed after registration)"
            )
        transform = FeatureTransform.from_json(contents[TRANSFORMS_FILE].decode())
        # Imported here: lightgbm pulls in scikit-learn, scipy and pandas (seconds), which code
        # that only hashes or copies artifacts (the registry, its CLI) should not pay for.
        import lightgbm as lgb

        booster = lgb.Booster(model_str=contents[MODEL_FILE].decode())
        return cls(booster, transform, sha, artifact_dir, num_threads)

    def predict(self, frame: pl.DataFrame | pd.DataFrame | pa.Table) -> np.ndarray:
        """Probabilities for every row of ``frame`` (extra columns are ignored)."""
        matrix = self.transform.transform(_as_polars(frame))
        return self.booster.predict(matrix, **self._batch_params)

    def predict_one(self, row: Mapping[str, Any]) -> float:
        """Probability for one row given as a mapping; no DataFrame is built (HTTP fast path)."""
        x = np.empty((1, len(self._row_plan)), dtype=np.float64)
        out = x[0]
        try:
            for column, j, codes, unknown in self._row_plan:
                value = row[column]
                if codes is None:
                    out[j] = _numeric_value(column, value)
                else:
                    out[j] = _category_code(column, value, codes, unknown)
        except KeyError:
            missing = [c for c in self.feature_names if c not in row]
            raise ValueError(f"row is missing feature(s) {missing}; it has {sorted(row)}") from None
        # One row cannot be split across threads; a single thread skips OpenMP start-up costs.
        return float(self.booster.predict(x, num_threads=1)[0])


def _numeric_value(column: str, value: Any) -> float:
    if value is None:
        return math.nan
    if isinstance(value, _NUMERIC_SCALARS):
        return float(value)
    raise TypeError(
        f"feature {column!r} got {type(value).__name__} {value!r}; expected a number "
        "(int, float or bool) or None"
    )


def _category_code(column: str, value: Any, codes: dict[str, int], unknown: int) -> int:
    if isinstance(value, str):
        return codes.get(value, unknown)
    # pandas rows carry NaN for a missing string, so NaN counts as null here.
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return unknown
    raise TypeError(
        f"feature {column!r} got {type(value).__name__} {value!r}; expected a string "
        "category or None"
    )
