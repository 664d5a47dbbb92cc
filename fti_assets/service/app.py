"""HTTP prediction service: the champion model scored on online + on-demand features.

Endpoints:

* ``POST /predict`` — one :class:`TransactionRequest` → :class:`PredictionResponse`;
* ``POST /predict/batch`` — ``{"transactions": [...]}`` (1 to :data:`MAX_BATCH`) →
  ``{"predictions": [...]}``, in request order, with one online-store query per group;
* ``GET /health`` — liveness: 200 while the process runs;
* ``GET /ready`` — readiness: 200 only when a model is loaded, the online store answers with
  every online feature group at the version the code expects and the event log answers;
  otherwise 503 with the reasons;
* ``POST /admin/reload`` — re-read the champion alias now (see "Admin endpoints" below);
* ``/openapi.json`` and ``/docs``.

The champion of ``model_name`` is read from the registry's alias file and re-checked at most
every ``alias_check_interval_s`` on the request path, together with the registry's SQLite file
(one read-only query: a file left behind by a crash is bypassed, the service never writes the
registry); a promote or rollback is served from the next check on (the new version is loaded
by the request that notices it).
If a new version fails to load (tampered file, features the service does not build), the
previous one keeps serving and ``/ready`` stays 200 with a ``warning`` naming the error: taking
every replica out of rotation would turn one bad promote into an outage.

Admin endpoints (``/admin/...``) require ``Authorization: Bearer <token>`` where the token is
the environment variable ``FTI_ADMIN_TOKEN`` (:attr:`Settings.admin_token`). With the variable
unset or empty they are disabled and answer 404 saying so; a missing or wrong token gets a 401
with ``WWW-Authenticate: Bearer``. The token is compared in constant time
(:func:`hmac.compare_digest`) and never logged. The service binds to 127.0.0.1 unless told
otherwise (``fti serve --host``); see docs/security.md.

Input rules: a request with a missing, extra (``extra="forbid"``: a typo or a stray label
column is a client bug better reported than ignored) or ill-typed field, an id that is empty,
longer than 128 characters or holds a control (non-printable) character, a non-finite or
out-of-range number, a ``transaction_time`` that is not an ISO 8601 string with a time zone,
an unknown category/channel or malformed JSON gets a 422 whose ``detail`` names each bad
field; a body over ``max_body_bytes`` (Content-Length or counted while streaming) a 413; an
unknown route a 404. No model, no online store or no event log: 503 with the reason.

Every scored transaction is appended to the event log (``FTI_EVENT_LOG_URL``) before its
response is sent, so the streaming pipeline (``fti stream``) can apply it to the card's window
features before the card's next transaction; if the append fails the answer is a 503, never a
200 for a transaction the log lacks. The features are read before the append: a pipeline fast
enough to apply the transaction first must not turn its own card row into a "stale" one. Every
prediction is also queued to the :class:`~fti_assets.lib.inference.log.InferenceLogger` (no I/O
on the request path) and flushed on shutdown. Handlers are ``async`` and do their few hundred
microseconds of CPU work on the event loop (online lookups, on-demand features, one LightGBM
row): a thread-pool hop would cost more than it saves. Valid prediction requests skip
FastAPI's per-request machinery through :class:`PredictFastPath` (same answers, measured by
benchmarks/bench_service.py); the FastAPI routes still define the API and answer every other
request.
"""

from __future__ import annotations

import gc
import hmac
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

import orjson
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fti_assets.lib.core.settings import Settings
from fti_assets.lib.core.store_urls import display_url
from fti_assets.lib.features.views import ResolvedView
from fti_assets.lib.inference.log import InferenceLogger
from fti_assets.lib.inference.serving import (
    AssembledFeatures,
    ChampionModel,
    FeatureAssembler,
    LoadedModel,
    ModelUnavailableError,
)
from fti_assets.lib.ingest.domain import CATEGORIES, CHANNELS, MAX_AMOUNT
from fti_assets.lib.registry.model_registry import ModelRegistry
from fti_assets.lib.store.online import OnlineStoreBackend, OnlineStoreError, open_online_store
from fti_assets.lib.streaming.event_log import EventLog, EventLogError, open_event_log
from fti_assets.lib.streaming.events import encode_transaction
from fti_assets.specs.feature_views import view_of_model
from fti_assets.specs.models import model_spec

