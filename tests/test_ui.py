"""The Dagster UI in a real browser, served the way `make dev` serves it.

dagster-webserver and dagster-daemon run on 127.0.0.1 with the project's dagster.yaml and
workspace.yaml over a tiny world; its sensors and schedule are switched off first (the UI's
toggles), so that the daemon launches nothing but the run under test. The earlier days of the
feature pipelines are materialized in-process first (recorded in the same instance), so that
the last day can be launched the way the UI launches "Materialize all" for one partition:
``launchRun`` on the implicit asset job with every materializable asset of the daily calendar
and the unpartitioned ones, their checks, and the partition tag. The run config is the
launchpad's (the tiny world's shorter warm-up and label maturity, a small model): the model
defaults need more days than the tiny world has. The two assets of the service's real-time log
calendar (``inference_log`` and what reads it) are launched on their own calendar in the UI,
so they are not part of this run.

Headless Chromium (Debian's ``chromium`` package; nothing is downloaded, the test skips without
it) then renders the asset graph (every group), an asset page with its checks and a monitoring
asset with its Evidently report link. With FTI_UPDATE_SCREENSHOTS=1 the screenshots are copied
into docs/, where the README shows them.

A second webserver started with ``--read-only`` (what docs/ui.md recommends for shared
deployments) refuses the same launch, no run is created, and its asset page shows the
Materialize button disabled.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from fti_assets.definitions import defs
from fti_assets.lib.core.settings import PROJECT_ROOT
from tests.conftest import TINY_DAYS, TINY_START, missing_system_program
from tests.processes import fti_env
from tests.test_pipeline import FEATURE_PIPELINES, TRAINING_CONFIG, _run
from tests.ui_client import (
    CHROMIUM_SKIP_REASON,
    SENSORS_AND_SCHEDULES,
    STOP_SCHEDULE,
    STOP_SENSOR,
    DagsterUI,
    Process,
    buttons,
    check_names,
    chromium_binary,
    free_port,
    graph_node_text,
    png_size,
    render,
)

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ui")]

LAST_DAY = TINY_START + timedelta(days=TINY_DAYS - 1)
REPORTS_URL = "http://127.0.0.1:3001"  # what `make dev` serves the reports folder on
# The launchpad's run config: the tiny world's training settings and the tests' gate floor.
RUN_CONFIG = {
    "ops": TRAINING_CONFIG,
    "resources": {"model_gates": {"config": {"pr_auc_floor": 0.1}}},
}
CHECKED_ASSET = "fraud_model_evaluation"
GATES = {"metric_floor", "beats_champion", "no_slice_regression", "dataset_passed_leakage_check"}
MONITORING_ASSET = "fraud_model_feature_drift_report"
# The screenshots, saved under these names in docs/ (the README and docs/ui.md show them):
# the page's path and the browser window's size.
SCREENSHOTS = {
    "ui_asset_graph.png": ("/asset-groups", (1600, 1000)),
    "ui_features_group.png": (
        "/locations/__repository__@fti_assets/asset-groups/features",
        (1600, 1400),
    ),
    "ui_model_evaluation.png": (f"/assets/{CHECKED_ASSET}", (1600, 1000)),
    "ui_model_checks.png": (f"/assets/{CHECKED_ASSET}?view=checks", (1600, 1000)),
    # Tall: the report link is the last metadata entry, below the per-day drift table.
    "ui_drift_report.png": (f"/assets/{MONITORING_ASSET}", (1600, 1700)),
}
LOAD_TIMEOUT = 120  # s, a code location loading on a busy 2-core machine
RUN_TIMEOUT = 360  # s, the whole graph for one day


def _dagster(program: str) -> str:
    return str(Path(sys.executable).parent / program)


def _instance_home(tmp_path: Path) -> Path:
    """DAGSTER_HOME with the project's dagster.yaml (plus the first-visit welcome dialog off: it
    would cover every screenshot) and its storage already created: the webserver, the daemon
    and their code servers creating a new SQLite storage at once race on its alembic table."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    project = (PROJECT_ROOT / "dagster.yaml").read_text()
    assert "nux:" not in project  # else the project's own setting applies
    (home / "dagster.yaml").write_text(project + "nux:\n  enabled: false\n")
    dg.DagsterInstance.from_config(str(home)).dispose()
    return home


