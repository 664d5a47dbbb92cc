"""The world and its release into the landing zone: hold-back, advance, status, atomic files."""

import json
import shutil
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from fti_assets.cli import app
from fti_assets.lib.synthetic.generator import GeneratorConfig, generate
from fti_assets.lib.synthetic.world import (
    WorldExhaustedError,
    advance,
    copy_atomically,
    day_files,
    landed_days,
    world_status,
)

SMALL = GeneratorConfig(cards=120, merchants=20, days=6, start=date(2026, 9, 1), seed=3)
DAYS = [SMALL.start + timedelta(days=i) for i in range(SMALL.days)]


@pytest.fixture
def held_back(tmp_path: Path) -> Path:
    """A world of 6 days with the last 3 held back."""
    generate(SMALL, tmp_path, hold_back=3)
    return tmp_path


def _landing_days(data_dir: Path) -> list[str]:
    return sorted(p.stem for p in (data_dir / "landing" / "transactions").glob("*.parquet"))


def test_hold_back_keeps_the_last_days_in_the_world_only(held_back: Path) -> None:
    assert _landing_days(held_back) == [d.isoformat() for d in DAYS[:3]]
    assert len(list((held_back / "world" / "transactions").glob("*.parquet"))) == 6
    for name in ("cards.parquet", "merchants.parquet", "_manifest.json"):
        assert (held_back / "landing" / name).read_bytes() == (
            held_back / "world" / name
        ).read_bytes()
    status = world_status(held_back / "world", held_back / "landing")
    assert status.released == tuple(DAYS[:3]) and status.remaining == tuple(DAYS[3:])


def test_advance_releases_the_next_day_with_the_labels_reported_that_day(held_back: Path) -> None:
    world, landing = held_back / "world", held_back / "landing"
    assert advance(world, landing) == [DAYS[3]]
    assert _landing_days(held_back) == [d.isoformat() for d in DAYS[:4]]
    for name in day_files(DAYS[3]):
        assert (landing / name).read_bytes() == (world / name).read_bytes()
    # The day's labels file holds late labels of transactions of earlier days.
    labels = pl.read_parquet(landing / day_files(DAYS[3])[0])
    earlier = pl.concat([pl.read_parquet(landing / day_files(d)[1]) for d in DAYS[:3]]).filter(
        pl.col("transaction_id").is_in(labels["transaction_id"].implode())
    )
    assert earlier.height > 0
    assert (labels["reported_at"].dt.date() == DAYS[3]).all()


def test_advance_several_days_then_the_exhausted_world_says_so(held_back: Path) -> None:
    world, landing = held_back / "world", held_back / "landing"
    assert advance(world, landing, days=5) == DAYS[3:]  # only 3 were left
    with pytest.raises(WorldExhaustedError, match=r"all 6 days \(2026-09-01 … 2026-09-06\)"):
        advance(world, landing)
    with pytest.raises(ValueError, match="days=0"):
        advance(world, landing, days=0)


def test_advance_fills_a_gap_first_and_restores_missing_reference_files(held_back: Path) -> None:
    world, landing = held_back / "world", held_back / "landing"
    (landing / day_files(DAYS[1])[1]).unlink()
    (landing / "cards.parquet").unlink()
    assert advance(world, landing) == [DAYS[1]]
    assert (landing / "cards.parquet").read_bytes() == (world / "cards.parquet").read_bytes()


def test_regenerating_replaces_the_landing_zone(held_back: Path) -> None:
    generate(replace(SMALL, days=2), held_back)
    assert _landing_days(held_back) == [d.isoformat() for d in DAYS[:2]]
    assert landed_days(held_back / "landing") == DAYS[:2]


def test_hold_back_beyond_the_world_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"hold_back=7: expected 0 <= hold_back <= days \(6\)"):
        generate(SMALL, tmp_path, hold_back=7)


def test_a_day_with_one_of_its_two_files_has_not_landed(held_back: Path) -> None:
    landing = held_back / "landing"
    (landing / day_files(DAYS[2])[0]).unlink()  # its labels
    assert landed_days(landing) == DAYS[:2]


def test_copy_is_atomic_a_failed_copy_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "source.parquet"
    source.write_bytes(b"x" * 10_000)
    target = tmp_path / "landing" / "transactions" / "2026-09-01.parquet"

    def copy_half_then_fail(src: Path, dst: Path) -> None:
        Path(dst).write_bytes(Path(src).read_bytes()[:5000])
        # While the bytes are being written, the day file is not there under its name.
        assert not target.exists()
        assert list(target.parent.glob("*.parquet")) == []
        raise OSError("disk full")

    monkeypatch.setattr(shutil, "copyfile", copy_half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        copy_atomically(source, target)
    assert list(target.parent.iterdir()) == []  # no partial target, no temporary file left
    monkeypatch.undo()
    copy_atomically(source, target)
    assert target.read_bytes() == source.read_bytes()


def test_cli_status_advance_and_exhaustion(held_back: Path) -> None:
    runner = CliRunner()
    status = runner.invoke(app, ["simulate", "status", "--json", "--data-dir", str(held_back)])
    assert status.exit_code == 0, status.output
    payload = json.loads(status.output)
    assert payload["released"] == 3 and payload["remaining"] == 3
    assert payload["next"] == "2026-09-04" and payload["drift"] is None

    result = runner.invoke(
        app, ["simulate", "advance", "--days", "3", "--data-dir", str(held_back)]
    )
    assert result.exit_code == 0, result.output
    assert "2026-09-04 … 2026-09-06" in result.output
    exhausted = runner.invoke(app, ["simulate", "advance", "--data-dir", str(held_back)])
    assert exhausted.exit_code == 1
    assert "exhausted" in exhausted.output


def test_cli_without_a_world_says_how_to_make_one(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["simulate", "status", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "fti generate" in result.output


def test_cli_generate_defaults_to_a_world_ending_yesterday_with_drift_recorded(
    tmp_path: Path,
) -> None:
    from fti_assets.lib.core.settings import last_complete_day

    result = CliRunner().invoke(
        app,
        [
            "generate",
            "--cards", "50", "--merchants", "12", "--days", "4",
            "--drift-from", "2", "--drift-kind", "covariate",
            "--hold-back", "1", "--data-dir", str(tmp_path),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "world" / "_manifest.json").read_text())
    assert manifest["end"] == last_complete_day().isoformat()
    assert manifest["drift"]["kind"] == "covariate" and manifest["drift"]["from_day_index"] == 2
    assert len(_landing_days(tmp_path)) == 3
    bad = CliRunner().invoke(
        app, ["generate", "--drift-kind", "label", "--data-dir", str(tmp_path)]
    )
    assert bad.exit_code == 2
