"""Reproducing a registered model: rebuild its dataset version, retrain, compare hashes."""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path

from fti_assets.lib.core.settings import LakeConfig
from fti_assets.lib.features.views import ResolvedView
from fti_assets.lib.registry.model_registry import ModelRegistry
from fti_assets.lib.store.offline import connection
from fti_assets.lib.training.datasets import (
    LabelSpec,
    build_training_frame,
    config_from_manifest,
    frame_sha256,
    load_dataset,
)
from fti_assets.lib.training.train import TrainParams, train_from_dataset


@dataclass(frozen=True)
class ReproduceReport:
    name: str
    version: int
    dataset_version: str
    lake_snapshot: int
    dataset_hash_expected: str
    dataset_hash_rebuilt: str
    model_sha256_expected: str
    model_sha256_rebuilt: str

    @property
    def dataset_matches(self) -> bool:
        return self.dataset_hash_expected == self.dataset_hash_rebuilt

    @property
    def model_matches(self) -> bool:
        return self.model_sha256_expected == self.model_sha256_rebuilt


def train_params_from_registry(params: dict) -> TrainParams:
    """The TrainParams a version was trained with (its registry params hold them and more)."""
    names = {f.name for f in dataclasses.fields(TrainParams)}
    return TrainParams(**{k: v for k, v in params.items() if k in names})


def reproduce(
    registry: ModelRegistry,
    lake: LakeConfig,
    datasets_dir: Path,
    *,
    name: str,
    version: int,
    dataset_name: str,
    view: ResolvedView,
    label: LabelSpec,
) -> ReproduceReport:
    """Rebuild the model's training dataset from the offline store with the recorded config,
    through the feature view it was trained on (``view``: resolved from the registry's copy),
    reading the lake at the snapshot the dataset was built from (so later backfills do not
    change it), retrain with the recorded params, and compare content hash and model sha256."""
    model = registry.get(name, version)
    _, manifest = load_dataset(datasets_dir, dataset_name, model.training_dataset_version)
    snapshot = manifest.get("lake_snapshot")
    if snapshot is None:
        raise ValueError(
            f"dataset {dataset_name} {model.training_dataset_version} records no lake snapshot "
            "(built before the offline store was a DuckLake); it cannot be rebuilt exactly"
        )
    with connection(lake, snapshot=int(snapshot)) as con:
        frame, _ = build_training_frame(con, view, label, config_from_manifest(manifest))
    with tempfile.TemporaryDirectory() as tmp:
        result = train_from_dataset(
            frame, manifest, train_params_from_registry(model.params), Path(tmp) / "artifact"
        )
    return ReproduceReport(
        name=name,
        version=version,
        dataset_version=model.training_dataset_version,
        lake_snapshot=int(snapshot),
        dataset_hash_expected=manifest["content_hash"]["frame_sha256"],
        dataset_hash_rebuilt=frame_sha256(frame),
        model_sha256_expected=model.sha256,
        model_sha256_rebuilt=result.sha256,
    )
