"""The HTTP prediction service: what a client of /predict sees, in-process and under uvicorn.

Fixture: a data folder with an online store holding every online group (cards c1..c4,
merchants m1..m3; see tests/unit/test_serving.py) and a registry with two small real LightGBM
versions of ``fraud_model``, version 1 promoted to champion.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
import polars as pl
import pytest
from fastapi.testclient import TestClient

from fti_assets.lib.core.settings import PROJECT_ROOT, Settings
from fti_assets.lib.features.on_demand import ON_DEMAND_NAMES, compute_on_demand
from fti_assets.lib.inference.log import read_inference_logs
from fti_assets.lib.ingest.domain import MAX_AMOUNT
from fti_assets.lib.registry.model_registry import ModelRegistry
from fti_assets.lib.registry.predictor import Predictor
from fti_assets.lib.store.online import OnlineStore
from fti_assets.lib.training.train import TrainParams, TrainResult, train_model
from fti_assets.service.app import create_app
from fti_assets.specs.feature_groups import CARD_PROFILE_FEATURES
from fti_assets.specs.feature_views import FRAUD_FEATURES, resolved
from fti_assets.specs.inference_log import SERVICE_LOG
from tests.unit.test_serving import (
    assembler_for,
    group_tables,
    register,
    train_small_model,
    training_frame,
    write_online_store,
)

UTC_US = pl.Datetime("us", "UTC")
BODY = {
    "transaction_id": "tx-1",
    "card_id": "c1",
    "merchant_id": "m1",
    "amount": 250.0,
    "category": "electronics",
    "channel": "online",
    "transaction_time": "2026-09-12T10:30:00Z",
    "lat": 40.6,
    "lon": -73.8,
}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> list[TrainResult]:
    root = tmp_path_factory.mktemp("service-models")
    return [train_small_model(root / f"m{seed}", seed=seed) for seed in (21, 22)]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, models: list[TrainResult]) -> Path:
    """A data folder, built once: the online store and both versions, version 1 champion."""
    data_dir = tmp_path_factory.mktemp("service-template") / "data"
    write_online_store(data_dir / "online.sqlite", group_tables()).close()
    registry = ModelRegistry(data_dir / "registry.sqlite", data_dir / "models")
    for trained in models:
        register(registry, trained)
    registry.promote("fraud_model", 1)
    return data_dir


def copy_data(template: Path, data_dir: Path) -> Path:
    shutil.copytree(template, data_dir)
    # The alias file records absolute artifact paths: point them at this copy.
    aliases = data_dir / "models" / "fraud_model" / "aliases.json"
    aliases.write_text(aliases.read_text().replace(str(template), str(data_dir)))
    return data_dir


@pytest.fixture
def settings(tmp_path: Path, template: Path) -> Settings:
    data_dir = copy_data(template, tmp_path / "data")
    return Settings.for_data_dir(data_dir)


@pytest.fixture
def registry(settings: Settings) -> ModelRegistry:
    return ModelRegistry(settings.registry_path, settings.layout.models_dir)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings, alias_check_interval_s=0, log_flush_interval_s=0.05)
    with TestClient(app) as test_client:
        yield test_client


def expected_vector(settings: Settings, body: dict) -> dict:
    at = datetime.fromisoformat(body["transaction_time"]).astimezone(UTC)
    fields = {**body, "transaction_time": at}
    with OnlineStore(settings.online_path, readonly=True) as store:
        return assembler_for(store).vector(fields).values


def expected_probability(settings: Settings, trained: TrainResult, body: dict) -> float:
    predictor = Predictor.load(trained.artifact_dir, expected_sha256=trained.sha256)
    return predictor.predict_one(expected_vector(settings, body))


def test_prediction_is_the_champion_on_the_assembled_features(
    client: TestClient, settings: Settings, models: list[TrainResult]
) -> None:
    response = client.post("/predict", json=BODY)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["fraud_probability"] == expected_probability(settings, models[0], BODY)
    assert 0 < body["fraud_probability"] < 1
    assert (body["model_name"], body["model_version"]) == ("fraud_model", 1)
    assert body["model_sha256"] == models[0].sha256
    assert body["fallback"] is False and body["unknown_entities"] == []
    event_times = body["features_event_time"]
    assert set(event_times) == {
        "card_transaction_features",
        "card_daily_features",
        "merchant_daily_features",
        "card_profile_features",
        "merchant_profile_features",
    }
    assert all(t is not None and t < BODY["transaction_time"] for t in event_times.values())


@pytest.mark.parametrize(
    ("card", "merchant", "unknown"),
    [
        ("c-unknown", "m1", ["card_id=c-unknown"]),
        ("c1", "m3", ["merchant_id=m3"]),
    ],
)
def test_unknown_card_or_merchant_falls_back_to_missing_features(
    client: TestClient,
    settings: Settings,
    models: list[TrainResult],
    card: str,
    merchant: str,
    unknown: list[str],
) -> None:
    request = {**BODY, "card_id": card, "merchant_id": merchant}
    response = client.post("/predict", json=request)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["fallback"] is True
    assert body["unknown_entities"] == unknown
    prefix = "card_" if card == "c-unknown" else "merchant_"
    missing = {g for g, t in body["features_event_time"].items() if t is None}
    assert missing and all(g.startswith(prefix) for g in missing)
    assert body["fraud_probability"] == expected_probability(settings, models[0], request)


def test_a_replayed_old_request_does_not_use_newer_features(client: TestClient) -> None:
    old = {**BODY, "transaction_time": "2026-09-02T00:00:00+02:00"}
    body = client.post("/predict", json=old).json()
    assert "card_transaction_features" in body["stale_groups"]
    assert body["features_event_time"]["card_transaction_features"] is None
    assert body["fallback"] is True


def _raw(text: str) -> bytes:
    return text.encode()


BAD_INPUTS = [
    ("missing field", {k: v for k, v in BODY.items() if k != "amount"}, "amount"),
    ("wrong type", {**BODY, "card_id": 17}, "card_id"),
    ("amount as text", {**BODY, "amount": "12.5"}, "amount"),
    ("NaN amount", _raw(json.dumps(BODY).replace("250.0", "NaN")), "amount"),
    ("infinite amount", _raw(json.dumps(BODY).replace("250.0", "Infinity")), "amount"),
    ("negative amount", {**BODY, "amount": -0.01}, "amount"),
    ("huge amount", {**BODY, "amount": MAX_AMOUNT + 1}, "amount"),
    ("naive timestamp", {**BODY, "transaction_time": "2026-09-12T10:30:00"}, "transaction_time"),
    ("garbage timestamp", {**BODY, "transaction_time": "yesterday-ish"}, "transaction_time"),
    ("numeric timestamp", {**BODY, "transaction_time": 1_789_000_000}, "transaction_time"),
    ("unknown category", {**BODY, "category": "weapons"}, "category"),
    ("unknown channel", {**BODY, "channel": "fax"}, "channel"),
    ("latitude out of range", {**BODY, "lat": 91.0}, "lat"),
    ("empty id", {**BODY, "transaction_id": ""}, "transaction_id"),
    ("extra field", {**BODY, "is_fraud": 1}, "is_fraud"),
    ("malformed JSON", _raw('{"transaction_id": "tx-1", '), "body"),
    ("not an object", [BODY], "body"),
]


@pytest.mark.parametrize(("case", "payload", "field"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_is_a_422_naming_the_field(
    client: TestClient, case: str, payload: object, field: str
) -> None:
    content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    response = client.post(
        "/predict", content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, (case, response.text)
    body = response.json()
    assert field in [error["field"] for error in body["detail"]], body
    assert field in body["message"]


def test_batch_errors_name_the_transaction(client: TestClient) -> None:
    transactions = [BODY, {**BODY, "amount": -1.0}]
    response = client.post("/predict/batch", json={"transactions": transactions})
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["detail"]] == ["transactions[1].amount"]
    too_many = client.post("/predict/batch", json={"transactions": [BODY] * 1001})
    assert too_many.status_code == 422
    assert too_many.json()["detail"][0]["field"] == "transactions"
    assert client.post("/predict/batch", json={"transactions": []}).status_code == 422


def test_oversized_bodies_are_refused_with_413(client: TestClient) -> None:
    big = b'{"transaction_id": "' + b"x" * (2 << 20) + b'"}'
    headers = {"content-type": "application/json"}
    assert client.post("/predict", content=big, headers=headers).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: the streamed bytes are counted
        for start in range(0, len(big), 64 << 10):
            yield big[start : start + (64 << 10)]

    streamed = client.post("/predict", content=chunks(), headers=headers)
    assert streamed.status_code == 413
    assert client.post("/predict", json=BODY).status_code == 200  # the service is fine


def test_fast_path_answers_exactly_like_the_fastapi_routes(settings: Settings) -> None:
    bodies = [
        (path, json.dumps(payload).encode() if not isinstance(payload, bytes) else payload)
        for path, payload in [
            ("/predict", BODY),
            ("/predict", {**BODY, "card_id": "nobody", "merchant_id": "m3"}),
            ("/predict", {**BODY, "transaction_time": "2026-09-12T12:30:00.5+02:00"}),
            ("/predict/batch", {"transactions": [BODY, {**BODY, "card_id": "c2"}]}),
            *(("/predict", case[1]) for case in BAD_INPUTS),
            ("/predict/batch", {"transactions": [BODY, {**BODY, "lat": "north"}]}),
        ]
    ]
    headers = {"content-type": "application/json"}
    answers = {}
    for fast_path in (True, False):
        app = create_app(settings, alias_check_interval_s=0, fast_path=fast_path)
        with TestClient(app) as client:
            answers[fast_path] = [
                (r.status_code, r.headers["content-type"], r.json())
                for r in (client.post(path, content=body, headers=headers) for path, body in bodies)
            ]
    assert [a[0] for a in answers[True]].count(200) == 4
    assert answers[True] == answers[False]


def test_unknown_routes_are_404(client: TestClient) -> None:
    assert client.post("/predictions", json=BODY).status_code == 404
    assert client.get("/").status_code == 404


def test_batch_predictions_equal_single_predictions_in_order(client: TestClient) -> None:
    transactions = [
        {**BODY, "transaction_id": f"b{i}", "card_id": card, "amount": 10.0 * (i + 1)}
        for i, card in enumerate(["c1", "c2", "c3", "c4", "nobody", "c1"])
    ]
    response = client.post("/predict/batch", json={"transactions": transactions})
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert [p["transaction_id"] for p in predictions] == [t["transaction_id"] for t in transactions]
    singles = [client.post("/predict", json=t).json() for t in transactions]
    assert predictions == singles


def test_promote_and_rollback_are_served_without_restart(
    client: TestClient, registry: ModelRegistry, settings: Settings, models: list[TrainResult]
) -> None:
    first = client.post("/predict", json=BODY).json()
    registry.promote("fraud_model", 2)
    second = client.post("/predict", json=BODY).json()
    assert (second["model_version"], second["model_sha256"]) == (2, models[1].sha256)
    assert second["fraud_probability"] == expected_probability(settings, models[1], BODY)
    assert second["fraud_probability"] != first["fraud_probability"]
    registry.rollback("fraud_model")
    third = client.post("/predict", json=BODY).json()
    assert third["model_version"] == 1
    assert third["fraud_probability"] == first["fraud_probability"]


def test_a_rollback_moves_the_model_and_its_feature_view_together(
    client: TestClient, registry: ModelRegistry, tmp_path: Path
) -> None:
    """v3 is trained on a NEW feature view version (without the merchant groups): promoted, the
    service builds v3's vectors through that view; rolled back, v1 with v1's view again — no
    restart, nothing else to move."""
    narrow = dataclasses.replace(
        FRAUD_FEATURES,
        version=FRAUD_FEATURES.version + 1,
        selections=tuple(s for s in FRAUD_FEATURES.selections if not s.group.startswith("merch")),
    )
    inputs, categorical = resolved(narrow).input_columns()
    trained = train_model(
        training_frame(3000, 5), training_frame(1000, 6), "is_fraud",
        [c for c in inputs if c not in categorical], categorical,
        TrainParams(n_estimators=10, early_stopping_rounds=None, min_child_samples=20),
        tmp_path / "narrow",
    )  # fmt: skip
    record = {"name": narrow.name, "version": narrow.version,
              "fingerprint": narrow.fingerprint(), "definition": narrow.to_dict()}  # fmt: skip
    v3 = registry.register(
        "fraud_model", trained.artifact_dir, training_dataset_version="v0009",
        feature_group_versions={}, params={}, metrics={}, code_version="test",
        feature_view=record,
    ).version  # fmt: skip

    def served() -> tuple[int, set[str]]:
        body = client.post("/predict", json=BODY).json()
        return body["model_version"], set(body["features_event_time"])

    assert served() == (1, {s.group for s in FRAUD_FEATURES.selections})
    registry.promote("fraud_model", v3)
    assert served() == (v3, {s.group for s in narrow.selections})
    registry.rollback("fraud_model")
    assert served() == (1, {s.group for s in FRAUD_FEATURES.selections})
    status = client.get("/ready").json()
    assert "merchant_daily_features" in json.dumps(status)


ADMIN_TOKEN = "s3cret-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def test_admin_reload_picks_up_the_champion_at_once(
    settings: Settings, registry: ModelRegistry
) -> None:
    app = create_app(
        dataclasses.replace(settings, admin_token=ADMIN_TOKEN), alias_check_interval_s=3600
    )
    with TestClient(app) as client:
        assert client.post("/predict", json=BODY).json()["model_version"] == 1
        registry.promote("fraud_model", 2)
        assert client.post("/predict", json=BODY).json()["model_version"] == 1
        reloaded = client.post("/admin/reload", headers=ADMIN)
        assert reloaded.status_code == 200
        assert reloaded.json()["model"]["version"] == 2
        assert client.post("/predict", json=BODY).json()["model_version"] == 2


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ({}, "need 'Authorization: Bearer"),
        ({"Authorization": "Bearer wrong-token"}, "not the right one"),
        ({"Authorization": f"Bearer {ADMIN_TOKEN}x"}, "not the right one"),
        ({"Authorization": f"Bearer {ADMIN_TOKEN[:-1]}"}, "not the right one"),
        ({"Authorization": f"Basic {ADMIN_TOKEN}"}, "need 'Authorization: Bearer"),
        ({"Authorization": ADMIN_TOKEN}, "need 'Authorization: Bearer"),
        ({"Authorization": "Bearer \u00e9t\u00e9".encode()}, "not the right one"),
    ],
)
def test_admin_endpoints_refuse_a_missing_or_wrong_token(
    settings: Settings, registry: ModelRegistry, headers: dict[str, str | bytes], why: str
) -> None:
    app = create_app(
        dataclasses.replace(settings, admin_token=ADMIN_TOKEN), alias_check_interval_s=3600
    )
    with TestClient(app) as client:
        registry.promote("fraud_model", 2)
        refused = client.post("/admin/reload", headers=headers)
        assert refused.status_code == 401, refused.text
        assert refused.headers["www-authenticate"] == "Bearer"
        assert why in refused.json()["detail"]
        assert ADMIN_TOKEN not in refused.text
        # Nothing was reloaded: the alias change is still unnoticed.
        assert client.post("/predict", json=BODY).json()["model_version"] == 1


def test_admin_endpoints_are_disabled_without_a_token(settings: Settings) -> None:
    assert settings.admin_token == ""
    with TestClient(create_app(settings)) as client:
        for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer x"}):
            disabled = client.post("/admin/reload", headers=headers)
            assert disabled.status_code == 404
            assert "FTI_ADMIN_TOKEN" in disabled.json()["detail"]
        schema = client.get("/openapi.json").json()
        assert schema["paths"]["/admin/reload"]["post"]["security"] == [{"HTTPBearer": []}]


def test_admin_token_comes_from_the_environment_and_is_never_shown(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FTI_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FTI_ADMIN_TOKEN", ADMIN_TOKEN)
    settings = Settings.from_env()
    assert settings.admin_token == ADMIN_TOKEN
    assert ADMIN_TOKEN not in repr(settings)
    monkeypatch.setenv("FTI_ADMIN_TOKEN", "  ")
    assert Settings.from_env().admin_token == ""


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["reasons"] == []
    assert body["model"]["loaded"]["version"] == 1
    assert body["online_store"]["groups"]["card_profile_features"]["row_count"] == 4
    assert client.get("/openapi.json").json()["paths"]["/predict"]["post"]
    assert client.get("/docs").status_code == 200


def test_without_model_or_online_store_predictions_are_503(tmp_path: Path) -> None:
    data_dir = tmp_path / "empty"
    settings = dataclasses.replace(Settings.for_data_dir(data_dir), admin_token=ADMIN_TOKEN)
    with TestClient(create_app(settings, alias_check_interval_s=0)) as client:
        response = client.post("/predict", json=BODY)
        assert response.status_code == 503
        assert "no 'champion' alias" in response.json()["detail"]
        ready = client.get("/ready")
        assert ready.status_code == 503
        reasons = " ".join(ready.json()["reasons"])
        assert "champion" in reasons and "online.sqlite" in reasons
        assert client.get("/health").status_code == 200
        assert client.post("/admin/reload", headers=ADMIN).status_code == 503


def test_missing_online_store_is_503_and_picked_up_once_written(
    settings: Settings, tmp_path: Path
) -> None:
    late = dataclasses.replace(settings, online_path=tmp_path / "late" / "online.sqlite")
    with TestClient(create_app(late, alias_check_interval_s=0)) as client:
        response = client.post("/predict", json=BODY)
        assert response.status_code == 503
        assert "late/online.sqlite" in response.json()["detail"]
        write_online_store(late.online_path, group_tables()).close()
        time.sleep(1.1)  # the service retries opening the store once a second
        assert client.post("/predict", json=BODY).status_code == 200
        assert client.get("/ready").status_code == 200


def test_a_broken_new_champion_leaves_the_previous_one_serving(
    client: TestClient, registry: ModelRegistry
) -> None:
    registry.promote("fraud_model", 2)  # verified now, altered before the service loads it
    transforms = registry.get("fraud_model", 2).artifact_path / "transforms.json"
    transforms.chmod(0o644)
    transforms.write_text(transforms.read_text() + " ")
    response = client.post("/predict", json=BODY)
    assert response.status_code == 200
    assert response.json()["model_version"] == 1
    ready = client.get("/ready")
    assert ready.status_code == 200  # still serving: not a reason to leave the rotation
    assert "TamperedModelError" in ready.json()["model"]["warning"]
    assert ready.json()["model"]["alias_version"] == 2


def test_an_online_store_without_a_group_is_not_ready(tmp_path: Path, template: Path) -> None:
    data_dir = copy_data(template, tmp_path / "data")
    partial = data_dir / "partial.sqlite"
    tables = group_tables()
    with OnlineStore(partial) as store:
        store.write_group(CARD_PROFILE_FEATURES, tables[CARD_PROFILE_FEATURES.name])
    settings = dataclasses.replace(Settings.for_data_dir(data_dir), online_path=partial)
    with TestClient(create_app(settings)) as client:
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert "lacks feature group 'card_transaction_features'" in " ".join(
            ready.json()["reasons"]
        )
        response = client.post("/predict", json=BODY)
        assert response.status_code == 503
        assert "card_transaction_features" in response.json()["detail"]


def test_logged_vectors_are_the_ones_scored(client: TestClient, settings: Settings) -> None:
    requests = [
        BODY,
        {**BODY, "transaction_id": "tx-2", "card_id": "c4", "merchant_id": "m3"},
        {**BODY, "transaction_id": "tx-3", "transaction_time": "2026-09-12T12:30:00+02:00"},
    ]
    responses = [client.post("/predict", json=r).json() for r in requests]
    batch = client.post("/predict/batch", json={"transactions": requests}).json()["predictions"]
    client.__exit__(None, None, None)  # shut the app down: the lifespan flushes the log

    logs = read_inference_logs(settings.layout.inference_log_dir, SERVICE_LOG)
    assert logs.height == 6
    assert logs["transaction_id"].to_list() == ["tx-1", "tx-2", "tx-3"] * 2
    assert logs["probability"].to_list() == [r["fraud_probability"] for r in responses + batch]
    assert logs["model_version"].to_list() == [1] * 6
    assert logs["unknown_entities"].to_list()[1] == ["card_id=c4", "merchant_id=m3"]
    assert logs["transaction_time"][2] == datetime.fromisoformat("2026-09-12T10:30:00+00:00")
    assert (logs["latency_ms"] > 0).all()
    for request, features in zip(requests * 2, logs["features"], strict=True):
        expected = expected_vector(settings, request)
        assert orjson.loads(features) == orjson.loads(
            orjson.dumps(expected, option=orjson.OPT_UTC_Z)
        )


def _typed_frame(vector: dict) -> pl.DataFrame:
    """One logged vector (JSON values) as a frame with the dtypes of a training dataset."""
    frame = pl.DataFrame([vector])
    casts = []
    for name, dtype in frame.schema.items():
        if name == "transaction_time" or name.endswith("__event_time"):
            target = UTC_US
        elif name.endswith(("__account_open_date", "__feature_date")):
            target = pl.Date()
        else:
            continue
        column = pl.col(name)
        if dtype == pl.Null:
            casts.append(column.cast(target))
        elif target == UTC_US:
            casts.append(column.str.to_datetime(time_unit="us", time_zone="UTC"))
        else:
            casts.append(column.str.to_date())
    return frame.with_columns(casts)


def test_logged_on_demand_features_equal_the_offline_computation(
    client: TestClient, settings: Settings
) -> None:
    # Train/serve parity: the on-demand features the service logged are what the frame
    # function that builds training datasets computes from the same logged inputs.
    client.post("/predict", json=BODY)
    client.post("/predict", json={**BODY, "transaction_id": "tx-2", "card_id": "c4"})
    client.__exit__(None, None, None)
    logs = read_inference_logs(settings.layout.inference_log_dir, SERVICE_LOG)
    assert logs.height == 2
    for features in logs["features"]:
        served = orjson.loads(features)
        inputs = _typed_frame({k: v for k, v in served.items() if k not in ON_DEMAND_NAMES})
        offline = compute_on_demand(inputs).row(0, named=True)
        assert {n: served[n] for n in ON_DEMAND_NAMES} == {n: offline[n] for n in ON_DEMAND_NAMES}
    assert orjson.loads(logs["features"][0])["distance_from_last_km"] is not None


# ----------------------------------------------------------------------------------------------
# A real uvicorn process
# ----------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_up(url: str, process: subprocess.Popen, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"server at {url} not up within {timeout_s} s")


@pytest.mark.slow
def test_uvicorn_process_serves_and_flushes_the_log_on_sigterm(settings: Settings) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "FTI_DATA_DIR": str(settings.data_dir),
        "FTI_LAKE_CATALOG": settings.lake.catalog,
        "FTI_LAKE_DATA_PATH": settings.lake.data_path,
        "FTI_ONLINE_PATH": str(settings.online_path),
        "FTI_REGISTRY_PATH": str(settings.registry_path),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "fti_assets.service.server", "--port", str(port)],
        env=env,
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, process)
        assert httpx.get(f"{url}/ready").status_code == 200
        response = httpx.post(f"{url}/predict", json=BODY)
        assert response.status_code == 200, response.text
        assert response.json()["model_version"] == 1
        assert httpx.post(f"{url}/predict", content=b"{", headers={}).status_code == 422
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    # uvicorn shuts down gracefully, then re-raises the signal it caught.
    assert process.returncode in (0, -signal.SIGTERM), output.decode()
    assert b"Application shutdown complete" in output
    logs = read_inference_logs(settings.layout.inference_log_dir, SERVICE_LOG)
    assert logs["transaction_id"].to_list() == ["tx-1"]
    assert logs["probability"][0] == response.json()["fraud_probability"]


def test_started_app_takes_its_long_lived_objects_out_of_gc_scans(settings: Settings) -> None:
    import gc

    gc.unfreeze()
    try:
        with TestClient(create_app(settings, freeze_gc=False)) as client:
            assert client.get("/ready").status_code == 200
            assert gc.get_freeze_count() == 0  # embedding: the host process's collector untouched
        with TestClient(create_app(settings)) as client:
            assert gc.get_freeze_count() > 10_000  # libraries, model, store handles
            assert client.post("/predict", json=BODY).status_code == 200
    finally:
        gc.unfreeze()
