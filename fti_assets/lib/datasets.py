"""Point-in-time-correct, immutable, versioned training datasets.

Building (:func:`build_training_frame`):

* **Labels.** Every accepted transaction with ``start <= transaction_time < end``, where ``start``
  is midnight UTC of the first transaction day plus ``warmup_days`` (trailing windows are not
  filled before) and ``end`` is ``cutoff - label_maturity_days`` (newer transactions may still
  get a label). ``is_fraud`` is the value of the transaction's LATEST label in
  ``raw_fraud_labels`` reported at or before ``cutoff`` (a later "not fraud" overrides an earlier
  "fraud" and vice versa; a fraud and a non-fraud label at the same instant count as fraud); no
  label by then means 0. The label's report time is kept as ``label__reported_at``: label
  metadata, never a feature.
* **Features.** The prediction time is the transaction time. Each feature group's table is read
  (only its key, event time and feature columns, only rows older than the newest label), its
  features renamed ``{group}__{feature}`` plus ``{group}__event_time`` (which feature row was
  used), and attached with :func:`~fti_assets.lib.pit.pit_join`: the latest row strictly earlier
  than the transaction. Then the on-demand features (:func:`compute_on_demand`).
* **Split.** By transaction time: the oldest rows train, then valid, then test. Boundaries are
  instants (rows at the same instant share a split) recorded in the manifest.

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from fti_assets.lib.feature_groups import FeatureGroupSpec
from fti_assets.lib.offline_store import current_snapshot, quote_ident, read_frame, table_exists
from fti_assets.lib.on_demand import ON_DEMAND_FEATURES, col, compute_on_demand
from fti_assets.lib.pit import pit_join
from fti_assets.lib.reference_stats import reference_statistics
from fti_assets.lib.registry import git_code_version

logger = logging.getLogger(__name__)

DEFAULT_NAME = "fraud_training_dataset"
TRANSACTIONS_TABLE = "raw_transactions"
LABELS_TABLE = "raw_fraud_labels"
LABEL = "is_fraud"
LABEL_TIME = "transaction_time"
LABEL_REPORTED_AT = "label__reported_at"
SPLIT = "split"
SPLITS = ("train", "valid", "test")
ID_COLUMNS = ("transaction_id", "card_id", "merchant_id", LABEL_TIME)
REQUEST_FIELDS = ("amount", "category", "channel", "lat", "lon")
# Request fields a model may use as features; raw coordinates are left to the distances.
REQUEST_FEATURES = {"amount": "numeric", "category": "categorical", "channel": "categorical"}
DEFAULT_FEATURE_GROUPS = (
    "card_transaction_features",
    "card_daily_features",
    "merchant_daily_features",
    "card_profile_features",
    "merchant_profile_features",
)
DATA_FILE = "data.parquet"
MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = 1
FRAME_HASH_METHOD = (
    "sha256 over 'name:dtype' of every column (newline-separated) followed by the little-endian "
    "uint64 bytes of polars DataFrame.hash_rows(seed=0) of every row in dataset order"
)
LABEL_RULE = (
    "is_fraud = value of the latest label per transaction reported at or before the cutoff "
    "(ties: fraud wins); 0 when no label was reported by then"
)
_VERSION_DIR = re.compile(r"^v(\d{4,})$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_READ_ONLY = 0o444
_MAX_VERSION_ATTEMPTS = 1000
_UTC_US = pl.Datetime("us", "UTC")
_FEATURE_DTYPES = {
    "int64": "numeric",
    "float64": "numeric",
    "bool": "numeric",
    "string": "categorical",
}


@dataclass(frozen=True)
class DatasetConfig:
    name: str = DEFAULT_NAME
    # Labels as known at this instant (UTC-aware). None: the end of the last day for which both
    # transactions and labels have landed.
    cutoff: datetime | None = None
    # Transactions newer than cutoff - maturity are left out: their labels may not have arrived.
    label_maturity_days: int = 21
    # The first days are left out: trailing windows are not filled yet.
    warmup_days: int = 7
    valid_fraction: float = 0.15
    test_fraction: float = 0.15
    feature_groups: tuple[str, ...] = DEFAULT_FEATURE_GROUPS
    ttl: dict[str, timedelta] | None = None  # optional per-group time-to-live

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
        if not self.feature_groups or len(set(self.feature_groups)) != len(self.feature_groups):
            raise ValueError(
                f"feature_groups must name at least one group, each once; got {self.feature_groups}"
            )
        unknown = sorted(set(self.ttl or {}) - set(self.feature_groups))
        if unknown:
            raise ValueError(
                f"ttl names group(s) {unknown} that are not in feature_groups {self.feature_groups}"
            )


@dataclass(frozen=True)
class BuildInfo:
    """What a build did: enough to describe the dataset in its manifest."""

    name: str
    cutoff: datetime
    start: datetime  # first transaction time included (inclusive)
    end: datetime  # exclusive: cutoff - label maturity
    label_maturity_days: int
    warmup_days: int
    boundaries: dict[str, datetime]  # train_start, valid_start, test_start, end
    rows: dict[str, int]  # total and per split
    positives: dict[str, int]  # total and per split
    feature_groups: dict[str, dict[str, Any]]  # name -> version, table, entity keys, ...
    label_source: dict[str, Any] = field(default_factory=dict)
    build_config: dict[str, Any] = field(default_factory=dict)  # DatasetConfig, to rebuild it
    # The offline-store snapshot every table was read at (the build reads one pinned snapshot):
    # rebuilding from it gives the same rows even after later backfills changed the tables.
    lake_snapshot: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "build_config": self.build_config,
            "label": {
                **self.label_source,
                "cutoff": _iso(self.cutoff),
                "maturity_days": self.label_maturity_days,
            },
            "warmup_days": self.warmup_days,
            "time_range": {"start": _iso(self.start), "end": _iso(self.end)},
            "split": {
                "column": SPLIT,
                "by": LABEL_TIME,
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
    con: duckdb.DuckDBPyConnection, groups: Sequence[FeatureGroupSpec], config: DatasetConfig
) -> tuple[pl.DataFrame, BuildInfo]:
    """Labels as known at the cutoff, PIT-joined features, on-demand features and the split.

    ``groups`` are the available specs; ``config.feature_groups`` picks (and orders) the ones
    joined. Rows come out ordered by (transaction_time, transaction_id). ``con`` should be pinned
    to one lake snapshot (``connect(lake, snapshot=n)``) so that every table is read as of the
    same commit; the snapshot it saw is recorded in the BuildInfo.
    """
    snapshot = current_snapshot(con)
    specs = _select_groups(groups, config.feature_groups)
    for spec in specs:
        if not table_exists(con, spec.table):
            raise ValueError(
                f"feature group {spec.name!r} v{spec.version}: table {spec.table!r} is not in the "
                "offline store; materialize the group first"
            )
    cutoff = _utc(config.cutoff) if config.cutoff is not None else default_cutoff(con)
    start = _midnight(_first_transaction_day(con)) + timedelta(days=config.warmup_days)
    end = cutoff - timedelta(days=config.label_maturity_days)
    if end <= start:
        raise ValueError(
            f"no label window: start {start} (first day + {config.warmup_days} warm-up days) is "
            f"not before end {end} (cutoff {cutoff} - {config.label_maturity_days} maturity days)"
        )
    frame = _labels(con, start, end, cutoff)
    if frame.is_empty():
        raise ValueError(f"no transactions with {start} <= transaction_time < {end}")
    label_columns = frame.select(LABEL, LABEL_REPORTED_AT)
    ttl = config.ttl or {}
    frame = join_features(con, frame.drop(LABEL, LABEL_REPORTED_AT), specs, ttl)
    frame = frame.hstack(label_columns.get_columns())
    boundaries = _split_boundaries(frame.get_column(LABEL_TIME), start, end, config)
    frame = frame.with_columns(_split_expr(boundaries))
    info = BuildInfo(
        name=config.name,
        cutoff=cutoff,
        start=start,
        end=end,
        label_maturity_days=config.label_maturity_days,
        warmup_days=config.warmup_days,
        boundaries=boundaries,
        rows=_counts(frame, positives=False),
        positives=_counts(frame, positives=True),
        feature_groups={spec.name: _group_info(spec, ttl.get(spec.name)) for spec in specs},
        lake_snapshot=snapshot,
        build_config={
            "name": config.name,
            "cutoff": _iso(cutoff),
            "label_maturity_days": config.label_maturity_days,
            "warmup_days": config.warmup_days,
            "valid_fraction": config.valid_fraction,
            "test_fraction": config.test_fraction,
            "feature_groups": list(config.feature_groups),
            "ttl_seconds": {k: v.total_seconds() for k, v in ttl.items()},
        },
        label_source={
            "column": LABEL,
            "table": LABELS_TABLE,
            "transactions_table": TRANSACTIONS_TABLE,
            "label_time": LABEL_TIME,
            "rule": LABEL_RULE,
            "metadata_columns": [LABEL_REPORTED_AT],
            "lake_snapshot": snapshot,
        },
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


def join_features(
    con: duckdb.DuckDBPyConnection,
    transactions: pl.DataFrame,
    specs: Sequence[FeatureGroupSpec],
    ttl: Mapping[str, timedelta] | None = None,
) -> pl.DataFrame:
    """The transactions with every group's features as of (strictly before) their
    transaction_time, then the on-demand features: the feature vector the model sees.

    Training datasets and batch inference both build their vectors here, and the online
    service computes the same on-demand features with the same function.
    """
    ttl = ttl or {}
    if transactions.is_empty():
        raise ValueError("no transactions to join features to")
    max_time = transactions.get_column(LABEL_TIME).max()
    min_time = transactions.get_column(LABEL_TIME).min()
    frame = transactions
    for spec in specs:
        features = _read_group(con, spec, min_time, max_time, ttl.get(spec.name))
        frame = pit_join(
            frame,
            features,
            keys=spec.entity_keys,
            label_time=LABEL_TIME,
            feature_time=spec.event_time,
            ttl=ttl.get(spec.name),
        )
    return compute_on_demand(frame)


def _select_groups(
    groups: Sequence[FeatureGroupSpec], names: Sequence[str]
) -> list[FeatureGroupSpec]:
    by_name = {spec.name: spec for spec in groups}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ValueError(
            f"feature group(s) {unknown} are not among the given specs {sorted(by_name)}"
        )
    return [by_name[n] for n in names]


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _iso(value: datetime) -> str:
    return _utc(value).isoformat()


def _first_transaction_day(con: duckdb.DuckDBPyConnection) -> date:
    _require_table(con, TRANSACTIONS_TABLE)
    sql = f"select min(timezone('UTC', transaction_time))::date from {TRANSACTIONS_TABLE}"
    day = con.execute(sql).fetchall()[0][0]
    if day is None:
        raise ValueError(f"{TRANSACTIONS_TABLE} is empty: there are no transactions to label")
    return day


def default_cutoff(con: duckdb.DuckDBPyConnection) -> datetime:
    """Midnight UTC after the last landing day for which BOTH transactions and labels landed.

    Taking the earlier of the two last days keeps the promise "labels as known at the cutoff"
    when label ingestion lags behind transactions.
    """
    last_days = []
    for table in (TRANSACTIONS_TABLE, LABELS_TABLE):
        _require_table(con, table)
        day = con.execute(f"select max(landing_date) from {table}").fetchall()[0][0]
        if day is None:
            raise ValueError(
                f"{table} has no landed rows, so there is no default cutoff; pass "
                "DatasetConfig(cutoff=...) explicitly"
            )
        last_days.append(day)
    return _midnight(min(last_days) + timedelta(days=1))


def _require_table(con: duckdb.DuckDBPyConnection, table: str) -> None:
    if not table_exists(con, table):
        raise ValueError(f"table {table!r} is not in the offline store; ingest it first")


def _labels(
    con: duckdb.DuckDBPyConnection, start: datetime, end: datetime, cutoff: datetime
) -> pl.DataFrame:
    _require_table(con, LABELS_TABLE)
    columns = ", ".join(f"t.{quote_ident(c)}" for c in (*ID_COLUMNS, *REQUEST_FIELDS))
    sql = f"""
        with eligible as (
            select {columns}
            from {TRANSACTIONS_TABLE} as t
            where t.transaction_time >= ? and t.transaction_time < ?
        ),
        latest as (
            select l.transaction_id, l.is_fraud, l.reported_at
            from {LABELS_TABLE} as l
            semi join eligible as e on e.transaction_id = l.transaction_id
            where l.reported_at <= ?
            qualify row_number() over (
                partition by l.transaction_id order by l.reported_at desc, l.is_fraud desc
            ) = 1
        )
        select e.*,
               cast(coalesce(l.is_fraud, 0) as tinyint) as {LABEL},
               l.reported_at as {LABEL_REPORTED_AT}
        from eligible as e
        left join latest as l on l.transaction_id = e.transaction_id
        order by e.transaction_time, e.transaction_id
    """
    frame = read_frame(con, sql, [start, end, cutoff])
    return frame.with_columns(_as_utc(LABEL_TIME), _as_utc(LABEL_REPORTED_AT))


def _as_utc(column: str) -> pl.Expr:
    """The column as Datetime("us", "UTC") whatever the connection's session time zone."""
    return pl.col(column).dt.convert_time_zone("UTC").cast(_UTC_US)