def _stop_automation(ui: DagsterUI, repository: dict[str, Any]) -> list[str]:
    """Turn every sensor and schedule off, as the UI's toggles do, so that the daemon launches
    nothing of its own (the landing sensor would ingest the last day beside our run)."""
    selector = {
        "repositoryLocationName": repository["location"]["name"],
        "repositoryName": repository["name"],
    }
    repo = ui.query(SENSORS_AND_SCHEDULES, {"selector": selector})["repositoryOrError"]
    stopped = []
    for sensor in repo["sensors"]:
        if sensor["sensorState"]["status"] == "RUNNING":
            result = ui.query(STOP_SENSOR, {"id": sensor["sensorState"]["id"]})["stopSensor"]
            assert result["instigationState"]["status"] == "STOPPED", result
            stopped.append(sensor["name"])
    for schedule in repo["schedules"]:
        if schedule["scheduleState"]["status"] == "RUNNING":
            result = ui.query(STOP_SCHEDULE, {"id": schedule["scheduleState"]["id"]})
            assert result["stopRunningSchedule"]["scheduleState"]["status"] == "STOPPED", result
            stopped.append(schedule["name"])
    return stopped


def _materialize_all(nodes: list[dict[str, Any]], day: str) -> dict[str, Any]:
    """The execution params of "Materialize all" for the partition ``day``: every
    materializable asset that is unpartitioned or on the daily calendar (the partitions
    definition most assets share), with all their checks."""
    calendars = Counter(
        n["partitionDefinition"]["description"] for n in nodes if n["isPartitioned"]
    )
    daily = calendars.most_common(1)[0][0]
    selected = [
        n
        for n in nodes
        if n["isMaterializable"]
        and n["isExecutable"]
        and (not n["isPartitioned"] or n["partitionDefinition"]["description"] == daily)
    ]
    repository = selected[0]["repository"]
    return {
        "selector": {
            "repositoryLocationName": repository["location"]["name"],
            "repositoryName": repository["name"],
            "pipelineName": "__ASSET_JOB",
            "assetSelection": [n["assetKey"] for n in selected],
            "assetCheckSelection": [
                {"assetKey": n["assetKey"], "name": name}
                for n in selected
                for name in check_names(n)
            ],
        },
        "mode": "default",
        "runConfigData": RUN_CONFIG,
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": day}]},
    }


