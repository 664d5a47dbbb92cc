"""Online feature vectors and the champion model, for the real-time prediction service.

:class:`FeatureAssembler` builds, for one request, the same feature vector a training dataset
row of a feature view holds (``fti_assets.lib.training.datasets``): the request fields, every
selected group's selected features as ``{group}__{feature}`` plus ``{group}__event_time``
(which stored row was used), then the view's on-demand features, computed by the same function
that fills the training data. Rules, the same as the point-in-time join's:

* a group's row is used only if its ``event_time`` is strictly earlier than the request's
  prediction time. The online store holds only the latest row per entity, so a replayed or
  old request whose entity has a newer row gets that group as missing (reported as ``stale``);
* an entity the group does not hold (a new card, an unknown merchant) gets the group's features
  as ``None`` — what the training data holds for entities without history, and what LightGBM
  routes down its missing-value branches — and is reported in ``unknown_entities``. Never an
  error.

:class:`ChampionModel` holds the :class:`~fti_assets.lib.registry.predictor.Predictor` of a model
alias (e.g. ``champion`` of ``fraud_model``) and the feature view that version was trained on. It
reads the registry's ``aliases.json``, and at most every ``check_interval_s`` it stats that file
(and, given the registry's SQLite file, reads the model's alias-history number there, read-only: WAL
readers never wait for writers); when either changed and the alias names another version, it loads
that version (sha256 checked) and its view, and swaps them in with one attribute assignment, so a
promote or rollback is picked up without a restart — model and features move together. A file that
is behind the registry (a process killed between the registry's commit and the file's rewrite) is
bypassed: the aliases are read from the database until the registry repairs the file. A version that
fails to load leaves the previous one serving and is reported by :meth:`status`.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fti_assets.lib.features.views import ResolvedView, col
from fti_assets.lib.registry.model_registry import (
    ALIAS_FILE,
    CHAMPION,
    load_alias_file,
    read_registry_aliases,
    registry_alias_seq,
)
from fti_assets.lib.registry.predictor import Predictor
from fti_assets.lib.store.group_spec import FeatureGroupSpec
from fti_assets.lib.store.online import NotFound, OnlineRow, OnlineStoreBackend

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AssembledFeatures:
    """The feature vector of one request and what was missing from it."""

    values: dict[str, Any]  # request fields, {group}__{feature}, {group}__event_time, on-demand
    event_times: dict[str, datetime | None]  # group -> event_time of the row used (None: none)
    unknown_entities: list[str]  # "card_id=c_17": an entity some group had no row for
    stale: list[str]  # groups whose row was not strictly earlier than the request
    missing_groups: list[str]  # groups without a usable row (unknown or stale): all None

    @property
    def fallback(self) -> bool:
        """True when a group's features were missing and the model used its missing branches."""
        return bool(self.missing_groups)


class _GroupPlan:
    """Precomputed names for copying one group's row into a vector."""

    __slots__ = ("name", "keys", "single_key", "pairs", "event_col", "nones")

    def __init__(self, spec: FeatureGroupSpec, features: Sequence[str]) -> None:
        if not spec.entity_keys:
            raise ValueError(f"feature group {spec.name!r} has no entity keys to look it up by")
        self.name = spec.name
        self.keys = spec.entity_keys
        self.single_key = len(spec.entity_keys) == 1
        self.pairs = tuple((f, col(spec.name, f)) for f in features)
        self.event_col = col(spec.name, "event_time")
        self.nones: dict[str, None] = dict.fromkeys([c for _, c in self.pairs] + [self.event_col])

    def key_of(self, request: Mapping[str, Any]) -> Any:
        if self.single_key:
            return request[self.keys[0]]
        return {k: request[k] for k in self.keys}

    def entity_text(self, request: Mapping[str, Any]) -> str:
        return ",".join(f"{k}={request[k]}" for k in self.keys)


