"""The Dagster UI in a real browser, served the way `make dev` serves it.

dagster-webserver and dagster-daemon run on 127.0.0.1 with the project's dagster.yaml and
workspace.yaml over a tiny world. The earlier days of the feature pipelines are materialized
in-process first (recorded in the same instance), so that the last day can be launched the way
the UI launches "Materialize all" for one partition: ``launchRun`` on the implicit asset job
with every materializable asset of the daily calendar and the unpartitioned ones, their checks,
and the partition tag. The run config is the launchpad's (the tiny world's shorter warm-up and
label maturity, a small model): the model defaults need more days than the tiny world has. The
two assets of the service's real-time log calendar (``inference_log`` and what reads it) are
launched on their own calendar in the UI, so they are not part of this run.

Headless Chromium (Debian's ``chromium`` package; nothing is downloaded, the test skips without
it) then renders the asset graph (every group), an asset page with its checks and a monitoring
asset with its Evidently report link. With FTI_UPDATE_SCREENSHOTS=1 the screenshots are copied
into docs/, where the README shows them.

A second webserver started with ``--read-only`` (what docs/ui.md recommends for shared
deployments) refuses the same launch, and no run is created.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from fti_assets.lib.settings import PROJECT_ROOT
from tests.conftest import TINY_DAYS, TINY_START
from tests.processes import fti_env
from tests.test_pipeline import FEATURE_PIPELINES, TRAINING_CONFIG, _run
from tests.ui_client import (
    CHROMIUM_SKIP_REASON,
    PARTITION_KEYS,
    SENSORS_AND_SCHEDULES,
    STOP_SCHEDULE,
    STOP_SENSOR,
    DagsterUI,
    Process,
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
# Screenshots the README and docs/ui.md show: file name in docs/ -> (UI path, what it shows).
SCREENSHOTS = {
    "ui_asset_graph.png": "/asset-groups",
    "ui_features_group.png": "/locations/__repository__@fti_assets/asset-groups/features",
    "ui_model_evaluation.png": f"/assets/{CHECKED_ASSET}?view=checks",
    "ui_drift_report.png": f"/assets/{MONITORING_ASSET}",
}
LOAD_TIMEOUT = 120  # s, a code location loading on a busy 2-core machine
RUN_TIMEOUT = 300  # s, the whole graph for one day


def _dagster(program: str) -> str:
    return str(Path(sys.executable).parent / program)


def _instance_home(tmp_path: Path) -> Path:
    """DAGSTER_HOME with the project's dagster.yaml and its storage already created: the
    webserver, the daemon and their code servers creating a new SQLite storage at once race on
    its alembic version table."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
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


def _materialize_all(ui: DagsterUI, nodes: list[dict[str, Any]], day: str) -> dict[str, Any]:
    """The execution params of "Materialize all" for the partition ``day``: every
    materializable asset that is unpartitioned or has ``day`` as a partition of the daily
    calendar, with all their checks."""

    def on_daily_calendar(node: dict[str, Any]) -> bool:
        if not node["isPartitioned"]:
            return True
        keys = ui.query(PARTITION_KEYS, {"assetKey": node["assetKey"]})["assetNodeOrError"]
        return keys["partitionKeys"][-1] == DAILY_LAST_KEY and day in keys["partitionKeys"]

    selected = [n for n in nodes if n["isMaterializable"] and n["isExecutable"]]
    selected = [n for n in selected if on_daily_calendar(n)]
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


# The daily calendar's last partition: FTI_END_DATE, pinned by tests/conftest.py.
DAILY_LAST_KEY = os.environ["FTI_END_DATE"]


