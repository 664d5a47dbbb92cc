"""What must hold in the online store, the training datasets and the inference log however their
writer was interrupted, and their summaries for comparing a re-run with an uninterrupted run."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import polars as pl

from fti_assets.lib.inference.log import log_files, read_inference_logs
from fti_assets.lib.store.online import OnlineStore
from fti_assets.lib.training.datasets import frame_sha256, list_datasets, load_dataset
from fti_assets.specs.inference_log import SERVICE_LOG
from tests.crash.store_operations import (
    DATASET_NAME,
    LOG_DIR,
    LOG_RECORDS,
    ONLINE_FILE,
    ONLINE_GROUP,
    acknowledged,
)

# ---------------------------------------------------------- the online store


def online_rows(workdir: Path) -> pl.DataFrame:
    """The group as the HTTP service reads it (a read-only store), sorted by entity."""
    with OnlineStore(workdir / ONLINE_FILE, readonly=True) as store:
        rows = store.latest(ONLINE_GROUP.name).sort(ONLINE_GROUP.entity_keys)
        (meta,) = [g for g in store.groups() if g["name"] == ONLINE_GROUP.name]
    assert meta["row_count"] == rows.height, f"metadata says {meta['row_count']} rows: {rows}"
    assert meta["max_event_time"] == rows["event_time"].max(), meta
    return rows


def check_online_group(workdir: Path, before: pl.DataFrame, after: pl.DataFrame) -> None:
    """The group's table is the one before the write or the one after it (one transaction),
    and no entity's row is older than before the write."""
    rows = online_rows(workdir)
    digest = frame_sha256(rows)
    assert digest in (frame_sha256(before), frame_sha256(after)), (
        f"the group holds {rows.height} rows that are neither the {before.height} before the "
        f"write nor the {after.height} after it"
    )
    key = list(ONLINE_GROUP.entity_keys)
    moved_back = rows.join(before, on=key, suffix="_before").filter(
        pl.col("event_time") < pl.col("event_time_before")
    )
    assert moved_back.is_empty(), f"rows moved back in time: {moved_back}"


# ---------------------------------------------------------- training datasets


def check_datasets(workdir: Path) -> None:
    """Every version folder has its manifest, and its data verifies against the manifest's
    hashes; staging folders (hidden, ``.tmp-*``) are never read as versions."""
    name_dir = workdir / "datasets" / DATASET_NAME
    visible = sorted(p.name for p in name_dir.iterdir() if not p.name.startswith("."))
    versions = list_datasets(workdir / "datasets", DATASET_NAME)
    assert visible == [v.version for v in versions], f"{visible}: not all are versions"
    for version in versions:
        frame, manifest = load_dataset(workdir / "datasets", DATASET_NAME, version.version)
        assert frame_sha256(frame) == manifest["content_hash"]["frame_sha256"], version.path
        assert frame.height == manifest["rows"]["total"], version.path


def _content(manifest: dict[str, Any]) -> str:
    """A manifest without what differs between two writes of the same frame."""
    return json.dumps(
        {k: v for k, v in manifest.items() if k not in ("version", "created_at")}, sort_keys=True
    )


def datasets_summary(workdir: Path) -> dict[str, object]:
    """The first version, and the distinct contents of the later ones: a version published just
    before the kill (the child died before it could report it) and the one the re-run then
    adds hold the same data — a build never overwrites a version."""
    manifests = [v.manifest for v in list_datasets(workdir / "datasets", DATASET_NAME)]
    return {
        "first": _content(manifests[0]),
        "later": sorted({_content(m) for m in manifests[1:]}),
    }


# ---------------------------------------------------------- the inference log


def _writer(path: Path) -> str:
    """The logger that wrote a file: ``part-<pid>-<token>`` without the sequence number."""
    return path.stem.rsplit("-", 1)[0]


def check_inference_log(workdir: Path) -> int:
    """What :mod:`fti_assets.lib.inference.log` promises after a crash: every acknowledged
    record is on disk and read back; no logger writes a record twice; a file ends in at most
    one partial line, which the reader skips, and every whole line is a record. Returns how
    many partial lines there are."""
    lines_by_writer: dict[str, list[bytes]] = {}
    whole = partial = 0
    for path in log_files(workdir / LOG_DIR):
        *complete, tail = path.read_bytes().split(b"\n")
        for line in complete:
            orjson.loads(line)  # a whole line is a whole record
        if tail:
            try:
                orjson.loads(tail)
            except orjson.JSONDecodeError:
                partial += 1  # the last line a killed logger was writing
            else:
                raise AssertionError(f"{path}: a record without its newline")
        lines_by_writer.setdefault(_writer(path), []).extend(complete)
        whole += len(complete)
    for writer, lines in lines_by_writer.items():
        twice = [line[:40] for line, n in Counter(lines).items() if n > 1]
        assert not twice, f"logger {writer} wrote {len(twice)} records twice: {twice[:3]}"
    logged = read_inference_logs(workdir / LOG_DIR, SERVICE_LOG)
    assert logged.height == whole, f"read {logged.height} records of {whole} whole lines"
    wanted = {f"tx{n:07d}" for n in range(acknowledged(workdir))}
    lost = wanted - set(logged["transaction_id"])
    assert not lost, f"{len(lost)} acknowledged records lost, e.g. {sorted(lost)[:3]}"
    return partial


def inference_log_summary(workdir: Path) -> dict[str, object]:
    """The distinct records logged (a record resent after the kill may be there twice), their
    content hash and how many were acknowledged."""
    lines = {
        line
        for path in log_files(workdir / LOG_DIR)
        for line in path.read_bytes().split(b"\n")[:-1]
    }
    digest = hashlib.sha256(b"\n".join(sorted(lines))).hexdigest()
    assert len(lines) <= LOG_RECORDS
    return {"records": len(lines), "sha256": digest, "acknowledged": acknowledged(workdir)}
