"""Feature views: named, versioned selections of features that models are trained on and served
with (what Hopsworks calls a feature view and Feast a feature service).

A view selects columns of feature groups (at a group version, with an optional time-to-live),
the request fields a model may read, and the on-demand features it needs; models trained on it
fit its model-dependent transforms (feature order, category codes of its categorical columns)
on their training split. Training datasets are built from a view version; the dataset manifest
and the registry record it, and batch scoring and the online service resolve a model's features
through the version it was trained on — so promoting or rolling back a model moves its
features with it.

A view version is immutable: its fingerprint (a hash of everything it selects) is recorded in a
lock file next to the declarations, and a view whose selection changed without a new version is
refused (:func:`check_lock`). The registry keeps the definition of every version a registered
model uses, so an old version stays resolvable after its declaration left the code.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import polars as pl

from fti_assets.lib.store.group_spec import FeatureGroupSpec

KINDS = ("numeric", "categorical")
# Feature dtypes a model reads, and as what; dates and timestamps are bookkeeping, not inputs.
_INPUT_KINDS = {
    "int64": "numeric",
    "float64": "numeric",
    "bool": "numeric",
    "string": "categorical",
}
MODEL_DEPENDENT_TRANSFORMS = (
    "feature order: the view's input columns, in its order",
    "category codes of each categorical input, fitted on the training split (unseen -> unknown)",
)


def col(group: str, feature: str) -> str:
    """Name of a feature-group column in datasets and feature vectors."""
    return f"{group}__{feature}"


class FeatureViewError(ValueError):
    """A feature view is inconsistent, unknown, or changed without a new version."""


@dataclass(frozen=True)
class OnDemandFeature:
    name: str
    dtype: str  # "float64" or "int64"
    description: str


@dataclass(frozen=True)
class OnDemandSet:
    """Features computed from the request and stored features at request time, by ONE function
    used to build training data, to score batches and by the online service.

    ``compute_frame`` adds the features as columns of a frame holding ``inputs``;
    ``compute_row`` returns them for one request's inputs (a mapping).
    """

    name: str
    features: tuple[OnDemandFeature, ...]
    inputs: tuple[str, ...]
    compute_frame: Callable[[pl.DataFrame], pl.DataFrame]
    compute_row: Callable[[Mapping[str, Any]], dict[str, Any]]

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]


@dataclass(frozen=True)
class FeatureSelection:
    """Columns of one feature group, at a group version, with an optional time-to-live."""

    group: str
    version: int
    features: tuple[str, ...]
    ttl: timedelta | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "version": self.version,
            "features": list(self.features),
            "ttl_seconds": self.ttl.total_seconds() if self.ttl is not None else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSelection:
        ttl = data.get("ttl_seconds")
        return cls(
            group=data["group"],
            version=int(data["version"]),
            features=tuple(data["features"]),
            ttl=timedelta(seconds=ttl) if ttl is not None else None,
        )


@dataclass(frozen=True)
class FeatureView:
    name: str
    version: int
    description: str
    selections: tuple[FeatureSelection, ...]
    request_features: Mapping[str, str] = field(default_factory=dict)  # field -> kind
    on_demand: OnDemandSet | None = None
    owners: tuple[str, ...] = ("team:ml-platform",)

    def __post_init__(self) -> None:
        if self.version < 1:
            raise FeatureViewError(f"feature view {self.name!r}: version must be >= 1")
        groups = [s.group for s in self.selections]
        if len(set(groups)) != len(groups) or not groups:
            raise FeatureViewError(
                f"feature view {self.name!r} v{self.version} must select each group once; "
                f"got {groups}"
            )
        bad = {k: v for k, v in self.request_features.items() if v not in KINDS}
        if bad:
            raise FeatureViewError(f"feature view {self.name!r}: request feature kinds {bad}")

    @property
    def key(self) -> str:
        return f"{self.name}@v{self.version}"

    def selection(self, group: str) -> FeatureSelection:
        for s in self.selections:
            if s.group == group:
                return s
        raise KeyError(f"feature view {self.key} does not select group {group!r}")

    def ttls(self) -> dict[str, timedelta]:
        return {s.group: s.ttl for s in self.selections if s.ttl is not None}

    def to_dict(self) -> dict[str, Any]:
        """The definition, as JSON (what the lock and the registry store)."""
        return {
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "owners": list(self.owners),
            "selections": [s.to_dict() for s in self.selections],
            "request_features": dict(sorted(self.request_features.items())),
            "on_demand": {
                "set": self.on_demand.name,
                "features": self.on_demand.names,
                "inputs": list(self.on_demand.inputs),
            }
            if self.on_demand is not None
            else None,
            "model_dependent_transforms": list(MODEL_DEPENDENT_TRANSFORMS),
        }

    def fingerprint(self) -> str:
        """sha256 of what the view selects (not its description or owners)."""
        data = self.to_dict()
        selected = {k: data[k] for k in ("selections", "request_features", "on_demand")}
        return hashlib.sha256(json.dumps(selected, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class ResolvedView:
    """A view with the feature group specs it selects from: what datasets, batch scoring and
    the service need to read and name its features."""

    view: FeatureView
    groups: tuple[FeatureGroupSpec, ...]

    def group(self, name: str) -> FeatureGroupSpec:
        for spec in self.groups:
            if spec.name == name:
                return spec
        raise KeyError(f"feature view {self.view.key} has no group {name!r}")

    def input_columns(self) -> tuple[list[str], list[str]]:
        """(model inputs in view order, the categorical subset): request features, every
        selected group feature of a numeric, boolean or string dtype, the on-demand features."""
        kinds: dict[str, str] = dict(self.view.request_features)
        for selection in self.view.selections:
            spec = self.group(selection.group)
            for name in selection.features:
                kind = _INPUT_KINDS.get(spec.feature(name).dtype)
                if kind is not None:
                    kinds[col(spec.name, name)] = kind
        if self.view.on_demand is not None:
            for feature in self.view.on_demand.features:
                kinds[feature.name] = "numeric"
        return list(kinds), [c for c, kind in kinds.items() if kind == "categorical"]

    def group_columns(self, group: str) -> list[str]:
        """The columns of ``group`` a dataset or vector holds: its selected features (plus
        ``{group}__event_time``, which row was used)."""
        return [col(group, f) for f in self.view.selection(group).features]


def resolve(view: FeatureView, catalog: Mapping[str, FeatureGroupSpec]) -> ResolvedView:
    """The view with its group specs; refuses a group, version or feature the code lacks."""
    specs = []
    for selection in view.selections:
        spec = catalog.get(selection.group)
        if spec is None:
            raise FeatureViewError(
                f"feature view {view.key} selects unknown group {selection.group!r}; "
                f"known: {sorted(catalog)}"
            )
        if spec.version != selection.version:
            raise FeatureViewError(
                f"feature view {view.key} selects {selection.group} v{selection.version}, but "
                f"the code defines v{spec.version}; keep that group version or bump the view"
            )
        missing = [f for f in selection.features if f not in spec.feature_names]
        if missing:
            raise FeatureViewError(
                f"feature view {view.key}: group {selection.group} has no feature(s) {missing}"
            )
        specs.append(spec)
    return ResolvedView(view, tuple(specs))


def view_from_dict(data: Mapping[str, Any], on_demand: Mapping[str, OnDemandSet]) -> FeatureView:
    """A view from its stored definition (the registry's copy); its on-demand set by name."""
    od = data.get("on_demand")
    if od is not None and od["set"] not in on_demand:
        raise FeatureViewError(
            f"feature view {data['name']} v{data['version']} needs on-demand set {od['set']!r}, "
            f"which the code does not define (known: {sorted(on_demand)})"
        )
    return FeatureView(
        name=data["name"],
        version=int(data["version"]),
        description=data.get("description", ""),
        owners=tuple(data.get("owners", ())),
        selections=tuple(FeatureSelection.from_dict(s) for s in data["selections"]),
        request_features=dict(data.get("request_features", {})),
        on_demand=on_demand[od["set"]] if od is not None else None,
    )


# ------------------------------------------------------------------------------------- lock


def check_lock(views: Iterable[FeatureView], lock_path: Path) -> list[FeatureView]:
    """Refuse a declared view whose selection changed without a new version.

    Returns the views the lock does not know yet (new versions: add them with
    :func:`write_lock`, i.e. `fti feature-views lock`).
    """
    locked = _read_lock(lock_path)
    new = []
    for view in views:
        known = locked.get(view.key)
        if known is None:
            new.append(view)
        elif known != view.fingerprint():
            raise FeatureViewError(
                f"feature view {view.name} v{view.version} changed its selection (fingerprint "
                f"{view.fingerprint()[:12]}, locked {known[:12]}) without a new version: "
                f"declare v{view.version + 1} for the new selection (old versions stay "
                f"resolvable for the models trained on them), then `fti feature-views lock`"
            )
    return new


def write_lock(views: Sequence[FeatureView], lock_path: Path) -> list[str]:
    """Add the new view versions to the lock (never changes a locked one); returns their keys."""
    new = check_lock(views, lock_path)
    locked = _read_lock(lock_path)
    for view in new:
        locked[view.key] = view.fingerprint()
    text = json.dumps(dict(sorted(locked.items())), indent=2) + "\n"
    tmp = lock_path.with_name(lock_path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(lock_path)
    return [view.key for view in new]


def _read_lock(lock_path: Path) -> dict[str, str]:
    if not lock_path.exists():
        return {}
    return json.loads(lock_path.read_text(encoding="utf-8"))