def _read_group(
    con: duckdb.DuckDBPyConnection,
    spec: FeatureGroupSpec,
    min_label_time: datetime,
    max_label_time: datetime,
    ttl: timedelta | None,
) -> pl.DataFrame:
    """The group's rows that can match a label, with features renamed ``{group}__{feature}``."""
    event_time = quote_ident(spec.event_time)
    select = ", ".join(quote_ident(c) for c in spec.columns)
    where, params = f"{event_time} < ?", [max_label_time]
    if ttl is not None:
        # Older rows would be dropped by the TTL anyway: never read them.
        where += f" and {event_time} >= ?"
        params.append(min_label_time - ttl)
    sql = f"select {select} from {quote_ident(spec.table)} where {where}"
    frame = read_frame(con, sql, params).with_columns(_as_utc(spec.event_time))
    renames = {f: col(spec.name, f) for f in spec.feature_names}
    return frame.rename(renames).with_columns(
        pl.col(spec.event_time).alias(col(spec.name, "event_time"))
    )


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


def _split_expr(boundaries: Mapping[str, datetime]) -> pl.Expr:
    t = pl.col(LABEL_TIME)
    return (
        pl.when(t < boundaries["valid_start"])
        .then(pl.lit("train"))
        .when(t < boundaries["test_start"])
        .then(pl.lit("valid"))
        .otherwise(pl.lit("test"))
        .alias(SPLIT)
    )


