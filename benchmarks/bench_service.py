"""Prediction service: per-request cost in process, latency and throughput over HTTP.

The benchmark builds its own data in a temporary folder: an online store with every online
feature group (``cards`` cards, ``merchants`` merchants, one latest row each) and a small real
LightGBM model (``trees`` trees over the service's feature names), registered and promoted.

1. In process: the pieces of one ``/predict`` (request validation, the five online lookups,
   the on-demand features, ``predict_one``, the whole handler body) timed per call.
2. Over HTTP against a real uvicorn process on 127.0.0.1 (``python -m
   fti_assets.service.server``), with 1 and then 2 workers:

   - open loop: requests sent at a fixed rate (200 req/s) whatever the responses do, on as many
     keep-alive connections as needed; latency from the moment a request is written;
   - closed loop: ``connections`` keep-alive connections each sending its next request as soon
     as the previous answer arrives: the maximum throughput.

   The client is a minimal HTTP/1.1 client on raw asyncio streams (uvloop), a few tens of
   microseconds per request, so that it takes as little CPU from the server as possible: it
   runs on the same two cores. Its CPU use is reported next to the server's.

Run alone: ``python -m benchmarks.bench_service --scale quick``.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import psutil

from benchmarks.common import Section, cli_main, percentiles
from fti_assets.lib.core.settings import PROJECT_ROOT, Settings
from fti_assets.lib.features.on_demand import FEATURE_INPUTS, REQUEST_COLUMNS, compute_on_demand_row
from fti_assets.lib.inference.log import read_inference_logs
from fti_assets.lib.inference.serving import ChampionModel, FeatureAssembler
from fti_assets.lib.ingest.domain import CATEGORIES, CHANNELS
from fti_assets.lib.registry.model_registry import ModelRegistry
from fti_assets.lib.store.online import OnlineStore
from fti_assets.specs.feature_groups import online_groups
from fti_assets.specs.feature_views import FRAUD_FEATURES, resolved
from fti_assets.specs.inference_log import SERVICE_LOG
from fti_assets.specs.labels import FRAUD_LABEL
from tests.unit.test_serving import random_group_frame, register, train_small_model

SCALES: dict[str, dict[str, Any]] = {
    "quick": {
        "cards": 5_000,
        "merchants": 200,
        "trees": 50,
        "in_process_calls": 1_000,
        "open_loop_s": 3.0,
        "closed_loop_s": 3.0,
    },
    "full": {
        "cards": 100_000,
        "merchants": 2_000,
        "trees": 200,
        "in_process_calls": 5_000,
        "open_loop_s": 20.0,
        "closed_loop_s": 10.0,
    },
}
RATE = 200.0
CONNECTIONS = 8
WORKERS = (1, 2)
UNKNOWN_CARD_SHARE = 0.01
GOAL_P99_MS = 3.0
GOAL_THROUGHPUT = 1_500.0
# Every stored row is older than the requests: the point-in-time rule keeps them all usable.
REQUEST_TIME = datetime(2026, 10, 1, 12, tzinfo=UTC)
_US = timedelta(microseconds=1)
_KEEP_ALIVE_S = 3.0
_HEALTH_REQUEST = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------


def build_data(root: Path, cards: int, merchants: int, trees: int) -> Settings:
    """Online store + a promoted model under ``root``; returns the service's settings."""
    settings = Settings.for_data_dir(root)
    rng = np.random.default_rng(0)
    keys = {
        "card_id": [f"card_{i:06d}" for i in range(cards)],
        "merchant_id": [f"merch_{i:05d}" for i in range(merchants)],
    }
    with OnlineStore(settings.online_path) as store:
        for seed, spec in enumerate(online_groups()):
            ids = keys[spec.entity_keys[0]]
            if spec.name == "merchant_profile_features":
                times = [datetime(1970, 1, 1, tzinfo=UTC)] * len(ids)
            else:
                minutes_back = rng.integers(1, 30 * 1440, len(ids))
                times = [REQUEST_TIME - timedelta(minutes=int(m)) for m in minutes_back]
            store.write_group(spec, random_group_frame(spec, ids, times, seed))
    trained = train_small_model(root / "artifact", seed=1, n_estimators=trees)
    registry = ModelRegistry(settings.registry_path, settings.layout.models_dir)
    registry.promote("fraud_model", register(registry, trained))
    return settings


