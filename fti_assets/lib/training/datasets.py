"""Point-in-time-correct, immutable, versioned training datasets, built from a feature view.

Building (:func:`build_training_frame`), for a :class:`LabelSpec` (how examples and their labels
come from raw data: declared per model in fti_assets/specs) and a resolved feature view:

* **Examples.** The label spec's rows whose prediction time is in ``[start, end)``: ``start`` is
  midnight UTC of the first day with data plus ``warmup_days`` (trailing windows are not filled
  before), ``end`` is ``cutoff - label_maturity_days - horizon`` (newer examples may still get a
  label). Each carries its label as known at ``cutoff`` and label metadata (never features).
* **Features.** For each group the view selects, the group's table is read (its key, event time
  and the selected columns, only rows older than the newest prediction time), the features
  renamed ``{group}__{feature}`` plus ``{group}__event_time`` (which feature row was used), and
  attached with :func:`~fti_assets.lib.features.pit.pit_join`: the latest row strictly earlier
  than the prediction time (within the view's TTL). Then the view's on-demand features, computed
  by the same function the service calls (:mod:`fti_assets.lib.features.vectors`).
* **Split.** By prediction time: the oldest rows train, then valid, then test. Boundaries are
  instants (rows at the same instant share a split) recorded in the manifest.

Every table is read through ONE connection, which the caller pins to one lake snapshot; the
snapshot is recorded in the manifest, so the dataset can be rebuilt exactly later.

Storing (:func:`write_dataset`): ``datasets_dir/<name>/v0001/{data.parquet, manifest.json}``.
A version is written into a hidden temporary folder and renamed into place in one step, so a
reader never sees half a version; its files are then read-only. A new build always gets a new
version number, never overwrites one: if a concurrent writer took the number first, the next
one is used.

Two content hashes are recorded: ``parquet_sha256`` (the file's bytes, checked again on load)
and ``frame_sha256``, which depends only on the rows and the schema, not on Parquet metadata or
compression: sha256 over the column names and dtypes followed by Polars ``hash_rows(seed=0)`` of
every row in dataset order. Polars guarantees ``hash_rows`` only within one Polars version, so
the manifest records that version next to the hash.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from fti_assets.lib.core.provenance import git_code_version
from fti_assets.lib.features.vectors import join_features
from fti_assets.lib.features.views import ResolvedView, col
from fti_assets.lib.store.group_spec import FeatureGroupSpec
from fti_assets.lib.store.offline import current_snapshot, table_exists
from fti_assets.lib.training.reference_stats import reference_statistics

logger = logging.getLogger(__name__)

SPLIT = "split"
SPLITS = ("train", "valid", "test")
DATA_FILE = "data.parquet"
MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = 2
FRAME_HASH_METHOD = (
    "sha256 over 'name:dtype' of every column (newline-separated) followed by the little-endian "
    "uint64 bytes of polars DataFrame.hash_rows(seed=0) of every row in dataset order"
)
_VERSION_DIR = re.compile(r"^v(\d{4,})$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_READ_ONLY = 0o444
_MAX_VERSION_ATTEMPTS = 1000


@dataclass(frozen=True)
class LabelSpec:
    """How a model's examples and labels come from raw data (declared per model in specs).

    ``build(con, start, end, cutoff)`` returns one row per example with prediction time in
    ``[start, end)``, ordered by (time_column, id_columns): the ``id_columns`` (which must include
    every entity key of the view's groups), ``time_column`` (UTC), the ``request_columns`` (what
    a scoring request carries), ``column`` (0/1, the label as known at ``cutoff``) and the
    ``metadata_columns`` (never features). ``first_day(con)`` is the first day with data and
    ``default_cutoff(con)`` the newest instant whose labels have all landed.
    """

    column: str
    time_column: str
    id_columns: tuple[str, ...]
    request_columns: tuple[str, ...]
    metadata_columns: tuple[str, ...]
    horizon: timedelta  # the label looks this far past the prediction time
    rule: str  # in words, for the manifest
    sources: tuple[str, ...]  # offline-store tables the labels are read from
    build: Callable[[duckdb.DuckDBPyConnection, datetime, datetime, datetime], pl.DataFrame]
    first_day: Callable[[duckdb.DuckDBPyConnection], date]
    default_cutoff: Callable[[duckdb.DuckDBPyConnection], datetime]

    def describe(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "time_column": self.time_column,
            "id_columns": list(self.id_columns),
            "request_columns": list(self.request_columns),
            "metadata_columns": list(self.metadata_columns),
            "horizon_days": self.horizon / timedelta(days=1),
            "rule": self.rule,
            "sources": list(self.sources),
        }


@dataclass(frozen=True)
class DatasetConfig:
    name: str
    # Labels as known at this instant (UTC-aware). None: the label spec's default cutoff (the
    # end of the last day for which its sources have all landed).
    cutoff: datetime | None = None
    # Examples newer than cutoff - maturity - horizon are left out: their labels may not have
    # arrived.
    label_maturity_days: int = 21
    # The first days are left out: trailing windows are not filled yet.
    warmup_days: int = 7
    valid_fraction: float = 0.15
    test_fraction: float = 0.15

    def __post_init__(self) -> None:
        _check_name(self.name)
        if self.cutoff is not None and self.cutoff.utcoffset() is None:
            raise ValueError(f"cutoff={self.cutoff!r} is naive; expected a timezone-aware datetime")
        for what, days in (
            ("label_maturity_days", self.label_maturity_days),
            ("warmup_days", self.warmup_days),
        ):
            if days < 0:
                raise ValueError(f"{what} must be >= 0, got {days}")
        fractions = (self.valid_fraction, self.test_fraction)
        if min(fractions) < 0 or sum(fractions) >= 1:
            raise ValueError(
                f"valid_fraction={self.valid_fraction}, test_fraction={self.test_fraction}: "
                "expected both >= 0 and their sum < 1 (train needs some rows)"
            )


@dataclass(frozen=True)
class BuildInfo:
    """What a build did: enough to describe the dataset in its manifest."""

    name: str
    cutoff: datetime
    start: datetime  # first prediction time included (inclusive)
    end: datetime  # exclusive: cutoff - label maturity - horizon
    label_maturity_days: int
    warmup_days: int
    boundaries: dict[str, datetime]  # train_start, valid_start, test_start, end
    rows: dict[str, int]  # total and per split
    positives: dict[str, int]  # total and per split
    feature_groups: dict[str, dict[str, Any]]  # name -> version, table, entity keys, ...
    feature_view: dict[str, Any]  # name, version, fingerprint, definition
    label_source: dict[str, Any] = field(default_factory=dict)
    build_config: dict[str, Any] = field(default_factory=dict)  # DatasetConfig, to rebuild it
    # The offline-store snapshot every table was read at (the build reads one pinned snapshot):
    # rebuilding from it gives the same rows even after later backfills changed the tables.
    lake_snapshot: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "build_config": self.build_config,
            "feature_view": self.feature_view,
            "label": {
                **self.label_source,
                "cutoff": _iso(self.cutoff),
                "maturity_days": self.label_maturity_days,
            },
            "warmup_days": self.warmup_days,
            "time_range": {"start": _iso(self.start), "end": _iso(self.end)},
            "split": {
                "column": SPLIT,
                "by": self.label_source.get("time_column"),
                "rule": "train = [train_start, valid_start), valid = [valid_start, test_start), "
                "test = [test_start, end)",
                "boundaries": {k: _iso(v) for k, v in self.boundaries.items()},
            },
            "rows": dict(self.rows),
            "positives": dict(self.positives),
            "feature_groups": {
                name: {**group, "lake_snapshot": self.lake_snapshot}
                for name, group in self.feature_groups.items()
            },
            "lake_snapshot": self.lake_snapshot,
        }


@dataclass(frozen=True)
class DatasetVersion:
    name: str
    version: str  # "v0001"
    path: Path  # the version folder
    manifest: dict[str, Any]

    @property
    def number(self) -> int:
        return _version_number(self.version)

    @property
    def data_path(self) -> Path:
        return self.path / DATA_FILE

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST_FILE


# --------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------


def build_training_frame(
    con: duckdb.DuckDBPyConnection,
    view: ResolvedView,
    label: LabelSpec,
    config: DatasetConfig,
) -> tuple[pl.DataFrame, BuildInfo]:
    """Examples with their labels as known at the cutoff, the view's features joined point in
    time, its on-demand features, and the split.

    ``con`` should be pinned to one lake snapshot (``connect(lake, snapshot=n)``) so that every
    table is read as of the same commit; the snapshot it saw is recorded in the BuildInfo.
    """
    snapshot = current_snapshot(con)
    for spec in view.groups:
        if not table_exists(con, spec.table):
            raise ValueError(
                f"feature group {spec.name!r} v{spec.version}: table {spec.table!r} is not in the "
                "offline store; materialize the group first"
            )
    cutoff = _utc(config.cutoff) if config.cutoff is not None else label.default_cutoff(con)
    start = _midnight(label.first_day(con)) + timedelta(days=config.warmup_days)
    end = cutoff - timedelta(days=config.label_maturity_days) - label.horizon
    if end <= start:
        raise ValueError(
            f"no label window: start {start} (first day + {config.warmup_days} warm-up days) is "
            f"not before end {end} (cutoff {cutoff} - {config.label_maturity_days} maturity "
            f"days - a {label.horizon} horizon)"
        )
    frame = label.build(con, start, end, cutoff)
    if frame.is_empty():
        raise ValueError(f"no examples with {start} <= {label.time_column} < {end}")
    _check_label_frame(frame, label)
    label_columns = frame.select(label.column, *label.metadata_columns)
    frame = join_features(
        con, frame.drop(label.column, *label.metadata_columns), view, label.time_column
    )
    frame = frame.hstack(label_columns.get_columns())
    boundaries = _split_boundaries(frame.get_column(label.time_column), start, end, config)
    frame = frame.with_columns(_split_expr(label.time_column, boundaries))
    ttl = view.view.ttls()
    info = BuildInfo(
        name=config.name,
        cutoff=cutoff,
        start=start,
        end=end,
        label_maturity_days=config.label_maturity_days,
        warmup_days=config.warmup_days,
        boundaries=boundaries,
        rows=_counts(frame, label.column, positives=False),
        positives=_counts(frame, label.column, positives=True),
        feature_groups={
            spec.name: _group_info(spec, view, ttl.get(spec.name)) for spec in view.groups
        },
        feature_view={
            "name": view.view.name,
            "version": view.view.version,
            "fingerprint": view.view.fingerprint(),
            "definition": view.view.to_dict(),
        },
        lake_snapshot=snapshot,
        build_config={
            "name": config.name,
            "cutoff": _iso(cutoff),
            "label_maturity_days": config.label_maturity_days,
            "warmup_days": config.warmup_days,
            "valid_fraction": config.valid_fraction,
            "test_fraction": config.test_fraction,
        },
        label_source={**label.describe(), "lake_snapshot": snapshot},
    )
    logger.info(
        "built %s: %d rows (%s), %d positives, cutoff %s",
        config.name,
        frame.height,
        info.rows,
        info.positives["total"],
        cutoff,
    )
    return frame, info


def _check_label_frame(frame: pl.DataFrame, label: LabelSpec) -> None:
    expected = [
        *label.id_columns, label.time_column, *label.request_columns, label.column,
        *label.metadata_columns,
    ]  # fmt: skip
    missing = [c for c in expected if c not in frame.columns]
    if missing:
        raise ValueError(
            f"the label spec's rows lack column(s) {missing}; they have {frame.columns}"
        )


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _iso(value: datetime) -> str:
    return _utc(value).isoformat()


def _split_boundaries(
    times: pl.Series, start: datetime, end: datetime, config: DatasetConfig
) -> dict[str, datetime]:
    """Instants cutting the (time-sorted) rows into train / valid / test by row fractions."""
    n = times.len()
    n_test = round(n * config.test_fraction)
    n_train = round(n * (1.0 - config.valid_fraction - config.test_fraction))
    n_train = min(n_train, n - n_test)

    def at(index: int) -> datetime:
        return end if index >= n else _utc(times[index])

    return {
        "train_start": start,
        "valid_start": at(n_train),
        "test_start": at(n - n_test),
        "end": end,
    }


def _split_expr(time_column: str, boundaries: Mapping[str, datetime]) -> pl.Expr:
    t = pl.col(time_column)
    return (
        pl.when(t < boundaries["valid_start"])
        .then(pl.lit("train"))
        .when(t < boundaries["test_start"])
        .then(pl.lit("valid"))
        .otherwise(pl.lit("test"))
        .alias(SPLIT)
    )


def _counts(frame: pl.DataFrame, label: str, *, positives: bool) -> dict[str, int]:
    value = pl.col(label).cast(pl.Int64).sum() if positives else pl.len()
    per_split = dict(frame.group_by(SPLIT).agg(value.alias("n")).rows())
    counts = {s: int(per_split.get(s, 0)) for s in SPLITS}
    return {"total": sum(counts.values()), **counts}


def _group_info(
    spec: FeatureGroupSpec, view: ResolvedView, ttl: timedelta | None
) -> dict[str, Any]:
    return {
        "version": spec.version,
        "table": spec.table,
        "entity_keys": list(spec.entity_keys),
        "event_time": spec.event_time,
        "event_time_column": col(spec.name, "event_time"),
        "features": view.group_columns(spec.name),
        "ttl_seconds": ttl.total_seconds() if ttl is not None else None,
    }


# --------------------------------------------------------------------------------------------
# Writing, listing, loading
# --------------------------------------------------------------------------------------------


def write_dataset(
    frame: pl.DataFrame,
    info: BuildInfo,
    datasets_dir: Path,
    *,
    feature_columns: list[str],
    categorical_columns: list[str],
    label: str,
    code_version: str | None = None,
    run_id: str | None = None,
) -> DatasetVersion:
    """Write ``frame`` as the next version of ``info.name``; never overwrites a version.

    ``feature_columns`` are all model inputs; ``categorical_columns`` is the subset of them that
    is categorical (the rest are numeric). Reference statistics are computed on the train split.
    ``code_version`` defaults to the git sha of the project. ``run_id`` (the Dagster run that
    built it) lets later steps of the same run find this version: :func:`dataset_of_run`.
    """
    _check_name(info.name)
    numeric = _check_columns(frame, feature_columns, categorical_columns, label)
    train = frame.filter(pl.col(SPLIT) == "train")
    if train.is_empty():
        raise ValueError("the train split is empty; reference statistics need training rows")
    name_dir = Path(datasets_dir) / info.name
    name_dir.mkdir(parents=True, exist_ok=True)
    tmp_dir = name_dir / f".tmp-{uuid.uuid4().hex}"
    tmp_dir.mkdir()
    try:
        data_path = tmp_dir / DATA_FILE
        frame.write_parquet(data_path, compression="zstd", statistics=True)
        os.chmod(data_path, _READ_ONLY)
        rows = _counts(frame, label, positives=False)
        positives = _counts(frame, label, positives=True)
        manifest = {
            **info.to_dict(),
            # Counted on the frame written (it may have been filtered after the build).
            "rows": rows,
            "positives": positives,
            "format_version": MANIFEST_FORMAT,
            "feature_columns": list(feature_columns),
            "numeric_columns": numeric,
            "categorical_columns": list(categorical_columns),
            "label_column": label,
            "split_column": SPLIT,
            "columns": {c: str(dtype) for c, dtype in frame.schema.items()},
            "content_hash": {
                "parquet_sha256": file_sha256(data_path),
                "frame_sha256": frame_sha256(frame),
                "frame_hash_method": FRAME_HASH_METHOD,
                "polars_version": pl.__version__,
            },
            "reference_split": "train",
            "reference_statistics": reference_statistics(train, numeric, categorical_columns),
            "label_positive_rate": {
                s: (positives[s] / rows[s] if rows[s] else None) for s in SPLITS
            },
            "code_version": code_version or git_code_version(),
            "run_id": run_id,
        }
        version = _publish(tmp_dir, name_dir, manifest)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    logger.info(
        "wrote dataset %s %s (%d rows) to %s",
        info.name,
        version.version,
        frame.height,
        version.path,
    )
    return version


def _check_columns(
    frame: pl.DataFrame, feature_columns: list[str], categorical_columns: list[str], label: str
) -> list[str]:
    """Validate the column lists against ``frame``; return the numeric feature columns."""
    required = [*feature_columns, label, SPLIT]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks column(s) {missing}; it has {frame.columns}")
    duplicated = sorted({c for c in feature_columns if feature_columns.count(c) > 1})
    if duplicated:
        raise ValueError(f"feature column(s) {duplicated} are listed more than once")
    if label in feature_columns:
        raise ValueError(f"label {label!r} must not be among the feature columns")
    stray = [c for c in categorical_columns if c not in feature_columns]
    if stray:
        raise ValueError(
            f"categorical column(s) {stray} are not in feature_columns; expected a subset"
        )
    bad_splits = set(frame.get_column(SPLIT).unique().to_list()) - set(SPLITS)
    if bad_splits:
        raise ValueError(
            f"split column has value(s) {sorted(bad_splits, key=str)}; expected {SPLITS}"
        )
    return [c for c in feature_columns if c not in categorical_columns]


def _publish(tmp_dir: Path, name_dir: Path, manifest: dict[str, Any]) -> DatasetVersion:
    """Rename ``tmp_dir`` to the next free version folder, writing the manifest for it."""
    number = _latest_number(name_dir) + 1
    for _ in range(_MAX_VERSION_ATTEMPTS):
        version = f"v{number:04d}"
        payload = {**manifest, "version": version, "created_at": _iso(datetime.now(UTC))}
        _write_manifest(tmp_dir / MANIFEST_FILE, payload)
        target = name_dir / version
        try:
            # A version folder is never empty, so the rename fails if the number is taken.
            os.rename(tmp_dir, target)
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            logger.info("dataset version %s was taken by another writer; trying the next", target)
            number += 1
            continue
        return DatasetVersion(name=payload["name"], version=version, path=target, manifest=payload)
    raise RuntimeError(
        f"could not find a free version under {name_dir} after {_MAX_VERSION_ATTEMPTS} attempts"
    )


def _write_manifest(path: Path, payload: dict[str, Any]) -> None:
    text = json.dumps(payload, indent=2, sort_keys=True, allow_nan=False) + "\n"
    scratch = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    scratch.write_text(text, encoding="utf-8")
    os.chmod(scratch, _READ_ONLY)
    os.replace(scratch, path)  # replaces a previous attempt's read-only manifest too


def _latest_number(name_dir: Path) -> int:
    return max((_version_number(p.name) for p in _version_dirs(name_dir)), default=0)


def _version_dirs(name_dir: Path) -> list[Path]:
    if not name_dir.is_dir():
        return []
    return [p for p in name_dir.iterdir() if p.is_dir() and _VERSION_DIR.match(p.name)]


def _version_number(version: str) -> int:
    match = _VERSION_DIR.match(version)
    if match is None:
        raise ValueError(f"dataset version {version!r} is not of the form 'v0001'")
    return int(match.group(1))


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise ValueError(
            f"dataset name {name!r} is not valid; expected letters, digits, '_', '.', '-' "
            "(starting with a letter or digit, at most 128 characters)"
        )


def config_from_manifest(manifest: Mapping[str, Any]) -> DatasetConfig:
    """The DatasetConfig that built a dataset version (to rebuild and compare it)."""
    built = manifest["build_config"]
    return DatasetConfig(
        name=built["name"],
        cutoff=datetime.fromisoformat(built["cutoff"]),
        label_maturity_days=built["label_maturity_days"],
        warmup_days=built["warmup_days"],
        valid_fraction=built["valid_fraction"],
        test_fraction=built["test_fraction"],
    )


def list_datasets(datasets_dir: Path, name: str) -> list[DatasetVersion]:
    """Every complete version of dataset ``name``, oldest first (empty if there is none)."""
    _check_name(name)
    name_dir = Path(datasets_dir) / name
    versions = []
    for path in sorted(_version_dirs(name_dir), key=lambda p: _version_number(p.name)):
        manifest = json.loads((path / MANIFEST_FILE).read_text(encoding="utf-8"))
        versions.append(DatasetVersion(name=name, version=path.name, path=path, manifest=manifest))
    return versions


def dataset_of_run(datasets_dir: Path, name: str, run_id: str) -> DatasetVersion | None:
    """The version of dataset ``name`` that the run ``run_id`` built, if it built one."""
    matches = [v for v in list_datasets(datasets_dir, name) if v.manifest.get("run_id") == run_id]
    return matches[-1] if matches else None


def lake_snapshots_in_use(datasets_dir: Path) -> set[int]:
    """The offline-store snapshots that some version of some dataset was built from: lake
    maintenance must keep them readable, or the dataset could no longer be rebuilt."""
    used: set[int] = set()
    root = Path(datasets_dir)
    if not root.is_dir():
        return used
    for name_dir in root.iterdir():
        if not name_dir.is_dir() or not _NAME.match(name_dir.name):
            continue
        for version in list_datasets(root, name_dir.name):
            snapshot = version.manifest.get("lake_snapshot")
            if snapshot is not None:
                used.add(int(snapshot))
    return used


def _normalise_version(version: str | int) -> str:
    text = str(version)
    if text.isdigit():
        return f"v{int(text):04d}"
    _version_number(text)
    return text


def load_dataset(
    datasets_dir: Path,
    name: str,
    version: str | int | None = None,
    *,
    verify: bool = True,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The frame and manifest of a version (``"v0003"``, ``"3"`` or 3); the latest if None.

    With ``verify`` the Parquet file's sha256 is checked against the manifest first.
    """
    versions = list_datasets(datasets_dir, name)
    if not versions:
        raise LookupError(f"no versions of dataset {name!r} under {datasets_dir}")
    if version is None:
        chosen = versions[-1]
    else:
        wanted = _normalise_version(version)
        matches = [v for v in versions if v.number == _version_number(wanted)]
        if not matches:
            raise LookupError(
                f"dataset {name!r} has no version {version!r}; it has "
                f"{[v.version for v in versions]}"
            )
        chosen = matches[0]
    if verify:
        expected = chosen.manifest["content_hash"]["parquet_sha256"]
        actual = file_sha256(chosen.data_path)
        if actual != expected:
            raise ValueError(
                f"{chosen.data_path} has sha256 {actual} but its manifest records {expected}: "
                "the file was changed after it was written"
            )
    return pl.read_parquet(chosen.data_path), chosen.manifest


# --------------------------------------------------------------------------------------------
# Hashes
# --------------------------------------------------------------------------------------------


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def frame_sha256(frame: pl.DataFrame) -> str:
    """Content hash of the rows and schema only (see :data:`FRAME_HASH_METHOD`)."""
    digest = hashlib.sha256()
    schema = "\n".join(f"{name}:{dtype}" for name, dtype in frame.schema.items())
    digest.update(schema.encode("utf-8"))
    if frame.height:
        digest.update(frame.hash_rows(seed=0).to_numpy().astype("<u8").tobytes())
    return digest.hexdigest()