def _counts(frame: pl.DataFrame, *, positives: bool) -> dict[str, int]:
    value = pl.col(LABEL).cast(pl.Int64).sum() if positives else pl.len()
    per_split = dict(frame.group_by(SPLIT).agg(value.alias("n")).rows())
    counts = {s: int(per_split.get(s, 0)) for s in SPLITS}
    return {"total": sum(counts.values()), **counts}


def _group_info(spec: FeatureGroupSpec, ttl: timedelta | None) -> dict[str, Any]:
    return {
        "version": spec.version,
        "table": spec.table,
        "entity_keys": list(spec.entity_keys),
        "event_time": spec.event_time,
        "event_time_column": col(spec.name, "event_time"),
        "features": [col(spec.name, f) for f in spec.feature_names],
        "ttl_seconds": ttl.total_seconds() if ttl is not None else None,
    }


def model_feature_columns(groups: Sequence[FeatureGroupSpec]) -> tuple[list[str], list[str]]:
    """Default model inputs of a dataset built from ``groups``: (feature_columns, categorical).

    The request's amount, category and channel, every group feature of a numeric, boolean or
    string dtype (dates, timestamps and event times are bookkeeping, not inputs), and every
    on-demand feature. ``categorical`` is the subset of ``feature_columns`` that is categorical.
    """
    kinds: dict[str, str] = dict(REQUEST_FEATURES)
    for spec in groups:
        for feature in spec.features:
            kind = _FEATURE_DTYPES.get(feature.dtype)
            if kind is not None:
                kinds[col(spec.name, feature.name)] = kind
    for feature in ON_DEMAND_FEATURES:
        kinds[feature.name] = _FEATURE_DTYPES.get(feature.dtype, "numeric")
    return list(kinds), [c for c, kind in kinds.items() if kind == "categorical"]


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
    label: str = LABEL,
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
        rows, positives = _counts(frame, positives=False), _counts(frame, positives=True)
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
        feature_groups=tuple(built["feature_groups"]),
        ttl={k: timedelta(seconds=v) for k, v in built["ttl_seconds"].items()} or None,
    )


def list_datasets(datasets_dir: Path, name: str = DEFAULT_NAME) -> list[DatasetVersion]:
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
    name: str = DEFAULT_NAME,
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