def test_the_ui_in_a_browser(data_layer: Path, tmp_path: Path) -> None:
    chromium = chromium_binary()
    if chromium is None:
        missing_system_program(CHROMIUM_SKIP_REASON)
    started = time.monotonic()
    timings: dict[str, float] = {}
    home = _instance_home(tmp_path)
    env = fti_env(
        DAGSTER_HOME=str(home),
        FTI_DATA_DIR=str(data_layer),
        FTI_ONLINE_PATH=str(data_layer / "online.sqlite"),
        FTI_REGISTRY_PATH=str(data_layer / "registry.sqlite"),
        FTI_REPORTS_URL=REPORTS_URL,
        # The world's days are the daily partitions (the last landed day is the last one), as
        # in `make dev` after `fti generate`; this process keeps conftest's longer window.
        FTI_END_DATE=LAST_DAY.isoformat(),
        DAGSTER_TELEMETRY_DISABLED="1",
    )
    logs, shots = tmp_path / "logs", tmp_path / "screenshots"
    logs.mkdir()
    shots.mkdir()
    processes: list[Process] = []

    def start(name: str, *argv: str) -> Process:
        process = Process(list(argv), env=env, cwd=PROJECT_ROOT, log=logs / f"{name}.log")
        processes.append(process)
        return process

    def webserver(name: str, port: int, *flags: str) -> Process:
        host = ["-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"]
        return start(name, _dagster("dagster-webserver"), *host, *flags)

    ui, read_only = DagsterUI(free_port()), DagsterUI(free_port())
    try:
        main = webserver("webserver", ui.port)
        # While it loads: the days before the last one, in-process, recorded in the instance.
        with dg.DagsterInstance.from_config(str(home)) as instance:
            earlier = _run(
                TINY_START,
                LAST_DAY - timedelta(days=1),
                selection=FEATURE_PIPELINES,
                instance=instance,
            )
        assert earlier.success
        timings["earlier days in-process"] = time.monotonic() - started
        ui.wait_until_loaded(main, LOAD_TIMEOUT)
        timings["webserver up"] = time.monotonic() - started

        nodes = ui.asset_nodes()
        groups = {n["groupName"] for n in nodes}
        graph = defs.resolve_asset_graph()
        assert groups == {graph.get(key).group_name for key in graph.get_all_asset_keys()}
        assert "landing_sensor" in _stop_automation(ui, nodes[0]["repository"])
        daemon = start("daemon", _dagster("dagster-daemon"), "run", "-w", "workspace.yaml")
        read_only_server = webserver("webserver-read-only", read_only.port, "--read-only")

        # "Materialize all" for the last day: queued until the daemon, loading, launches it.
        t0 = time.monotonic()
        params = _materialize_all(nodes, LAST_DAY.isoformat())
        launched = ui.launch_run(params)
        assert launched["__typename"] == "LaunchRunSuccess", launched
        run_id = launched["run"]["runId"]

        # Meanwhile, the read-only webserver refuses the same launch and creates no run.
        read_only.wait_until_loaded(read_only_server, LOAD_TIMEOUT)
        runs = read_only.run_ids()
        assert run_id in runs
        refused = read_only.launch_run(params)
        assert refused["__typename"] == "UnauthorizedError", refused
        assert read_only.run_ids() == runs

        run = ui.wait_for_run(run_id, RUN_TIMEOUT, main, daemon)
        timings["materialize all (one day)"] = time.monotonic() - t0
        if run["status"] != "SUCCESS":
            failures = "\n".join(ui.failures(run_id)) or daemon.tail()
            pytest.fail(f"run {run_id} {run['status']}:\n{failures}")
        assert {s["status"] for s in run["stepStats"]} == {"SUCCESS"}, run["stepStats"]
        keys = [tuple(key["path"]) for key in params["selector"]["assetSelection"]]
        in_run = {n["groupName"] for n in nodes if tuple(n["assetKey"]["path"]) in keys}
        assert in_run == groups - {"streaming"}  # the streaming assets are `fti stream`'s

        # The browser.
        t0 = time.monotonic()
        doms = {
            name: render(
                chromium, ui.base + path, shots / name, size=size, profile=tmp_path / "chromium"
            )
            for name, (path, size) in SCREENSHOTS.items()
        }
        timings["screenshots"] = time.monotonic() - t0
        for name, (_, size) in SCREENSHOTS.items():
            assert (shots / name).stat().st_size > 20_000, f"{name} looks empty"
            assert png_size(shots / name) == size
            assert "Join the Dagster community" not in doms[name]  # nothing covers the page
        drawn = graph_node_text(doms["ui_asset_graph.png"])
        assert not sorted(g for g in groups if f">{g}<" not in drawn), "groups missing"
        assert ">card_transaction_features<" in graph_node_text(doms["ui_features_group.png"])
        evaluation = doms["ui_model_evaluation.png"]
        assert ">test_pr_auc<" in evaluation and ">oracle_pr_auc<" in evaluation
        checks_page = doms["ui_model_checks.png"]
        assert not sorted(g for g in GATES if f">{g}<" not in checks_page), "checks missing"
        report = f"{REPORTS_URL}/fraud_model/drift/{LAST_DAY}.html"
        assert f'href="{report}"' in doms["ui_drift_report.png"]

        assert buttons(evaluation)["Materialize"] is False
        # The read-only UI shows the same page with its Materialize button disabled.
        page = render(
            chromium,
            read_only.base + f"/assets/{CHECKED_ASSET}",
            shots / "read_only.png",
            profile=tmp_path / "chromium",
        )
        assert ">test_pr_auc<" in page and buttons(page)["Materialize"] is True

        if os.environ.get("FTI_UPDATE_SCREENSHOTS") == "1":
            for name in SCREENSHOTS:
                shutil.copy(shots / name, PROJECT_ROOT / "docs" / name)
    finally:
        ui.close()
        read_only.close()
        for process in reversed(processes):
            process.stop()
        timings["total"] = time.monotonic() - started
        print("timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))
