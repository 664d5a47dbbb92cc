"""Finding the PostgreSQL server programs and naming a local server (no server started here:
tests/test_postgres.py runs a real one)."""

from pathlib import Path

import pytest

from fti_assets.lib.core.settings import LakeConfig
from fti_assets.lib.store.postgres_server import (
    SERVER_PROGRAMS,
    LocalPostgres,
    find_server_binaries,
)


def _install(folder: Path, programs: tuple[str, ...] = SERVER_PROGRAMS) -> Path:
    folder.mkdir(parents=True)
    for program in programs:
        (folder / program).write_text("#!/bin/sh\n")
        (folder / program).chmod(0o755)
    return folder


def test_the_programs_on_path_win(tmp_path: Path) -> None:
    on_path = _install(tmp_path / "local" / "bin")
    _install(tmp_path / "debian" / "16" / "bin")
    assert find_server_binaries(str(on_path), tmp_path / "debian") == on_path


def test_a_symlink_on_path_leads_to_the_folder_holding_all_programs(tmp_path: Path) -> None:
    """Like /usr/local/bin/pg_ctl -> /usr/lib/postgresql/15/bin/pg_ctl."""
    real = _install(tmp_path / "lib" / "15" / "bin")
    links = tmp_path / "links"
    links.mkdir()
    (links / "pg_ctl").symlink_to(real / "pg_ctl")
    assert find_server_binaries(str(links), tmp_path / "none") == real


def test_debian_layout_off_path_picks_the_newest_complete_major(tmp_path: Path) -> None:
    debian = tmp_path / "postgresql"
    _install(debian / "9" / "bin")
    newest_complete = _install(debian / "16" / "bin")
    _install(debian / "17" / "bin", programs=("pg_ctl",))  # a client-only leftover
    assert find_server_binaries(str(tmp_path / "empty"), debian) == newest_complete


def test_nothing_installed_is_none(tmp_path: Path) -> None:
    assert find_server_binaries(str(tmp_path), tmp_path / "postgresql") is None


def test_settings_from_env_and_the_catalog_they_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FTI_PG_DIR", str(tmp_path / "pg"))
    monkeypatch.setenv("FTI_PG_PORT", "6543")
    monkeypatch.setenv("FTI_PG_USER", "lakeuser")
    monkeypatch.setenv("FTI_PG_PASSWORD", "secret")
    server = LocalPostgres.from_env(tmp_path / "default")
    assert (server.root, server.port, server.user) == (tmp_path / "pg", 6543, "lakeuser")
    assert "secret" not in repr(server) and "secret" not in str(server.client_environment())
    lake = LakeConfig(server.lake_catalog(), f"{tmp_path / 'data'}/")
    assert lake.kind == "postgres"
    assert lake.target == "dbname=lake host=127.0.0.1 port=6543 user=lakeuser"


@pytest.mark.parametrize("port", ["fifty", "0", "70000"])
def test_a_bad_port_is_named(port: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FTI_PG_PORT", port)
    with pytest.raises(ValueError, match=f"port '{port}' is not valid; expected an integer"):
        LocalPostgres.from_env(tmp_path)


def test_a_user_name_that_would_break_a_connection_string_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="user 'a b' is not valid"):
        LocalPostgres(tmp_path, user="a b")
