"""The generated world and its release into the landing zone, one day at a time.

``fti generate`` writes everything that will ever land into ``world/`` (see
:mod:`fti_assets.lib.synthetic.generator`); the platform only watches ``landing/``. Releasing a day
copies that day's transactions file and the fraud labels *reported* that day (late labels of
earlier days) from the world into the landing zone, together with the reference files (cards,
merchants) and the manifest when they are missing or differ.

Every file appears atomically: it is copied under a hidden temporary name in its target folder
and renamed, so a reader (the landing sensor, an ingest run) sees the whole file or nothing. A
day's labels are released before its transactions, whose arrival completes the day. Which days
are released is read from the files present in ``landing/``; the release keeps no state.
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from fti_assets.lib.core.settings import MANIFEST_FILE
from fti_assets.lib.ingest.domain import (
    CARDS_FILE,
    FRAUD_LABELS_DIR,
    MERCHANTS_FILE,
    TRANSACTIONS_DIR,
)

REFERENCE_FILES: tuple[str, ...] = (CARDS_FILE, MERCHANTS_FILE, MANIFEST_FILE)
_TMP_SUFFIX = ".tmp"


class NoWorldError(FileNotFoundError):
    """There is no generated world to release days from."""


class WorldExhaustedError(RuntimeError):
    """Every day of the world is already in the landing zone."""


@dataclass(frozen=True)
class WorldStatus:
    """The world's days, split into those already released into landing/ and the rest."""

    world_dir: Path
    landing_dir: Path
    start: date
    end: date
    released: tuple[date, ...]
    remaining: tuple[date, ...]
    drift: dict | None  # the manifest's drift record (kind, from_day_index, from), if any

    def as_dict(self) -> dict:
        return {
            "world": str(self.world_dir),
            "landing": str(self.landing_dir),
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "days": len(self.released) + len(self.remaining),
            "released": len(self.released),
            "remaining": len(self.remaining),
            "last_released": self.released[-1].isoformat() if self.released else None,
            "next": self.remaining[0].isoformat() if self.remaining else None,
            "drift": self.drift,
        }


def day_files(day: date) -> tuple[str, str]:
    """A day's files relative to the world or landing folder, in release order (labels, then
    the transactions that complete the day)."""
    name = f"{day.isoformat()}.parquet"
    return f"{FRAUD_LABELS_DIR}/{name}", f"{TRANSACTIONS_DIR}/{name}"


def read_manifest(world_dir: Path) -> dict:
    path = world_dir / MANIFEST_FILE
    if not path.exists():
        raise NoWorldError(
            f"no generated world in {world_dir} ({path.name} is missing); run `fti generate` first"
        )
    return json.loads(path.read_text())


def world_days(manifest: dict) -> list[date]:
    start, end = date.fromisoformat(manifest["start"]), date.fromisoformat(manifest["end"])
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def is_released(landing_dir: Path, day: date) -> bool:
    return all((landing_dir / name).exists() for name in day_files(day))


def landed_days(landing_dir: Path) -> list[date]:
    """The days whose transactions and labels files are both in the landing zone, in order
    (whether a world released them or not)."""
    names = sorted((landing_dir / TRANSACTIONS_DIR).glob("*.parquet"))
    days = [date.fromisoformat(path.stem) for path in names]
    return [day for day in days if is_released(landing_dir, day)]


def world_status(world_dir: Path, landing_dir: Path) -> WorldStatus:
    manifest = read_manifest(world_dir)
    days = world_days(manifest)
    released = {d for d in days if is_released(landing_dir, d)}
    return WorldStatus(
        world_dir=world_dir,
        landing_dir=landing_dir,
        start=days[0],
        end=days[-1],
        released=tuple(d for d in days if d in released),
        remaining=tuple(d for d in days if d not in released),
        drift=manifest.get("drift"),
    )


def copy_atomically(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target`` so that ``target`` appears whole or not at all: the bytes
    go to a hidden temporary file in the target's folder, which is then renamed over it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}{_TMP_SUFFIX}")
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _release_reference(world_dir: Path, landing_dir: Path) -> None:
    for name in REFERENCE_FILES:
        source, target = world_dir / name, landing_dir / name
        if not target.exists() or not filecmp.cmp(source, target, shallow=False):
            copy_atomically(source, target)


def _release_day(world_dir: Path, landing_dir: Path, day: date) -> None:
    for name in day_files(day):
        copy_atomically(world_dir / name, landing_dir / name)


def _clear_landing(landing_dir: Path) -> None:
    """Remove what an earlier world released (and any temporary file a crash left behind)."""
    for folder in (landing_dir / TRANSACTIONS_DIR, landing_dir / FRAUD_LABELS_DIR):
        for path in folder.glob("*.parquet"):
            path.unlink()
        for path in folder.glob(f".*{_TMP_SUFFIX}"):
            path.unlink()
    for name in REFERENCE_FILES:
        (landing_dir / name).unlink(missing_ok=True)


def release_world(world_dir: Path, landing_dir: Path, days: int) -> list[date]:
    """Replace the landing zone's contents with the world's reference files and its first
    ``days`` days; return the days released."""
    all_days = world_days(read_manifest(world_dir))
    if not 0 <= days <= len(all_days):
        raise ValueError(f"days={days}: expected 0 <= days <= {len(all_days)} (the world's days)")
    _clear_landing(landing_dir)
    _release_reference(world_dir, landing_dir)
    for day in all_days[:days]:
        _release_day(world_dir, landing_dir, day)
    return all_days[:days]


def advance(world_dir: Path, landing_dir: Path, days: int = 1) -> list[date]:
    """Release the next ``days`` unreleased days of the world (fewer when fewer remain) and
    return them; raise :class:`WorldExhaustedError` when none remains."""
    if days < 1:
        raise ValueError(f"days={days}: expected at least 1 day to release")
    status = world_status(world_dir, landing_dir)
    if not status.remaining:
        raise WorldExhaustedError(
            f"the world in {world_dir} is exhausted: all {len(status.released)} days "
            f"({status.start} … {status.end}) are already in {landing_dir}; generate a longer "
            "one with `fti generate --days N --hold-back M`"
        )
    _release_reference(world_dir, landing_dir)
    chosen = list(status.remaining[:days])
    for day in chosen:
        _release_day(world_dir, landing_dir, day)
    return chosen