def test_the_ui_in_a_browser(data_layer: Path, tmp_path: Path) -> None:
    chromium = chromium_binary()
    if chromium is None:
        pytest.skip(CHROMIUM_SKIP_REASON)
    timings: dict[str, float] = {}
    started = time.monotonic()
    home = _instance_home(tmp_path)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert _run(
            TINY_START, LAST_DAY - timedelta(days=1), selection=FEATURE_PIPELINES, instance=instance
        ).success
    timings["earlier days in-process"] = time.monotonic() - started

    env = fti_env(
        DAGSTER_HOME=str(home),
        FTI_DATA_DIR=str(data_layer),
        FTI_ONLINE_PATH=str(data_layer / "online.sqlite"),
        FTI_REGISTRY_PATH=str(data_layer / "registry.sqlite"),
        FTI_REPORTS_URL=REPORTS_URL,
        DAGSTER_TELEMETRY_DISABLED="1",
        PYTHONUNBUFFERED="1",
    )
    logs = tmp_path / "logs"
    logs.mkdir()
    shots = tmp_path / "screenshots"
    shots.mkdir()
    port, read_only_port = free_port(), free_port()
    processes: list[Process] = []

    def start(name: str, *argv: str) -> Process:
        process = Process(list(argv), env=env, cwd=PROJECT_ROOT, log=logs / f"{name}.log")
        processes.append(process)
        return process

    webserver_args = ["-h", "127.0.0.1", "-w", "workspace.yaml"]
    ui, read_only = DagsterUI(port), DagsterUI(read_only_port)
    try:
        t0 = time.monotonic()
        webserver = start(
            "webserver", _dagster("dagster-webserver"), *webserver_args, "-p", str(port)
        )
        ui.wait_until_loaded(webserver, LOAD_TIMEOUT)
        timings["webserver loaded"] = time.monotonic() - t0

        nodes = ui.asset_nodes()
        groups = {n["groupName"] for n in nodes}
        from fti_assets.definitions import defs

        graph = defs.resolve_asset_graph()
        defined = {graph.get(key).group_name for key in graph.get_all_asset_keys()}
        assert groups == defined

        stopped = _stop_automation(ui, nodes[0]["repository"])
        assert "landing_sensor" in stopped
        daemon = start("daemon", _dagster("dagster-daemon"), "run", "-w", "workspace.yaml")
        read_only_server = start(
            "webserver-read-only",
            _dagster("dagster-webserver"),
            *webserver_args,
            "-p",
            str(read_only_port),
            "--read-only",
        )

        # "Materialize all" for the last day (queued; the daemon launches it once it is up).
        params = _materialize_all(ui, nodes, LAST_DAY.isoformat())
        t0 = time.monotonic()
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

        run = ui.wait_for_run(run_id, RUN_TIMEOUT, webserver, daemon)
        timings["materialize all (one day)"] = time.monotonic() - t0
        if run["status"] != "SUCCESS":
            failures = "\n".join(ui.failures(run_id)) or daemon.tail()
            pytest.fail(f"run {run_id} {run['status']}:\n{failures}")
        selected = {"/".join(k["path"]) for k in params["selector"]["assetSelection"]}
        steps = {s["stepKey"]: s["status"] for s in run["stepStats"]}
        assert set(steps.values()) == {"SUCCESS"}, steps
        groups_run = {n["groupName"] for n in nodes if "/".join(n["assetKey"]["path"]) in selected}
        assert groups_run == groups - {"streaming"}  # the streaming side is written by `fti stream`

        # The browser.
        t0 = time.monotonic()
        doms = {
            name: render(chromium, ui.page(path), shots / name, profile=tmp_path / "chromium")
            for name, path in SCREENSHOTS.items()
        }
        timings["screenshots"] = time.monotonic() - t0
        for name in SCREENSHOTS:
            assert (shots / name).stat().st_size > 20_000, f"{name} looks empty"
            assert png_size(shots / name) == (1600, 1000)
        graph_text = graph_node_text(doms["ui_asset_graph.png"])
        missing = sorted(g for g in groups if f">{g}<" not in graph_text)
        assert not missing, f"groups not drawn in the asset graph: {missing}"
        features_text = graph_node_text(doms["ui_features_group.png"])
        assert ">card_transaction_features<" in features_text
        checks_page = doms["ui_model_evaluation.png"]
        assert all(f">{gate}<" in checks_page for gate in GATES), "checks missing from the page"
        report = f"{REPORTS_URL}/fraud_model/drift/{LAST_DAY}.html"
        assert f'href="{report}"' in doms["ui_drift_report.png"]

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
