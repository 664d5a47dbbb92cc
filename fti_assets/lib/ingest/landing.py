"""What is in the landing zone and what changed since the last look (for the landing sensor).

A file is known by its size, modification time and the SHA-256 of its bytes. A scan hashes only
the files whose size or modification time moved since the previous scan, so a quiet landing zone
costs one ``stat`` per file, and a file rewritten with the same bytes (a world regenerated with
the same seed) is no change. A day is ready when both of its files are there (its transactions
and the fraud labels reported that day); a day with one of the two is left for a later look.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from fti_assets.lib.ingest.domain import (
    CARDS_FILE,
    FRAUD_LABELS_DIR,
    MERCHANTS_FILE,
    TRANSACTIONS_DIR,
)

REFERENCE_FILES: tuple[str, ...] = (CARDS_FILE, MERCHANTS_FILE)
DAY_FOLDERS: tuple[str, ...] = (FRAUD_LABELS_DIR, TRANSACTIONS_DIR)
_CHUNK = 1 << 20


@dataclass(frozen=True)
class FileState:
    size: int
    mtime_ns: int
    sha256: str


@dataclass(frozen=True)
class LandingChanges:
    """New or changed content, relative to a previous scan."""

    reference: tuple[str, ...]  # changed reference files, when every reference file is there
    days: dict[date, tuple[str, ...]]  # ready days with a changed file -> both files of the day
    incomplete: tuple[date, ...]  # days with a changed file whose other file is not there yet


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _watched(landing_dir: Path) -> list[str]:
    names = [name for name in REFERENCE_FILES if (landing_dir / name).exists()]
    for folder in DAY_FOLDERS:
        # "*.parquet" never matches the hidden temporary name a file is copied under.
        names.extend(f"{folder}/{p.name}" for p in sorted((landing_dir / folder).glob("*.parquet")))
    return names


def scan(landing_dir: Path, previous: Mapping[str, FileState]) -> dict[str, FileState]:
    """The state of every watched file, hashing only those whose size or mtime changed."""
    states = {}
    for name in _watched(landing_dir):
        try:
            stat = (landing_dir / name).stat()
            known = previous.get(name)
            if known and (known.size, known.mtime_ns) == (stat.st_size, stat.st_mtime_ns):
                states[name] = known
            else:
                states[name] = FileState(
                    stat.st_size, stat.st_mtime_ns, _sha256(landing_dir / name)
                )
        except FileNotFoundError:
            continue  # removed between the listing and the look: it is simply not there
    return states


def day_of(name: str) -> date | None:
    """The day of a day file (``transactions/2026-09-01.parquet``); None for reference files."""
    folder, _, file = name.partition("/")
    if folder not in DAY_FOLDERS:
        return None
    try:
        return date.fromisoformat(Path(file).stem)
    except ValueError:
        return None  # not a day file: ignored


def landing_changes(
    current: Mapping[str, FileState], previous: Mapping[str, FileState]
) -> LandingChanges:
    changed = {
        name
        for name, state in current.items()
        if name not in previous or previous[name].sha256 != state.sha256
    }
    reference = tuple(sorted(changed & set(REFERENCE_FILES)))
    if not all(name in current for name in REFERENCE_FILES):
        reference = ()
    days: dict[date, tuple[str, ...]] = {}
    incomplete = set()
    for name in changed:
        day = day_of(name)
        if day is None:
            continue
        files = tuple(f"{folder}/{day.isoformat()}.parquet" for folder in DAY_FOLDERS)
        if all(f in current for f in files):
            days[day] = files
        else:
            incomplete.add(day)
    return LandingChanges(reference, dict(sorted(days.items())), tuple(sorted(incomplete)))


def consecutive_runs(days: Sequence[date]) -> list[list[date]]:
    """Sorted days grouped into runs of consecutive days: [1, 2, 3, 5] -> [[1, 2, 3], [5]]."""
    runs: list[list[date]] = []
    for day in sorted(days):
        if runs and day == runs[-1][-1] + timedelta(days=1):
            runs[-1].append(day)
        else:
            runs.append([day])
    return runs


def content_key(states: Iterable[FileState]) -> str:
    """A short digest of several files' contents (their order does not matter)."""
    joined = "".join(sorted(state.sha256 for state in states))
    return hashlib.sha256(joined.encode()).hexdigest()[:16]


def states_to_json(states: Mapping[str, FileState]) -> str:
    return json.dumps(
        {name: [s.size, s.mtime_ns, s.sha256] for name, s in sorted(states.items())},
        separators=(",", ":"),
    )


def states_from_json(text: str | None) -> dict[str, FileState]:
    """The states a previous :func:`states_to_json` wrote; nothing for an empty cursor."""
    if not text:
        return {}
    try:
        raw = json.loads(text)
        return {name: FileState(int(v[0]), int(v[1]), str(v[2])) for name, v in raw.items()}
    except (ValueError, TypeError, IndexError, AttributeError) as exc:
        raise ValueError(
            f"landing cursor {text[:80]!r} is not what this sensor writes; expected JSON of "
            "file -> [size, mtime_ns, sha256] (reset the sensor's cursor in the UI)"
        ) from exc