def request_bodies(n: int, cards: int, merchants: int, seed: int = 1) -> list[dict[str, Any]]:
    """``n`` distinct transactions over random cards and merchants; 1% of cards unknown."""
    rng = np.random.default_rng(seed)
    bodies = []
    for i in range(n):
        known = rng.random() >= UNKNOWN_CARD_SHARE
        card = f"card_{rng.integers(cards):06d}" if known else f"new_card_{i}"
        at = REQUEST_TIME + i * 1000 * _US
        bodies.append(
            {
                "transaction_id": f"bench_{i:07d}",
                "card_id": card,
                "merchant_id": f"merch_{rng.integers(merchants):05d}",
                "amount": round(float(rng.lognormal(3.5, 1.0)), 2),
                "category": CATEGORIES[int(rng.integers(len(CATEGORIES)))],
                "channel": CHANNELS[int(rng.integers(len(CHANNELS)))],
                "transaction_time": at.isoformat().replace("+00:00", "Z"),
                "lat": round(float(rng.uniform(-60, 70)), 4),
                "lon": round(float(rng.uniform(-170, 170)), 4),
            }
        )
    return bodies


def http_payload(body: dict[str, Any]) -> bytes:
    data = orjson.dumps(body)
    head = (
        "POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    )
    return head.encode() + data


# ----------------------------------------------------------------------------------------------
# In-process cost of one request
# ----------------------------------------------------------------------------------------------


def _time_interleaved(
    steps: list[tuple[str, Callable[[Any], Any], list[Any]]],
) -> dict[str, dict[str, float]]:
    """Percentiles per step; request i goes through every step before request i + 1, so that
    a change in the machine's load affects all steps alike."""
    samples: dict[str, list[float]] = {name: [] for name, _, _ in steps}
    for _, fn, args in steps:
        fn(args[0])  # warm
    for i in range(len(steps[0][2])):
        for name, fn, args in steps:
            t0 = time.perf_counter()
            fn(args[i])
            samples[name].append(time.perf_counter() - t0)
    return {name: percentiles(values) for name, values in samples.items()}


def _calibration_us() -> float:
    """A pure-Python yardstick, to compare figures taken on different or busy machines."""
    return min(timeit.repeat("sum(range(1000))", number=2000, repeat=5)) / 2000 * 1e6


def _asgi_scope(path: str, body: bytes) -> dict[str, Any]:
    headers = [
        (b"host", b"127.0.0.1"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


def _asgi_call(app: Any) -> Callable[[bytes], Any]:
    """One whole request through the ASGI app, no network: ``fn(body) -> status``."""
    loop = asyncio.new_event_loop()

    def call(body: bytes) -> int:
        messages: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            messages.append(message)

        loop.run_until_complete(app(_asgi_scope("/predict", body), receive, send))
        status = messages[0]["status"]
        if status != 200:
            raise RuntimeError(f"/predict answered {status}: {messages[-1].get('body')!r}")
        return status

    return call


def in_process_section(settings: Settings, bodies: list[dict[str, Any]]) -> Section:
    from fti_assets.service.app import TransactionRequest, create_app

    apps = {fast: create_app(settings, fast_path=fast) for fast in (True, False)}
    service = apps[True].state.service
    for app in apps.values():
        app.state.service.start()  # what the lifespan does
    store = OnlineStore(settings.online_path, readonly=True)
    try:
        assembler = FeatureAssembler(
            store, resolved(FRAUD_FEATURES),
            request_fields=FRAUD_LABEL.request_columns, time_field=FRAUD_LABEL.time_column,
        )  # fmt: skip
        champion = ChampionModel(settings.layout.models_dir, "fraud_model").get()
        assert champion is not None, "the benchmark data has a champion"
        predictor = champion.predictor
        raws = [orjson.dumps(b) for b in bodies]
        requests = [TransactionRequest.model_validate(json.loads(r)) for r in raws]
        fields = [r.model_dump() for r in requests]
        vectors = [assembler.vector(f) for f in fields]
        on_demand_inputs = [
            {k: v.values[k] for k in (*REQUEST_COLUMNS, *FEATURE_INPUTS)} for v in vectors
        ]
        groups = online_groups()
        steps: list[tuple[str, Callable[[Any], Any], list[Any]]] = [
            (
                "parse + validate request (json.loads + pydantic)",
                lambda r: TransactionRequest.model_validate(json.loads(r)),
                raws,
            ),
            (
                "5 online-store lookups (OnlineStore.get)",
                lambda f: [store.get(g.name, f[g.entity_keys[0]]) for g in groups],
                fields,
            ),
            ("on-demand features (compute_on_demand_row)", compute_on_demand_row, on_demand_inputs),
            ("whole feature vector (FeatureAssembler.vector)", assembler.vector, fields),
            ("score (Predictor.predict_one)", lambda v: predictor.predict_one(v.values), vectors),
            ("handler body (vector + score + log enqueue)", service.predict, requests),
            ("whole request through the ASGI app (fast path)", _asgi_call(apps[True]), raws),
            (
                "whole request through the ASGI app (FastAPI routes only)",
                _asgi_call(apps[False]),
                raws,
            ),
        ]
        section = Section(
            "Prediction service: cost of one request in process",
            ["step", "p50 µs", "p99 µs", "mean µs"],
        )
        for name, stats in _time_interleaved(steps).items():
            section.add(name, stats["p50_us"], stats["p99_us"], stats["mean_us"])
    finally:
        store.close()
        for app in apps.values():
            app.state.service.close()
    section.notes.extend(
        [
            f"{len(bodies):,} distinct requests, {predictor.booster.num_trees():,} trees, "
            f"{len(predictor.feature_names)} model features; "
            f"{sum(bool(v.unknown_entities) for v in vectors)} requests with an unknown card",
            "ASGI rows: the app called directly with the request's body, no socket and no HTTP "
            "parsing (uvicorn adds those); 'fast path' is PredictFastPath, on by default",
            f"machine while measuring: load average {os.getloadavg()[0]:.1f} on "
            f"{os.cpu_count()} cores; calibration sum(range(1000)) = {_calibration_us():.1f} µs",
        ]
    )
    return section


# ----------------------------------------------------------------------------------------------
# HTTP load against a uvicorn process
# ----------------------------------------------------------------------------------------------


class _Connection:
    """One keep-alive HTTP/1.1 connection; responses must carry a Content-Length."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.last_used = time.monotonic()

    @classmethod
    async def open(cls, port: int) -> _Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    async def send(self, payload: bytes) -> tuple[int, bytes]:
        self.writer.write(payload)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        start = head.lower().index(b"content-length:") + len(b"content-length:")
        length = int(head[start : head.index(b"\r\n", start)])
        body = await self.reader.readexactly(length)
        self.last_used = time.monotonic()
        return status, body

    @property
    def local_port(self) -> int:
        return self.writer.get_extra_info("sockname")[1]

    @property
    def stale(self) -> bool:
        """Idle long enough that uvicorn may close it (its keep-alive timeout is 5 s)."""
        return time.monotonic() - self.last_used > _KEEP_ALIVE_S

    def close(self) -> None:
        self.writer.close()


@dataclass
class LoadResult:
    requests: int
    errors: int
    seconds: float
    latencies_s: list[float]
    client_cpu_s: float
    max_connections: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds

    def latency_ms(self, q: float) -> float:
        return float(np.quantile(self.latencies_s, q)) * 1000 if self.latencies_s else float("nan")


def _count(kinds: dict[str, int], kind: str) -> None:
    kinds[kind] = kinds.get(kind, 0) + 1


async def _open_loop(port: int, payloads: list[bytes], rate: float, seconds: float) -> LoadResult:
    idle = [await _Connection.open(port) for _ in range(4)]
    opened = len(idle)
    latencies: list[float] = []
    errors = 0
    kinds: dict[str, int] = {}

    async def one(payload: bytes) -> None:
        nonlocal errors, opened
        while idle and idle[-1].stale:  # a burst opened more connections than now needed
            idle.pop().close()
        if idle:
            conn = idle.pop()
        else:
            conn = await _Connection.open(port)
            opened += 1
        t0 = time.perf_counter()
        try:
            status, body = await conn.send(payload)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            errors += 1
            _count(kinds, type(exc).__name__)
            conn.close()
            return
        latencies.append(time.perf_counter() - t0)
        idle.append(conn)
        if status != 200 or b"fraud_probability" not in body:
            errors += 1
            _count(kinds, f"HTTP {status}: {body[:120]!r}")

    n = int(rate * seconds)
    cpu0 = time.process_time()
    start = time.perf_counter() + 0.01
    tasks = []
    for i in range(n):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(payloads[i % len(payloads)])))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    for conn in idle:
        conn.close()
    return LoadResult(n, errors, elapsed, latencies, time.process_time() - cpu0, opened, kinds)


async def _closed_loop(
    server: Server, payloads: list[bytes], connections: int, seconds: float
) -> LoadResult:
    port = server.port
    conns = await server.open_balanced(connections)
    latencies: list[float] = []
    counts = [0, 0]  # requests, errors
    kinds: dict[str, int] = {}

    async def worker(k: int, conn: _Connection, end: float) -> None:
        i = k
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            counts[0] += 1
            try:
                status, body = await conn.send(payloads[i % len(payloads)])
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                counts[1] += 1
                _count(kinds, type(exc).__name__)
                conn.close()
                conn = await _Connection.open(port)
                continue
            latencies.append(time.perf_counter() - t0)
            if status != 200 or b"fraud_probability" not in body:
                counts[1] += 1
                _count(kinds, f"HTTP {status}: {body[:120]!r}")
            i += connections

    cpu0 = time.process_time()
    start = time.perf_counter()
    await asyncio.gather(*(worker(k, c, start + seconds) for k, c in enumerate(conns)))
    elapsed = time.perf_counter() - start
    for conn in conns:
        conn.close()
    return LoadResult(
        counts[0], counts[1], elapsed, latencies, time.process_time() - cpu0, connections, kinds
    )


def _run_async(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:  # plain asyncio works too, with a bit more client CPU per request
        return asyncio.run(coro)
    return uvloop.run(coro)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """``python -m fti_assets.service.server`` in a subprocess, pointed at ``settings``."""

    def __init__(self, settings: Settings, workers: int) -> None:
        self.port = _free_port()
        self.workers = workers
        env = {
            **os.environ,
            "FTI_DATA_DIR": str(settings.data_dir),
            "FTI_LAKE_CATALOG": settings.lake.catalog,
            "FTI_LAKE_DATA_PATH": settings.lake.data_path,
            "FTI_ONLINE_PATH": str(settings.online_path),
            "FTI_ONLINE_URL": settings.online_url,
            "FTI_EVENT_LOG_URL": settings.event_log_url,
        }
        command = [sys.executable, "-m", "fti_assets.service.server", "--port", str(self.port)]
        command += ["--workers", str(workers), "--log-level", "warning"]
        # A SQLite online store shows in a worker's open files once the worker has opened it;
        # a Redis one does not (then /ready alone tells).
        self.online_path = (
            settings.online_path if settings.online_url.startswith("sqlite:") else None
        )
        self.process = subprocess.Popen(command, env=env, cwd=PROJECT_ROOT)
        self.psutil = psutil.Process(self.process.pid)

    def wait_ready(self, timeout_s: float = 180.0) -> None:
        """Until every worker has finished starting up (it opens the online store last).

        Connections are spread over workers when they are opened, so the benchmark's
        keep-alive connections must not be opened while a worker is still starting.
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}")
            workers = self.worker_processes()
            if (
                len(workers) == self.workers
                and all(map(self._store_open, workers))
                and self._answers_ready()
            ):
                return
            time.sleep(0.2)
        raise TimeoutError(f"service on port {self.port} not ready within {timeout_s} s")

    def _answers_ready(self) -> bool:
        """GET /ready answers 200 (a worker opens the store before uvicorn starts listening)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("GET", "/ready")
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    def _store_open(self, proc: psutil.Process) -> bool:
        if self.online_path is None:
            return True
        with contextlib.suppress(psutil.NoSuchProcess):
            return any(f.path == str(self.online_path) for f in proc.open_files())
        return False

    def worker_processes(self) -> list[psutil.Process]:
        if self.workers == 1:
            return [self.psutil]
        children = []
        for proc in self.psutil.children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                if "spawn_main" in " ".join(proc.cmdline()):
                    children.append(proc)
        return children

    async def open_balanced(self, n: int) -> list[_Connection]:
        """``n`` keep-alive connections spread evenly over the workers.

        uvicorn's workers share one listening socket and a worker accepts every connection
        pending when it wakes up, so a burst of new connections can all land on one worker
        (seen here: 8 of 8). A connection that lands on a worker holding its share already is
        closed and opened again.
        """
        if self.workers == 1:
            return [await _Connection.open(self.port) for _ in range(n)]
        share = -(-n // self.workers)
        by_worker: dict[int, list[_Connection]] = {p.pid: [] for p in self.worker_processes()}
        for _ in range(50 * n):
            if sum(len(conns) for conns in by_worker.values()) == n:
                return [conn for conns in by_worker.values() for conn in conns]
            conn = await _Connection.open(self.port)
            await conn.send(_HEALTH_REQUEST)  # answered: the connection has been accepted
            owner = by_worker.get(self._worker_pid(conn.local_port), [])
            if len(owner) < share:
                owner.append(conn)
            else:
                conn.close()
        raise RuntimeError(f"could not spread {n} connections over {self.workers} workers")

    def _worker_pid(self, client_port: int) -> int:
        for proc in self.worker_processes():
            for conn in proc.net_connections(kind="tcp"):
                if conn.raddr and conn.raddr.port == client_port:
                    return proc.pid
        return -1

    def worker_cpu_seconds(self) -> list[float]:
        totals = []
        for proc in self.worker_processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                times = proc.cpu_times()
                totals.append(times.user + times.system)
        return totals

    def cpu_seconds(self) -> float:
        total = 0.0
        for proc in [self.psutil, *self.psutil.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                times = proc.cpu_times()
                total += times.user + times.system
        return total

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _scenarios(sizes: dict) -> list[tuple[str, Callable[[Server, list[bytes]], Any]]]:
    return [
        (
            f"open loop {RATE:.0f} req/s",
            lambda server, payloads: _open_loop(server.port, payloads, RATE, sizes["open_loop_s"]),
        ),
        (
            f"closed loop, {CONNECTIONS} connections",
            lambda server, payloads: _closed_loop(
                server, payloads, CONNECTIONS, sizes["closed_loop_s"]
            ),
        ),
    ]


def _measure(
    settings: Settings, payloads: list[bytes], sizes: dict, workers: int, section: Section
) -> None:
    """Both load scenarios against a fresh server with ``workers`` workers; adds rows."""
    shutil.rmtree(settings.layout.inference_log_dir, ignore_errors=True)
    server = Server(settings, workers)
    results = []
    try:
        server.wait_ready()
        warm_up = _run_async(_closed_loop(server, payloads, CONNECTIONS, 1.0))
        sent = warm_up.requests
        for label, scenario in _scenarios(sizes):
            logged_before = _logged(settings)
            cpu0, per_worker0 = server.cpu_seconds(), server.worker_cpu_seconds()
            result = _run_async(scenario(server, payloads))
            sent += result.requests
            server_cpu = server.cpu_seconds() - cpu0
            per_worker = [
                b - a for a, b in zip(per_worker0, server.worker_cpu_seconds(), strict=True)
            ]
            results.append((label, result, server_cpu, logged_before))
            if workers > 1:
                split = " / ".join(f"{100 * c / result.seconds:.0f} %" for c in per_worker)
                section.notes.append(f"{workers} workers, {label}: CPU per worker {split}")
    finally:
        server.stop()
    logs = read_inference_logs(settings.layout.inference_log_dir, SERVICE_LOG)
    section.notes.append(
        f"{workers} worker(s): the inference log holds {logs.height:,} records for {sent:,} "
        "requests sent, read after the SIGTERM shutdown"
    )
    for label, result, server_cpu, logged_before in results:
        if result.error_kinds:
            section.notes.append(f"{workers} worker(s), {label}: errors {result.error_kinds}")
        if label.startswith("open loop"):
            section.notes.append(
                f"{workers} worker(s), {label}: {result.max_connections} connections used"
            )
        server_side = logs["latency_ms"].slice(logged_before, result.requests).to_numpy()
        section.add(
            workers,
            label,
            result.requests,
            result.errors,
            result.throughput,
            result.latency_ms(0.5),
            result.latency_ms(0.99),
            result.latency_ms(0.999),
            100 * server_cpu / result.seconds,
            1e6 * server_cpu / result.requests,
            100 * result.client_cpu_s / result.seconds,
            f"{np.quantile(server_side, 0.5):.2f} / {np.quantile(server_side, 0.99):.2f}",
        )


def http_section(settings: Settings, bodies: list[dict[str, Any]], sizes: dict) -> Section:
    payloads = [http_payload(b) for b in bodies]
    section = Section(
        "Prediction service over HTTP (uvicorn on 127.0.0.1, client on the same 2 cores)",
        [
            "workers",
            "load",
            "requests",
            "errors",
            "req/s",
            "p50 ms",
            "p99 ms",
            "p99.9 ms",
            "server CPU %",
            "server CPU µs/req",
            "client CPU %",
            "server-side p50/p99 ms",
        ],
    )
    for workers in WORKERS:
        _measure(settings, payloads, sizes, workers, section)
    section.notes.extend(
        [
            f"goals: p99 <= {GOAL_P99_MS:g} ms at {RATE:.0f} req/s open loop; "
            f">= {GOAL_THROUGHPUT:,.0f} req/s",
            f"open loop: {sizes['open_loop_s']:g} s; closed loop: {sizes['closed_loop_s']:g} s "
            f"with {CONNECTIONS} keep-alive connections, spread evenly over the workers (left "
            "alone, uvicorn can give a burst of new connections all to one worker); latency "
            "measured from the moment the request is written until its response is read",
            f"{len(bodies):,} distinct requests cycled, {UNKNOWN_CARD_SHARE:.0%} with an unknown "
            f"card; online store {sizes['cards']:,} cards / {sizes['merchants']:,} merchants; "
            f"model {sizes['trees']} trees",
            "server CPU % sums every server process (200 % = both cores); the client runs on the "
            "same 2 cores, so the closed-loop figure is what is left to the server",
            "server-side: the latency_ms the service logged per request (validation done, "
            "feature lookups + on-demand + predict_one), read back from the inference log",
            f"machine while measuring: load average {os.getloadavg()[0]:.1f} on "
            f"{os.cpu_count()} cores; calibration sum(range(1000)) = {_calibration_us():.1f} µs",
        ]
    )
    return section


def _logged(settings: Settings) -> int:
    # The logger flushes every 0.5 s; wait for the previous scenario's records to land.
    time.sleep(1.0)
    return read_inference_logs(settings.layout.inference_log_dir, SERVICE_LOG).height


def run(scale: str) -> list[Section]:
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; expected one of {list(SCALES)}")
    sizes = SCALES[scale]
    with tempfile.TemporaryDirectory(prefix="bench_service_") as tmp:
        settings = build_data(
            Path(tmp) / "data", sizes["cards"], sizes["merchants"], sizes["trees"]
        )
        bodies = request_bodies(10_000, sizes["cards"], sizes["merchants"])
        sections = [in_process_section(settings, bodies[: sizes["in_process_calls"]])]
        sections.append(http_section(settings, bodies, sizes))
        return sections


if __name__ == "__main__":
    cli_main(run, __doc__, SCALES)
