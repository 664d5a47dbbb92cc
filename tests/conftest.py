"""Shared fixtures: a tiny generated data set and an isolated data layer per test."""

import os
import shutil
from datetime import date
from pathlib import Path

import pytest

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
    from fti_assets.lib.generator import GeneratorConfig, generate

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
