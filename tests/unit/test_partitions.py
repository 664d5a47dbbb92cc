"""Daily partitions: from the world's first day up to the last complete UTC day, capped by
FTI_END_DATE, growing by themselves as the clock moves."""

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from fti_assets.lib.core.settings import (
    DEFAULT_START,
    Settings,
    last_complete_day,
    partition_end_cap,
    partition_start,
)
from fti_assets.partitions import daily_partitions, daily_partitions_from

START = date(2026, 9, 1)


def _at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_partitions_grow_as_days_pass_without_a_new_definition() -> None:
    days = daily_partitions_from(START, None)
    assert days.get_partition_keys(current_time=_at(2026, 9, 3, 23, 59)) == [
        "2026-09-01",
        "2026-09-02",
    ]
    # The same definition a minute after midnight: the day that just ended is a partition.
    assert days.get_partition_keys(current_time=_at(2026, 9, 4, 0, 1))[-1] == "2026-09-03"
    assert len(days.get_partition_keys(current_time=_at(2026, 11, 29, 12))) == 89


def test_an_end_date_caps_the_partitions_however_late_it_is() -> None:
    days = daily_partitions_from(START, date(2026, 9, 10))
    assert days.get_partition_keys(current_time=_at(2027, 1, 1))[-1] == "2026-09-10"
    # ... and before the cap, the clock still decides.
    assert days.get_partition_keys(current_time=_at(2026, 9, 5, 8))[-1] == "2026-09-04"


def test_the_tests_pin_both_ends() -> None:
    keys = daily_partitions.get_partition_keys()
    assert (keys[0], keys[-1]) == ("2026-09-01", "2026-10-30")


def test_last_complete_day_is_yesterday_in_utc() -> None:
    assert last_complete_day(_at(2026, 9, 4, 0, 1)) == date(2026, 9, 3)
    late_evening_in_new_york = datetime.fromisoformat("2026-09-03T22:00:00-04:00")  # 02:00 UTC
    assert last_complete_day(late_evening_in_new_york) == date(2026, 9, 3)


def _manifest(folder: Path, start: str) -> None:
    folder.mkdir(parents=True)
    (folder / "_manifest.json").write_text(json.dumps({"start": start, "end": "2026-12-01"}))


def test_start_comes_from_the_env_then_the_world_then_the_landing_zone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings.for_data_dir(tmp_path)
    monkeypatch.delenv("FTI_START_DATE")
    assert partition_start(settings) == DEFAULT_START
    _manifest(tmp_path / "landing", "2026-10-02")
    assert partition_start(settings) == date(2026, 10, 2)
    _manifest(tmp_path / "world", "2026-10-01")
    assert partition_start(settings) == date(2026, 10, 1)
    monkeypatch.setenv("FTI_START_DATE", "2026-08-15")
    assert partition_start(settings) == date(2026, 8, 15)


def test_bad_dates_in_the_environment_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FTI_END_DATE", "2026-08-31")
    with pytest.raises(ValueError, match="FTI_END_DATE=2026-08-31 is before the first partition"):
        partition_end_cap(START)
    monkeypatch.setenv("FTI_END_DATE", "yesterday")
    with pytest.raises(ValueError, match="FTI_END_DATE='yesterday' is not a date"):
        partition_end_cap(START)
    monkeypatch.delenv("FTI_END_DATE")
    assert partition_end_cap(START) is None
