"""The Dagster UI as a browser uses it: dagster-webserver and dagster-daemon processes, the
webserver's GraphQL API over HTTP, and headless Chromium (Debian's ``chromium`` package) for
screenshots and the rendered page.

Used by tests/test_ui.py. Nothing is downloaded: without a Chromium binary the browser tests
skip with :data:`CHROMIUM_SKIP_REASON`.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

CHROMIUM_SKIP_REASON = (
    "chromium not installed: run `make install` as root (installs Debian's chromium package)"
)
TERMINAL_RUN_STATUSES = {"SUCCESS", "FAILURE", "CANCELED"}

T = TypeVar("T")


def chromium_binary() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(
    probe: Callable[[], T | None], *, timeout: float, what: str, interval: float = 0.5
) -> T:
    """``probe()``'s first result that is not None, polled until ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not done after {timeout:.0f} s")
        time.sleep(interval)


class Process:
    """A command in its own process group (it and the processes it starts: code servers, run
    workers, step processes), its output in ``log``. :meth:`stop` ends the whole group."""

    def __init__(self, argv: list[str], *, env: dict[str, str], cwd: Path, log: Path) -> None:
        self.argv = argv
        self.log = log
        with open(log, "wb") as out:  # a file: a pipe nobody reads fills up and blocks it
            self.popen = subprocess.Popen(
                argv,
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def assert_running(self) -> None:
        if self.popen.poll() is not None:
            raise AssertionError(
                f"{self.argv[0]} exited with {self.popen.returncode}:\n{self.tail()}"
            )

    def tail(self, chars: int = 6000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM to the group (dagster's processes shut their children down), then SIGKILL
        to whatever of the group is left."""
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and _group_alive(self.popen.pid):
                self.popen.poll()  # reap the leader so that it does not count as alive
                time.sleep(0.1)
        self.popen.poll()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    # Zombies of the group (already exited, not yet reaped by their parent) do not count.
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


class GraphQLError(AssertionError):
    pass


class DagsterUI:
    """One dagster-webserver: its GraphQL API, and the URLs of its pages."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.http = httpx.Client(base_url=self.base, timeout=60)

    def close(self) -> None:
        self.http.close()

    def query(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self.http.post("/graphql", json={"query": query, "variables": variables or {}})
        payload = response.json()
        if payload.get("errors"):
            raise GraphQLError(f"GraphQL errors: {payload['errors']}")
        return payload["data"]

    def wait_until_loaded(self, server: Process, timeout: float) -> list[dict[str, Any]]:
        """Wait for the webserver and its code locations; the locations (load errors fail)."""

        def loaded() -> list[dict[str, Any]] | None:
            server.assert_running()
            try:
                data = self.query(WORKSPACE)["workspaceOrError"]
            except httpx.TransportError:
                return None  # not listening yet
            entries = data.get("locationEntries") or []
            if not entries or any(e["loadStatus"] != "LOADED" for e in entries):
                return None
            return entries

        entries = wait_for(loaded, timeout=timeout, what=f"code locations of {self.base}")
        errors = [e for e in entries if e["locationOrLoadError"]["__typename"] == "PythonError"]
        assert not errors, errors[0]["locationOrLoadError"]
        return entries

    def asset_nodes(self) -> list[dict[str, Any]]:
        return self.query(ASSET_NODES)["assetNodes"]

    def launch_run(self, execution_params: dict[str, Any]) -> dict[str, Any]:
        """The ``launchRun`` mutation's result (its ``__typename`` says success or refusal)."""
        return self.query(LAUNCH_RUN, {"executionParams": execution_params})["launchRun"]

    def run(self, run_id: str) -> dict[str, Any]:
        run = self.query(RUN, {"runId": run_id})["runOrError"]
        assert run["__typename"] == "Run", run
        return run

    def wait_for_run(self, run_id: str, timeout: float, *servers: Process) -> dict[str, Any]:
        def finished() -> dict[str, Any] | None:
            for server in servers:
                server.assert_running()
            run = self.run(run_id)
            return run if run["status"] in TERMINAL_RUN_STATUSES else None

        return wait_for(finished, timeout=timeout, what=f"run {run_id}", interval=1.0)

    def failures(self, run_id: str) -> list[str]:
        """The run's step and run failures, each with the innermost error of its chain."""
        events = self.query(RUN_LOGS, {"runId": run_id})["logsForRun"].get("events", [])
        out = []
        for event in events:
            error = event.get("error")
            if not error:
                continue
            chain = [error, *(link["error"] for link in error.get("errorChain") or [])]
            root = chain[-1]
            stack = "".join(root.get("stack") or [])[-1500:]
            out.append(
                f"{event['__typename']} {event.get('stepKey') or ''}: "
                f"{root.get('className')}: {root.get('message')}\n{stack}"
            )
        return out

    def run_ids(self) -> list[str]:
        runs = self.query(RUNS)["runsOrError"]
        return [r["runId"] for r in runs["results"]]


def check_names(node: dict[str, Any]) -> list[str]:
    checks = node.get("assetChecksOrError") or {}
    return [c["name"] for c in checks.get("checks", [])]


def render(
    chromium: str,
    url: str,
    png: Path,
    *,
    profile: Path,
    budget_ms: int = 15000,
    size: tuple[int, int] = (1600, 1000),
    timeout: float = 60.0,
) -> str:
    """Load ``url`` in headless Chromium, write a screenshot to ``png``; the rendered DOM.

    ``--virtual-time-budget`` lets the page run its scripts and requests for that much virtual
    time (which runs ahead of the clock while the page is idle) before the screenshot and the
    DOM dump. Headless Chromium now and then hangs for good instead: each call is bounded by
    ``timeout``, its process group is ended afterwards, and a hung call is tried once more.
    """
    dom_path = png.with_suffix(".html")
    argv = [
        chromium,
        "--headless",
        "--no-sandbox",  # as root in a container; the page is our own local webserver
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--no-first-run",
        "--no-default-browser-check",
        "--force-device-scale-factor=1",
        f"--user-data-dir={profile}",
        f"--window-size={size[0]},{size[1]}",
        f"--virtual-time-budget={budget_ms}",
        f"--screenshot={png}",
        "--dump-dom",
        url,
    ]
    for _attempt in range(2):
        png.unlink(missing_ok=True)
        with open(dom_path, "wb") as dom, open(png.with_suffix(".chromium.log"), "ab") as log:
            browser = subprocess.Popen(
                argv, stdout=dom, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True
            )
            try:
                browser.wait(timeout=timeout)
                hung = False
            except subprocess.TimeoutExpired:
                hung = True
            finally:
                try:
                    os.killpg(browser.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                browser.wait(timeout=10)
        if not hung:
            break
    assert not hung, f"chromium still loading {url} after {timeout:.0f} s, twice"
    assert png.exists(), f"chromium wrote no screenshot of {url} (exit {browser.returncode})"
    return dom_path.read_text(errors="replace")


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def buttons(dom: str) -> dict[str, bool]:
    """Each button's text in a DOM dump -> whether the button is disabled."""
    states = {}
    for attributes, content in re.findall(r"<button([^>]*)>(.*?)</button>", dom, re.S):
        text = re.sub(r"<[^>]+>", "", content).strip()
        states[text] = re.search(r"\sdisabled(=|\s|$)", attributes) is not None
    return states


def graph_node_text(dom: str) -> str:
    """The text inside the asset graph's nodes (the UI draws each in a ``<foreignObject>``)."""
    return "".join(part.split("</foreignObject>")[0] for part in dom.split("<foreignObject")[1:])


WORKSPACE = """
query Workspace {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError {
          __typename
          ... on RepositoryLocation { name repositories { name } }
          ... on PythonError { message stack }
        }
      }
    }
  }
}"""

ASSET_NODES = """
query AssetNodes {
  assetNodes {
    assetKey { path }
    groupName
    isMaterializable
    isExecutable
    isPartitioned
    partitionDefinition { description }
    assetChecksOrError { __typename ... on AssetChecks { checks { name } } }
    repository { name location { name } }
  }
}"""

LAUNCH_RUN = """
mutation LaunchRun($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on UnauthorizedError { message }
    ... on PythonError { message stack }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on PipelineNotFoundError { message }
    ... on RunConflict { message }
  }
}"""

RUN = """
query Run($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { runId status tags { key value } stepStats { stepKey status } }
  }
}"""

RUNS = """
query Runs { runsOrError { ... on Runs { results { runId } } } }
"""

RUN_LOGS = """
query RunLogs($runId: ID!) {
  logsForRun(runId: $runId, limit: 5000) {
    ... on EventConnection {
      events {
        __typename
        ... on ExecutionStepFailureEvent {
          stepKey
          error { className message stack errorChain { error { className message stack } } }
        }
        ... on RunFailureEvent {
          error { className message stack errorChain { error { className message stack } } }
        }
        ... on EngineEvent {
          error { className message stack errorChain { error { className message stack } } }
        }
      }
    }
  }
}"""

SENSORS_AND_SCHEDULES = """
query Instigators($selector: RepositorySelector!) {
  repositoryOrError(repositorySelector: $selector) {
    ... on Repository {
      sensors { name sensorState { id status } }
      schedules { name scheduleState { id status } }
    }
  }
}"""

STOP_SENSOR = """
mutation StopSensor($id: String!) {
  stopSensor(id: $id) {
    __typename
    ... on StopSensorMutationResult { instigationState { status } }
    ... on PythonError { message }
  }
}"""

STOP_SCHEDULE = """
mutation StopSchedule($id: String!) {
  stopRunningSchedule(id: $id) {
    __typename
    ... on ScheduleStateResult { scheduleState { status } }
    ... on PythonError { message }
  }
}"""