class FeatureAssembler:
    """Builds the feature vectors of a feature view from an online store, the request's fields
    and the view's on-demand function.

    ``request_fields`` are the request's fields the vector holds (as a training dataset row
    does: e.g. amount, category, lat, lon and the prediction time ``time_field``); a request
    must hold them and every selected group's entity keys.
    """

    def __init__(
        self,
        store: OnlineStoreBackend,
        view: ResolvedView,
        *,
        request_fields: Sequence[str],
        time_field: str,
    ) -> None:
        self.store = store
        self.view = view
        self.groups = list(view.groups)
        self.time_field = time_field
        self.vector_fields = tuple(dict.fromkeys((*request_fields, time_field)))
        self._plans = [
            _GroupPlan(spec, view.view.selection(spec.name).features) for spec in self.groups
        ]
        self._on_demand = view.view.on_demand
        self.feature_names: list[str] = self.names_for(view, self.vector_fields)
        entity_keys = [k for spec in self.groups for k in spec.entity_keys]
        # What a request must hold: the vector's request fields and every group's entity keys.
        self.request_fields: tuple[str, ...] = tuple(
            dict.fromkeys((*self.vector_fields, *entity_keys))
        )

    @staticmethod
    def names_for(view: ResolvedView, request_fields: Sequence[str]) -> list[str]:
        """Every name a vector of ``view`` holds, in vector order."""
        names = list(request_fields)
        for spec in view.groups:
            names.extend(view.group_columns(spec.name))
            names.append(col(spec.name, "event_time"))
        on_demand = view.view.on_demand
        if on_demand is None:
            return names
        missing_inputs = [c for c in on_demand.inputs if c not in names]
        if missing_inputs:
            raise ValueError(
                f"the on-demand features of {view.view.key} need {missing_inputs}, which neither "
                f"the request fields nor the groups {[s.name for s in view.groups]} provide"
            )
        return [*names, *on_demand.names]

    def vector(self, request: Mapping[str, Any]) -> AssembledFeatures:
        """The feature vector of one request (with the fields of :attr:`request_fields`)."""
        self._check_request(request)
        rows = [self.store.get(plan.name, plan.key_of(request)) for plan in self._plans]
        return self._assemble(request, rows)

    def vectors(self, requests: Sequence[Mapping[str, Any]]) -> list[AssembledFeatures]:
        """Vectors of many requests, with one ``get_many`` per group."""
        for request in requests:
            self._check_request(request)
        if not requests:
            return []
        per_group = [
            self.store.get_many(plan.name, [plan.key_of(r) for r in requests])
            for plan in self._plans
        ]
        return [
            self._assemble(request, [rows[i] for rows in per_group])
            for i, request in enumerate(requests)
        ]

    def _check_request(self, request: Mapping[str, Any]) -> None:
        at = request.get(self.time_field)
        if not isinstance(at, datetime) or at.utcoffset() is None:
            raise ValueError(
                f"{self.time_field} must be a timezone-aware datetime, got {at!r}; "
                "a naive time cannot be compared with UTC event times"
            )
        missing = [name for name in self.request_fields if name not in request]
        if missing:
            raise ValueError(f"request lacks field(s) {missing}; it has {sorted(request)}")

    def _assemble(
        self, request: Mapping[str, Any], rows: list[OnlineRow | NotFound]
    ) -> AssembledFeatures:
        at = request[self.time_field]
        values: dict[str, Any] = {name: request[name] for name in self.vector_fields}
        event_times: dict[str, datetime | None] = {}
        unknown: list[str] = []
        stale: list[str] = []
        missing: list[str] = []
        for plan, row in zip(self._plans, rows, strict=True):
            if isinstance(row, NotFound):
                entity = plan.entity_text(request)
                if entity not in unknown:
                    unknown.append(entity)
            elif row.event_time >= at:
                stale.append(plan.name)
            else:
                features = row.features
                for feature, name in plan.pairs:
                    values[name] = features[feature]
                values[plan.event_col] = row.event_time
                event_times[plan.name] = row.event_time
                continue
            values.update(plan.nones)
            event_times[plan.name] = None
            missing.append(plan.name)
        if self._on_demand is not None:
            inputs = {name: values[name] for name in self._on_demand.inputs}
            values.update(self._on_demand.compute_row(inputs))
        return AssembledFeatures(values, event_times, unknown, stale, missing)


