"""The dbt resource's start-up shortcuts: same dbt version, no adapter, parse state kept."""

import importlib.metadata
import inspect
import os
import time
from functools import cached_property
from pathlib import Path

import pytest
from dagster_dbt import DbtCliResource
from packaging import version

from fti_assets.defs.transform import assets as transform


def test_dagster_dbt_still_has_the_hooks_we_override() -> None:
    # If dagster-dbt renames these, our overrides would silently stop saving time.
    assert isinstance(inspect.getattr_static(DbtCliResource, "_cli_version"), cached_property)
    assert callable(DbtCliResource._initialize_dbt_core_adapter)
    source = inspect.getsource(DbtCliResource.cli)
    assert "self._cli_version" in source
    assert "self._initialize_dbt_core_adapter(" in source


def test_version_comes_from_the_installed_dbt_core_without_a_subprocess(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import dagster_dbt.core.resource as dbt_resource_module

    def no_subprocess(*args: object, **kwargs: object) -> bytes:
        raise AssertionError(f"unexpected subprocess {args}")

    monkeypatch.setattr(dbt_resource_module, "check_output", no_subprocess)
    resource = transform.dbt_resource()
    assert isinstance(resource, transform.FtiDbtCliResource)
    assert Path(resource.dbt_executable) == transform.DBT_WRAPPER
    assert resource._cli_version == version.parse(importlib.metadata.version("dbt-core"))
    assert resource._cli_version.major < 2  # dbt-core, not the Fusion engine
    assert resource._initialize_dbt_core_adapter(["build"]) is None


def test_another_dbt_executable_is_asked_for_its_version(tmp_path: Path) -> None:
    other_dbt = tmp_path / "dbt"
    other_dbt.write_text("#!/bin/sh\necho 'Core:'\necho '  - installed: 1.99.7'\n")
    other_dbt.chmod(0o755)
    resource = transform.FtiDbtCliResource(
        project_dir=str(transform.DBT_PROJECT_DIR), dbt_executable=str(other_dbt)
    )
    assert resource._cli_version == version.parse("1.99.7")


def test_run_parse_state_replaces_the_project_one(tmp_path: Path) -> None:
    project_target = tmp_path / "target"
    run_target = project_target / "dbt_daily_models-abc-123"
    run_target.mkdir(parents=True)
    (project_target / "partial_parse.msgpack").write_bytes(b"old")

    transform._keep_partial_parse(run_target, project_target)  # the run wrote none: keep old
    assert (project_target / "partial_parse.msgpack").read_bytes() == b"old"

    (run_target / "partial_parse.msgpack").write_bytes(b"new state")
    transform._keep_partial_parse(run_target, project_target)
    assert (project_target / "partial_parse.msgpack").read_bytes() == b"new state"
    assert (run_target / "partial_parse.msgpack").read_bytes() == b"new state"
    assert sorted(p.name for p in project_target.iterdir()) == [
        "dbt_daily_models-abc-123",
        "partial_parse.msgpack",
    ]  # no temporary file left behind


def test_old_run_folders_are_pruned_but_recent_and_foreign_ones_kept(tmp_path: Path) -> None:
    target = tmp_path / "target"
    now = time.time()
    days_old = {}
    for i in range(6):  # six run folders, 0..5 days old
        folder = target / f"dbt_daily_models-{i:07x}-abcdef{i}"
        folder.mkdir(parents=True)
        os.utime(folder, (now - i * 86400, now - i * 86400))
        days_old[folder.name] = i
    running = target / "dbt_reference_models-aaaaaaa-bbbbbbb"  # beyond `keep`, but a minute old
    running.mkdir()
    os.utime(running, (now - 60, now - 60))
    (target / "compiled").mkdir()  # not a run folder: never touched, however old
    os.utime(target / "compiled", (now - 9e6, now - 9e6))

    removed = transform._prune_run_folders(target, keep=1, min_age_s=3600)

    assert sorted(days_old[p.name] for p in removed) == [1, 2, 3, 4, 5]
    assert sorted(p.name for p in target.iterdir()) == sorted(
        ["compiled", running.name, "dbt_daily_models-0000000-abcdef0"]
    )


@pytest.mark.slow
def test_the_dbt_step_leaves_this_process_environment_alone(data_layer: Path) -> None:
    """The lake and the window reach dbt through the invocation's env file (fti-dbt), not
    through os.environ: an in-process run of a daily dbt step changes no variable here."""
    import os

    from fti_assets.definitions import defs
    from fti_assets.demo import materialize_graph
    from fti_assets.lib.core.settings import Settings
    from fti_assets.resources import default_resources
    from tests.conftest import TINY_START

    def ours() -> dict[str, str]:  # (libraries set variables of their own on import)
        return {k: v for k, v in os.environ.items() if k.startswith(("FTI_", "DBT_"))}

    before = ours()
    day = TINY_START
    # Resources from this test's env (defs.resources were built when the module was first
    # imported, maybe by another test of this worker, with another data folder).
    result = materialize_graph(
        defs,
        start=day,
        end=day,
        resources={**default_resources(Settings.from_env()), "dbt": transform.dbt_resource()},
        selection=["raw_cards", "raw_merchants", "raw_transactions", "raw_fraud_labels",
                   "stg_cards", "stg_merchants", "stg_transactions", "stg_fraud_labels",
                   "int_card_daily_activity", "card_daily_features"],
    )  # fmt: skip
    assert result.success
    assert ours() == before
    written = [e for e in result.get_asset_materialization_events()
               if e.asset_key.to_user_string() == "card_daily_features"]  # fmt: skip
    assert written  # dbt found the lake and the day through fti-dbt
