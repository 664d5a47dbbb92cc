"""Shared fixtures: a tiny generated data set and an isolated data layer per test."""

import os
import shutil
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from fti_assets.lib.core.store_urls import REDIS, SQLITE, sqlite_url
from tests.redis_server import SKIP_REASON, RedisServer, redis_server_binary

# The daily partitions are fixed at import; pin them so every test process agrees, whatever
# data set a test generates inside this window.
os.environ["FTI_START_DATE"] = "2026-09-01"
os.environ["FTI_END_DATE"] = "2026-10-30"
os.environ.setdefault("DAGSTER_TELEMETRY_DISABLED", "1")

TINY_START = date(2026, 9, 1)
TINY_DAYS = 24


@pytest.fixture(scope="session")
def tiny_landing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated data folder (with one bad row of each kind per day), made once."""
    from fti_assets.lib.synthetic.generator import GeneratorConfig, generate

    data_dir = tmp_path_factory.mktemp("tiny")
    generate(
        GeneratorConfig(cards=400, merchants=40, days=TINY_DAYS, start=TINY_START, bad_rows=1),
        data_dir,
    )
    return data_dir


@pytest.fixture
def data_layer(tmp_path: Path, tiny_landing: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh data folder holding a copy of the tiny landing files; env vars point at it."""
    data_dir = tmp_path / "data"
    shutil.copytree(tiny_landing, data_dir)
    monkeypatch.setenv("FTI_DATA_DIR", str(data_dir))
    monkeypatch.delenv("FTI_LAKE_CATALOG", raising=False)  # the lake: data_dir/lake
    monkeypatch.delenv("FTI_LAKE_DATA_PATH", raising=False)
    monkeypatch.setenv("FTI_ONLINE_PATH", str(data_dir / "online.sqlite"))
    monkeypatch.setenv("FTI_REGISTRY_PATH", str(data_dir / "registry.sqlite"))
    return data_dir


def missing_system_program(reason: str) -> None:
    """A system program a test needs is missing: skip, saying why — unless the run requires the
    system packages (FTI_REQUIRE_SYSTEM_PACKAGES=1, set by `make test` as root, after `make
    install` apt-got them), where a missing program is a failed test, not a silent skip."""
    if os.environ.get("FTI_REQUIRE_SYSTEM_PACKAGES") == "1":
        pytest.fail(
            f"{reason} (FTI_REQUIRE_SYSTEM_PACKAGES=1: make install should have installed it)"
        )
    pytest.skip(reason)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server per test process, on a free port of 127.0.0.1."""
    if redis_server_binary() is None:
        missing_system_program(SKIP_REASON)
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The URL of an emptied Redis server."""
    redis_server.flush()
    return redis_server.url


@pytest.fixture(params=[SQLITE, REDIS])
def online_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An ``FTI_ONLINE_URL`` of each backend: an empty SQLite file path, an emptied Redis."""
    if request.param == SQLITE:
        return sqlite_url(tmp_path / "online.sqlite")
    return request.getfixturevalue("redis_url")


@pytest.fixture(params=[SQLITE, REDIS])
def event_log_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An ``FTI_EVENT_LOG_URL`` of each backend: a new SQLite file path, an emptied Redis."""
    if request.param == SQLITE:
        return sqlite_url(tmp_path / "events.sqlite")
    return request.getfixturevalue("redis_url")


@pytest.fixture(params=[SQLITE, REDIS])
def stream_urls(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """(FTI_ONLINE_URL, FTI_EVENT_LOG_URL) of the streaming pipeline, both on one backend."""
    if request.param == SQLITE:
        return sqlite_url(tmp_path / "online.sqlite"), sqlite_url(tmp_path / "events.sqlite")
    url = request.getfixturevalue("redis_url")
    return url, url