# ----------------------------------------------------------------------------------------------
# The champion model
# ----------------------------------------------------------------------------------------------


class ModelUnavailableError(RuntimeError):
    """No model can serve: the alias is unset or its version failed to load."""


@dataclass(frozen=True)
class LoadedModel:
    """A loaded model version and where it came from."""

    name: str
    alias: str
    version: int
    sha256: str
    path: Path
    predictor: Predictor
    loaded_at: datetime
    view: ResolvedView | None = None  # the feature view it was trained on (None: not resolved)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "alias": self.alias,
            "version": self.version,
            "sha256": self.sha256,
            "path": str(self.path),
            "loaded_at": self.loaded_at.isoformat(),
            "feature_view": None if self.view is None else self.view.view.key,
        }


_FileKey = tuple[int, int, int]
_StatKey = tuple[_FileKey | None, int | None]  # (aliases.json stat, the registry's alias seq)
_NOT_READ: _StatKey = ((-1, -1, -1), -1)  # differs from every stat and seq, and from "none"


class ChampionModel:
    """The model an alias points at, reloaded when the alias file (or the registry) changes.

    ``resolve_view``: the feature view a version was trained on (from the registry); the loaded
    model carries it, so the service builds that version's vectors — a promote or a rollback
    moves the model and its feature selection together. ``required_features``: given a view,
    the names the service can build for it; a version whose model needs another feature is
    refused (the previous version keeps serving) instead of failing every request.
    ``registry_path``: the registry's SQLite file, to notice an alias file left behind by a crash
    (None: follow the alias file alone). Thread-safe; :meth:`get` costs a clock read, plus one
    ``os.stat`` (and one read-only SQLite query) every ``check_interval_s``.
    """

    def __init__(
        self,
        models_dir: Path,
        name: str,
        alias: str = CHAMPION,
        *,
        check_interval_s: float = 1.0,
        resolve_view: Callable[[int], ResolvedView] | None = None,
        required_features: Callable[[ResolvedView], Collection[str]] | None = None,
        registry_path: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if check_interval_s < 0:
            raise ValueError(f"check_interval_s must be >= 0, got {check_interval_s}")
        self.models_dir = Path(models_dir)
        self.name = name
        self.alias = alias
        self.check_interval_s = check_interval_s
        self.alias_path = self.models_dir / name / ALIAS_FILE
        self.registry_path = None if registry_path is None else Path(registry_path)
        self._resolve_view = resolve_view
        self._required_features = required_features
        self._clock = clock
        self._lock = threading.Lock()
        self._model: LoadedModel | None = None
        self._stat_key: _StatKey = _NOT_READ
        self._next_check = float("-inf")
        self._alias_entry: dict[str, Any] | None = None
        self._error: str | None = None

    def get(self) -> LoadedModel | None:
        """The model to serve now (None if there is none); picks up alias changes."""
        now = self._clock()
        if now >= self._next_check:
            self._next_check = now + self.check_interval_s
            key = self._stat()
            if key != self._stat_key:
                with self._lock:
                    self._refresh(key)
        return self._model

    def reload(self) -> LoadedModel:
        """Re-read the alias now and load its version (retrying a version that failed)."""
        with self._lock:
            self._next_check = self._clock() + self.check_interval_s
            self._refresh(self._stat(), force=True)
            model = self._model
            if model is None or self._error is not None:
                raise ModelUnavailableError(self._error or "no model loaded")
            return model

    def status(self) -> dict[str, Any]:
        """What is loaded, what the alias names, and the last load error."""
        model, entry = self._model, self._alias_entry
        return {
            "name": self.name,
            "alias": self.alias,
            "alias_file": str(self.alias_path),
            "alias_version": None if entry is None else entry.get("version"),
            "loaded": None if model is None else model.describe(),
            "error": self._error,
        }

    def _stat(self) -> _StatKey:
        try:
            st = os.stat(self.alias_path)
            # aliases.json is replaced by a rename: a new inode even within one mtime tick.
            file_key: _FileKey | None = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            file_key = None
        return file_key, self._registry_seq()

    def _registry_seq(self) -> int | None:
        if self.registry_path is None:
            return None
        try:
            return registry_alias_seq(self.registry_path, self.name)
        except sqlite3.Error as exc:
            logger.warning(
                "cannot read the alias seq of %s from %s (%s); following %s alone",
                self.name,
                self.registry_path,
                exc,
                self.alias_path,
            )
            return None

    def _read_entry(self, registry_seq: int | None) -> dict[str, Any] | None:
        """The alias's entry: from aliases.json, or from the registry when the file is behind."""
        try:
            snapshot = load_alias_file(self.models_dir, self.name)
        except ValueError:
            if registry_seq is None:
                raise
            snapshot = None  # a file of another release: the registry has the aliases
        if self.registry_path is not None and registry_seq is not None:
            if snapshot is None or snapshot.seq != registry_seq:
                stored = read_registry_aliases(self.registry_path, self.models_dir, self.name)
                if stored is not None and stored.seq > 0:
                    logger.warning(
                        "%s is behind the registry (alias seq %s there, %d in %s); serving "
                        "the registry's aliases until the file is rewritten",
                        self.alias_path,
                        None if snapshot is None else snapshot.seq,
                        stored.seq,
                        self.registry_path,
                    )
                snapshot = stored
        return None if snapshot is None else snapshot.aliases.get(self.alias)

    def _refresh(self, key: _StatKey, *, force: bool = False) -> None:
        """Load the version the alias names, if it is not the one loaded (lock held)."""
        if key == self._stat_key and not force:
            return  # another thread refreshed while this one waited for the lock
        self._stat_key = key
        try:
            entry = self._read_entry(key[1])
        except (ValueError, sqlite3.Error) as exc:  # the file is replaced atomically: unlikely
            self._fail(f"cannot read the {self.alias!r} alias of {self.name!r}: {exc}")
            return
        self._alias_entry = entry
        if entry is None:
            self._fail(
                f"model {self.name!r} has no {self.alias!r} alias in {self.alias_path}; "
                "register and promote a model first"
            )
            return
        current = self._model
        if current is not None and (current.version, current.sha256) == (
            entry["version"],
            entry["sha256"],
        ):
            self._error = None
            return
        try:
            model = self._load(entry)
        except Exception as exc:  # noqa: BLE001 - reported by status() and /ready, old model kept
            self._fail(
                f"cannot load model {self.name!r} version {entry.get('version')} "
                f"({self.alias}): {type(exc).__name__}: {exc}"
            )
            return
        self._model = model
        self._error = None
        logger.info(
            "serving model %s version %d (%s, sha256 %s)",
            self.name,
            model.version,
            self.alias,
            model.sha256[:12],
        )

    def _load(self, entry: Mapping[str, Any]) -> LoadedModel:
        path = Path(entry["path"])
        predictor = Predictor.load(path, expected_sha256=entry["sha256"])
        view = None if self._resolve_view is None else self._resolve_view(int(entry["version"]))
        if view is not None and self._required_features is not None:
            available = frozenset(self._required_features(view))
            unknown = [f for f in predictor.feature_names if f not in available]
            if unknown:
                raise ValueError(
                    f"the model needs feature(s) {unknown} that the service does not build "
                    f"for its feature view {view.view.key}"
                )
        return LoadedModel(
            name=self.name,
            alias=self.alias,
            version=int(entry["version"]),
            sha256=predictor.model_sha256,
            path=path,
            predictor=predictor,
            loaded_at=datetime.now(UTC),
            view=view,
        )

    def _fail(self, message: str) -> None:
        if self._model is not None:
            message += f"; still serving version {self._model.version}"
        self._error = message
        logger.error("%s", message)
