from pathlib import Path

import duckdb
import pytest

from fti_assets.lib import offline_store
from fti_assets.lib.offline_store import ensure_database_file


def _tables(path: Path) -> list[str]:
    with duckdb.connect(str(path), read_only=True) as con:
        rows = con.execute("select table_name from duckdb_tables()").fetchall()
    return [name for (name,) in rows]


def test_new_database_file_is_created_complete_and_leaves_no_temporary_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "nested" / "offline.duckdb"
    ensure_database_file(path)

    assert _tables(path) == []  # a valid, empty DuckDB database
    assert sorted(p.name for p in path.parent.iterdir()) == ["offline.duckdb"]


def test_existing_database_is_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "offline.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("create table kept as select 1 as x")
    ensure_database_file(path)
    assert _tables(path) == ["kept"]


def test_losing_the_creation_race_keeps_the_winners_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process creates the file after our existence check: its file wins, ours goes."""
    path = tmp_path / "offline.duckdb"
    real_link = offline_store.os.link

    def winner_first(src: Path, dst: Path) -> None:
        with duckdb.connect(str(dst)) as con:
            con.execute("create table winner as select 1 as x")
        real_link(src, dst)  # raises FileExistsError, as the real race would

    monkeypatch.setattr(offline_store.os, "link", winner_first)
    ensure_database_file(path)

    assert _tables(path) == ["winner"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["offline.duckdb"]


def test_in_memory_database_creates_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    ensure_database_file(":memory:")
    assert list(tmp_path.iterdir()) == []