logger = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_MODEL_NAME = "fraud_model"
MAX_BATCH = 1000
MAX_BODY_BYTES = 1 << 20
_STORE_RETRY_S = 1.0


def _printable(value: str) -> str:
    # An id with a control character is a client bug, and would reach logs verbatim.
    for position, char in enumerate(value):
        if not char.isprintable():
            raise ValueError(
                f"must hold printable characters only; found {char!r} at position {position}"
            )
    return value


Identifier = Annotated[
    str, StringConstraints(min_length=1, max_length=128), AfterValidator(_printable)
]
Latitude = Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False, strict=True)]
Longitude = Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False, strict=True)]


def _iso_text_only(value: Any) -> Any:
    # Pydantic would read a number as a Unix time, guessing seconds or milliseconds.
    if not isinstance(value, str | datetime):
        raise ValueError(
            "expected an ISO 8601 date-time string with a time zone, e.g. '2026-09-01T10:00:00Z'"
        )
    return value


_EXAMPLE = {
    "transaction_id": "tx_000001",
    "card_id": "card_000042",
    "merchant_id": "merch_00007",
    "amount": 42.5,
    "category": "grocery",
    "channel": "in_store",
    "transaction_time": "2026-09-01T10:00:00Z",
    "lat": 40.71,
    "lon": -74.0,
}


class TransactionRequest(BaseModel):
    """One card transaction to score (the columns of the landing files)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_EXAMPLE]})

    transaction_id: Identifier
    card_id: Identifier
    merchant_id: Identifier
    amount: Annotated[float, Field(ge=0, le=MAX_AMOUNT, allow_inf_nan=False, strict=True)]
    category: Literal[CATEGORIES]  # type: ignore[valid-type]
    channel: Literal[CHANNELS]  # type: ignore[valid-type]
    transaction_time: Annotated[
        AwareDatetime,
        BeforeValidator(_iso_text_only),
        Field(description="ISO 8601 with a time zone (naive times are refused)"),
    ]
    lat: Latitude
    lon: Longitude

    @field_validator("transaction_time")
    @classmethod
    def _to_utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    transactions: Annotated[list[TransactionRequest], Field(min_length=1, max_length=MAX_BATCH)]


class PredictionResponse(BaseModel):
    transaction_id: str
    fraud_probability: float
    model_name: str
    model_version: int
    model_sha256: str
    features_event_time: dict[str, datetime | None] = Field(
        description="Per online feature group, the event_time of the row used (null: none)"
    )
    unknown_entities: list[str] = Field(description="Entities some group has no row for")
    stale_groups: list[str] = Field(
        description="Groups whose stored row is not earlier than transaction_time (unused)"
    )
    fallback: bool = Field(description="True when some group's features were missing")


class BatchResponse(BaseModel):
    predictions: list[PredictionResponse]


class ErrorResponse(BaseModel):
    detail: Any


def _json(payload: Any, status_code: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code, media_type="application/json")


class ServiceUnavailableError(Exception):
    """The service cannot predict right now (no model, no online store)."""


class PredictionService:
    """State of one worker process: the champion, the online store, the event log and the
    inference log."""

    def __init__(
        self,
        settings: Settings,
        model_name: str = DEFAULT_MODEL_NAME,
        *,
        alias_check_interval_s: float = 1.0,
        log_flush_interval_s: float = 0.5,
    ) -> None:
        self.settings = settings
        spec = model_spec(model_name)
        # The vector holds the request's fields a training row holds, and its prediction time.
        self.request_fields = spec.label.request_columns
        self.time_field = spec.label.time_column
        self.model = ChampionModel(
            settings.layout.models_dir,
            model_name,
            check_interval_s=alias_check_interval_s,
            resolve_view=self._view_of_version,
            required_features=lambda view: FeatureAssembler.names_for(
                view, (*self.request_fields, self.time_field)
            ),
            registry_path=settings.registry_path,
        )
        self.inference_log = InferenceLogger(
            settings.layout.inference_log_dir, flush_interval_s=log_flush_interval_s
        )
        self._store: OnlineStoreBackend | None = None
        self._assemblers: dict[str, FeatureAssembler] = {}  # one per feature view version
        self._store_error: str | None = None
        self._next_store_try = float("-inf")
        self._event_log: EventLog | None = None
        self._event_log_error: str | None = None
        self._next_event_log_try = float("-inf")

    # -- dependencies -----------------------------------------------------------------------

    def _view_of_version(self, version: int) -> ResolvedView:
        """The feature view a registered version was trained on (the registry's copy)."""
        registry = ModelRegistry(self.settings.registry_path, self.settings.layout.models_dir)
        return view_of_model(registry, registry.get(self.model.name, version))

    def start(self) -> None:
        """Load the champion and open the online store up front (errors are only logged)."""
        self.model.get()
        self._store_or_none()
        self._event_log_or_none()

    def close(self) -> None:
        self.inference_log.close()
        if self._store is not None:
            self._store.close()
        if self._event_log is not None:
            self._event_log.close()

    def _event_log_or_none(self) -> EventLog | None:
        if self._event_log is not None:
            return self._event_log
        now = time.monotonic()
        if now < self._next_event_log_try:
            return None
        self._next_event_log_try = now + _STORE_RETRY_S
        url = display_url(self.settings.event_log_url)
        try:
            self._event_log = open_event_log(self.settings.event_log_url)
        except EventLogError as exc:
            self._event_log_error = f"event log {url} cannot be opened: {exc}"
            logger.warning("%s", self._event_log_error)
            return None
        self._event_log_error = None
        logger.info("event log %s opened", url)
        return self._event_log

    def _append_events(self, fields: Sequence[dict[str, Any]]) -> None:
        """Append the scored transactions to the event log; a 503 if that is impossible."""
        log = self._event_log_or_none()
        if log is None:
            raise ServiceUnavailableError(self._event_log_error or "event log not open yet")
        try:
            log.append([encode_transaction(f) for f in fields])
        except EventLogError as exc:
            raise ServiceUnavailableError(f"event log error: {exc}") from exc

    def _store_or_none(self) -> OnlineStoreBackend | None:
        if self._store is not None:
            return self._store
        now = time.monotonic()
        if now < self._next_store_try:
            return None
        self._next_store_try = now + _STORE_RETRY_S
        url = display_url(self.settings.online_url)
        try:
            store = open_online_store(self.settings.online_url, readonly=True)
        except OnlineStoreError as exc:
            self._store_error = f"online store {url} cannot be opened: {exc}"
            logger.warning("%s", self._store_error)
            return None
        self._store, self._store_error = store, None
        logger.info("online store %s opened", url)
        return self._store

    def _ready_model(self) -> LoadedModel:
        model = self.model.get()
        if model is None:
            raise ServiceUnavailableError(self.model.status()["error"] or "no model loaded")
        return model

    def _ready_assembler(self, model: LoadedModel) -> FeatureAssembler:
        """The assembler of the loaded model's feature view (the one it was trained on)."""
        store = self._store_or_none()
        if store is None:
            raise ServiceUnavailableError(self._store_error or "online store not open yet")
        if model.view is None:
            raise ServiceUnavailableError(
                f"model {model.name} v{model.version} has no feature view"
            )
        key = model.view.view.key
        assembler = self._assemblers.get(key)
        if assembler is None:
            assembler = FeatureAssembler(
                store, model.view, request_fields=self.request_fields, time_field=self.time_field
            )
            self._assemblers[key] = assembler
        return assembler

    # -- predictions ------------------------------------------------------------------------

    def predict(self, request: TransactionRequest) -> dict[str, Any]:
        started = time.perf_counter()
        model = self._ready_model()
        fields = request.model_dump()
        assembled = _lookup(lambda: self._ready_assembler(model).vector(fields))
        probability = model.predictor.predict_one(assembled.values)
        self._append_events([fields])
        latency_ms = (time.perf_counter() - started) * 1000.0
        return self._finish(fields, assembled, model, probability, latency_ms)

    def predict_batch(self, requests: Sequence[TransactionRequest]) -> list[dict[str, Any]]:
        started = time.perf_counter()
        model = self._ready_model()
        fields = [r.model_dump() for r in requests]
        vectors = _lookup(lambda: self._ready_assembler(model).vectors(fields))
        predict_one = model.predictor.predict_one
        probabilities = [predict_one(v.values) for v in vectors]
        self._append_events(fields)
        # Each record carries the batch's mean latency per transaction.
        latency_ms = (time.perf_counter() - started) * 1000.0 / len(requests)
        return [
            self._finish(f, v, model, p, latency_ms)
            for f, v, p in zip(fields, vectors, probabilities, strict=True)
        ]

    def _finish(
        self,
        fields: dict[str, Any],
        assembled: AssembledFeatures,
        model: LoadedModel,
        probability: float,
        latency_ms: float,
    ) -> dict[str, Any]:
        fields.update(
            model_name=model.name,
            model_version=model.version,
            model_sha256=model.sha256,
            probability=probability,
            latency_ms=latency_ms,
            fallback=assembled.fallback,
            unknown_entities=assembled.unknown_entities,
            stale_groups=assembled.stale,
            features=assembled.values,
        )
        self.inference_log.log(fields)
        return {
            "transaction_id": fields["transaction_id"],
            "fraud_probability": probability,
            "model_name": model.name,
            "model_version": model.version,
            "model_sha256": model.sha256,
            "features_event_time": assembled.event_times,
            "unknown_entities": assembled.unknown_entities,
            "stale_groups": assembled.stale,
            "fallback": assembled.fallback,
        }

    # -- readiness --------------------------------------------------------------------------

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        reasons: list[str] = []
        loaded = self.model.get()  # picks up an alias change first
        model_status = self.model.status()
        if loaded is None:
            reasons.append(model_status["error"] or "no model loaded")
        elif model_status["error"]:
            # The previous version still serves: ready, but say so.
            model_status["warning"] = model_status["error"]
        store_status: dict[str, Any] = {"url": display_url(self.settings.online_url)}
        store = self._store_or_none()
        if store is None:
            reasons.append(self._store_error or "online store not open yet")
        else:
            try:
                stored = {g["name"]: g for g in store.groups()}
            except OnlineStoreError as exc:
                stored = {}
                reasons.append(f"online store does not answer: {exc}")
            store_status["groups"] = {
                name: {k: g[k] for k in ("version", "row_count", "max_event_time")}
                for name, g in stored.items()
            }
            groups = [] if loaded is None or loaded.view is None else loaded.view.groups
            for spec in groups:
                group = stored.get(spec.name)
                if group is None:
                    reasons.append(f"online store lacks feature group {spec.name!r}")
                elif group["version"] != spec.version:
                    reasons.append(
                        f"online store serves {spec.name!r} version {group['version']}; "
                        f"the service expects version {spec.version}"
                    )
        log_status: dict[str, Any] = {"url": display_url(self.settings.event_log_url)}
        log = self._event_log_or_none()
        if log is None:
            reasons.append(self._event_log_error or "event log not open yet")
        else:
            try:
                log_status["end_offset"] = log.end_offset()
            except EventLogError as exc:
                reasons.append(f"event log does not answer: {exc}")
        ready = not reasons
        return ready, {
            "ready": ready,
            "reasons": reasons,
            "model": model_status,
            "online_store": store_status,
            "event_log": log_status,
        }


def _lookup(build: Callable[[], T]) -> T:
    """Run a feature lookup, turning a broken or incomplete online store into a 503."""
    try:
        return build()
    except KeyError as exc:  # a group missing from the store
        raise ServiceUnavailableError(str(exc.args[0]) if exc.args else str(exc)) from exc
    except OnlineStoreError as exc:
        raise ServiceUnavailableError(f"online store error: {exc}") from exc


# ----------------------------------------------------------------------------------------------
# Error responses
# ----------------------------------------------------------------------------------------------


def _field_name(loc: Sequence[Any]) -> str:
    """("body", "transactions", 3, "amount") -> "transactions[3].amount"; ("body",) -> "body"."""
    parts = list(loc[1:] if loc and loc[0] == "body" else loc)
    name = ""
    for part in parts:
        if isinstance(part, int):
            name += f"[{part}]"
        else:
            name += f".{part}" if name else str(part)
    return name or "body"


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = []
    for error in exc.errors():
        loc = error.get("loc", ())
        # A JSON syntax error's location is a character offset into the body.
        field = "body" if error.get("type") == "json_invalid" else _field_name(loc)
        message = str(error.get("msg", "invalid"))
        context = error.get("ctx") or {}
        if error.get("type") == "json_invalid" and "error" in context:
            message = f"{message}: {context['error']} at character {loc[-1]}"
        errors.append(
            {
                "field": field,
                "loc": [p if isinstance(p, int) else str(p) for p in loc],
                "msg": message,
                "type": str(error.get("type", "")),
            }
        )
    summary = "; ".join(f"{e['field']}: {e['msg']}" for e in errors)
    # The offending input is not echoed back: it may be NaN, which JSON cannot carry.
    return _json({"detail": errors, "message": f"invalid request: {summary}"}, 422)


async def _unavailable(request: Request, exc: Exception) -> Response:
    return _json({"detail": str(exc)}, 503)


# ----------------------------------------------------------------------------------------------
# Admin authentication
# ----------------------------------------------------------------------------------------------

ADMIN_DISABLED = (
    "admin endpoints are disabled: set the environment variable FTI_ADMIN_TOKEN to a secret "
    "and send it as 'Authorization: Bearer <token>'"
)
_bearer = HTTPBearer(auto_error=False, description="The value of FTI_ADMIN_TOKEN")


def admin_guard(token: str) -> Callable[..., None]:
    """A FastAPI dependency admitting only requests bearing ``token`` (404 when it is empty)."""
    expected = token.encode()

    def require_admin(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> None:
        if not expected:
            raise HTTPException(404, ADMIN_DISABLED)
        given = b"" if credentials is None else credentials.credentials.encode()
        if not hmac.compare_digest(given, expected):
            raise HTTPException(
                401,
                "admin endpoints need 'Authorization: Bearer <FTI_ADMIN_TOKEN>'"
                + ("" if credentials is None else "; the token sent is not the right one"),
                headers={"WWW-Authenticate": "Bearer"},
            )

    return require_admin


# ----------------------------------------------------------------------------------------------
# Fast path
# ----------------------------------------------------------------------------------------------


def _is_json(headers: Sequence[tuple[bytes, bytes]]) -> bool:
    """The request's Content-Type is JSON, as FastAPI decides before parsing a body."""
    for name, value in headers:
        if name == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json" or (
                media.startswith(b"application/") and media.endswith(b"+json")
            )
    return False


async def _send_json(send: Send, payload: Any, status: int) -> None:
    body = orjson.dumps(payload)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class PredictFastPath:
    """Serves valid ``POST /predict`` and ``/predict/batch`` requests straight from ASGI.

    FastAPI's per-request machinery (routing, dependency solving, ``json.loads`` then
    validation, exception wrappers) costs about as much CPU as the prediction itself:
    benchmarks/bench_service.py, section "Prediction service: cost of one request in process"
    in BENCHMARKS.md, a whole request through the ASGI app takes p50 589 µs / p99 948 µs with
    this fast path against 811 µs / 1,579 µs through the FastAPI routes only. This middleware
    validates the body in one step (``model_validate_json``) and calls the same
    :class:`PredictionService` method. Anything else — other routes, a non-JSON content type,
    and every body that does not validate — is replayed to the FastAPI routes, which define
    the API (OpenAPI schema, 422 messages): the
    fast path only skips work for requests those routes would accept, and answers as they do.
    It sits inside FastAPI's body-size limit, so an oversized body still gets its 413.
    """

    def __init__(self, app: ASGIApp, service: PredictionService) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not _is_json(scope["headers"]):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path != "/predict" and path != "/predict/batch":
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:
            return  # the client went away
        try:
            if path == "/predict":
                payload = self.service.predict(TransactionRequest.model_validate_json(body))
            else:
                batch = BatchRequest.model_validate_json(body)
                payload = {"predictions": self.service.predict_batch(batch.transactions)}
        except ValidationError:
            await self.app(scope, _replay(body, receive), send)
            return
        except ServiceUnavailableError as exc:
            await _send_json(send, {"detail": str(exc)}, 503)
            return
        await _send_json(send, payload, 200)


async def _read_body(receive: Receive) -> bytes | None:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that yields the already-read body once, then defers to the real one."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


# ----------------------------------------------------------------------------------------------
# The app
# ----------------------------------------------------------------------------------------------


def create_app(
    settings: Settings | None = None,
    model_name: str = DEFAULT_MODEL_NAME,
    *,
    alias_check_interval_s: float = 1.0,
    log_flush_interval_s: float = 0.5,
    max_body_bytes: int = MAX_BODY_BYTES,
    fast_path: bool = True,
    freeze_gc: bool = True,
) -> FastAPI:
    """The FastAPI app (``uvicorn --factory fti_assets.service.app:create_app``).

    ``settings`` defaults to :meth:`Settings.from_env` (FTI_DATA_DIR, FTI_ONLINE_URL, ...).
    ``fast_path=False`` serves predictions through the FastAPI routes only (same answers, more
    CPU per request; see :class:`PredictFastPath`). ``freeze_gc`` moves every object that
    exists once the app has started out of the garbage collector's scans (``gc.freeze``): it
    suits a process that only serves this app; pass False when embedding the app elsewhere.
    """
    service = PredictionService(
        settings or Settings.from_env(),
        model_name,
        alias_check_interval_s=alias_check_interval_s,
        log_flush_interval_s=log_flush_interval_s,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.start()
        if freeze_gc:
            # Everything loaded so far (libraries, model, store handles) lives as long as the
            # process: take it out of the collector's scans. Without this each full collection
            # walks it all and stalls requests for ~100 ms (p99.9 of 89 ms at 200 req/s).
            gc.collect()
            gc.freeze()
        try:
            yield
        finally:
            service.close()

    app = FastAPI(
        title="FTI fraud prediction service",
        description=(
            "Scores card transactions with the champion fraud model on online features "
            "(SQLite or Redis online store) plus on-demand features."
        ),
        version="1",
        lifespan=lifespan,
        max_body_size=max_body_bytes,
    )
    app.state.service = service
    if fast_path:
        app.add_middleware(PredictFastPath, service=service)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ServiceUnavailableError, _unavailable)
    errors: dict[int | str, dict[str, Any]] = {
        413: {"model": ErrorResponse, "description": "Body larger than the limit"},
        422: {"model": ErrorResponse, "description": "Invalid request; names the fields"},
        503: {"model": ErrorResponse, "description": "No model, online store or event log"},
    }

    @app.post("/predict", response_model=PredictionResponse, responses=errors)
    async def predict(transaction: TransactionRequest) -> Response:
        """Fraud probability of one transaction."""
        return _json(service.predict(transaction))

    @app.post("/predict/batch", response_model=BatchResponse, responses=errors)
    async def predict_batch(batch: BatchRequest) -> Response:
        """Fraud probabilities of up to 1000 transactions, in request order."""
        return _json({"predictions": service.predict_batch(batch.transactions)})

    @app.get("/health")
    async def health() -> Response:
        """Liveness: the process is up."""
        return _json({"status": "ok"})

    @app.get("/ready", responses={503: {"description": "Not ready; see reasons"}})
    async def ready() -> Response:
        """Readiness: a model is loaded and the online store serves every online group."""
        is_ready, status = service.readiness()
        return _json(status, 200 if is_ready else 503)

    admin = [Depends(admin_guard(service.settings.admin_token))]
    admin_errors: dict[int | str, dict[str, Any]] = {
        401: {"model": ErrorResponse, "description": "Missing or wrong bearer token"},
        404: {"model": ErrorResponse, "description": "Disabled: FTI_ADMIN_TOKEN is not set"},
        503: {"model": ErrorResponse, "description": "The champion cannot be loaded"},
    }

    @app.post("/admin/reload", responses=admin_errors, dependencies=admin)
    async def reload_model() -> Response:
        """Re-read the champion alias now and load its version (bearer token: FTI_ADMIN_TOKEN;
        disabled, 404, when that variable is unset)."""
        try:
            model = service.model.reload()
        except ModelUnavailableError as exc:
            raise HTTPException(503, str(exc)) from exc
        return _json({"model": model.describe()})

    return app
