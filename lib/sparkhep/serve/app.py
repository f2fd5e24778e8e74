"""The HTTP server: MLflow's scoring protocol, Open Inference Protocol V2, Prometheus metrics.

Endpoints (``{m}`` is a model name, see :mod:`sparkhep.serve.models`):

- MLflow: ``GET /ping``, ``GET /health``, ``GET /version``, ``POST /invocations``
  (``{"predictions": [...]}``). With several models loaded, choose one with ``?model=<m>`` or
  the header ``X-Sparkhep-Model: <m>``.
- V2: ``GET /v2``, ``GET /v2/health/live``, ``GET /v2/health/ready``, ``GET /v2/models/{m}``,
  ``GET /v2/models/{m}/ready``, ``POST /v2/models/{m}/infer``, and the same under
  ``/v2/models/{m}/versions/{v}`` (``v`` must be the version loaded).
- ``GET /metrics`` (Prometheus text format).

With a bearer token, every endpoint except the four health probes (``/ping``, ``/health``,
``/v2/health/live``, ``/v2/health/ready``) needs ``Authorization: Bearer <token>``: probes of
orchestrators rarely carry credentials and say nothing about the models or the data.

Requests are parsed once with :func:`json.loads` straight from the body bytes (no pydantic, no
pandas); small requests are scored on the event loop, since handing a one-event request to a
thread costs more than scoring it, and large ones in the thread pool. JSON responses never
hold NaN or infinity: such predictions are ``null``.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from sparkhep.serve.inputs import (
    Batch,
    InputError,
    json_numbers,
    parse_mlflow,
    parse_v2,
    score,
)
from sparkhep.serve.metrics import CONTENT_TYPE, ServerMetrics
from sparkhep.serve.models import LoadedModel, Loader, ModelSource, ModelStore

log = logging.getLogger(__name__)

DEFAULT_PORT = 8080
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
DEFAULT_POLL_INTERVAL = 30.0
MODEL_HEADER = "x-sparkhep-model"
OPEN_PATHS = frozenset({"/ping", "/health", "/v2/health/live", "/v2/health/ready"})
INLINE_BODY_BYTES = 64 * 1024
OUTPUT_NAME = "probability"
V2_DATATYPES = {
    "double": "FP64",
    "float": "FP32",
    "long": "INT64",
    "integer": "INT32",
    "boolean": "BOOL",
}
SETTINGS_ENV = "SPARKHEP_SERVE_SETTINGS"
_STATIC_ENDPOINTS = frozenset(
    {"/ping", "/health", "/version", "/invocations", "/metrics", "/v2", *OPEN_PATHS}
)


class RequestError(Exception):
    """A request the server answers with ``status`` and ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def create_app(
    sources: Sequence[str | ModelSource],
    *,
    loader: Loader | None = None,
    token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    poll_interval: float = DEFAULT_POLL_INTERVAL,
    tracking_uri: str | None = None,
) -> FastAPI:
    """The ASGI application serving ``sources``; the models are loaded before it returns.

    Args:
        sources: model URIs (``models:/m@alias``, ``models:/m/3``, ``runs:/…``, paths, each
            optionally ``NAME=URI``).
        loader: local model directory → scorer; default ``sparkhep.scoring.load_scoring_model``.
        token: when set, the bearer token every non-health request must carry.
        max_body_bytes: larger request bodies are answered with 413.
        poll_interval: seconds between alias checks while the app runs (0: never).
        tracking_uri: MLflow tracking/registry URI; default as the jobs use
            (``MLFLOW_TRACKING_URI`` or ``sqlite:///mlruns.db``).

    Returns:
        The FastAPI app; ``app.state.store`` holds the models, ``app.state.metrics`` the counts.
    """
    if loader is None:
        from sparkhep.scoring import load_scoring_model as loader
    if tracking_uri is None:
        from sparkhep.registry.tracking import tracking_uri as default_uri

        tracking_uri = default_uri()
    store = ModelStore(
        sources, loader=loader, tracking_uri=tracking_uri, poll_interval=poll_interval
    )
    store.load_all()
    metrics = ServerMetrics()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        store.start_polling()
        try:
            yield
        finally:
            store.stop_polling()

    app = FastAPI(
        title="sparkhep serve",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.store = store
    app.state.metrics = metrics
    app.add_middleware(
        ServingMiddleware, metrics=metrics, token=token, max_body_bytes=max_body_bytes
    )
    _add_routes(app, store, metrics)
    return app


def _add_routes(app: FastAPI, store: ModelStore, metrics: ServerMetrics) -> None:
    from sparkhep import __version__

    @app.get("/ping")
    @app.get("/health")
    async def ping() -> Response:
        return Response(content="\n", media_type="application/json")

    @app.get("/version")
    async def version() -> Response:
        models = {m.name: m.version for m in store.models()}
        return _json({"sparkhep": __version__, "models": models})

    @app.post("/invocations")
    async def invocations(request: Request) -> Response:
        body = await request.body()
        name = request.query_params.get("model") or request.headers.get(MODEL_HEADER)
        if len(body) > INLINE_BODY_BYTES:
            return await run_in_threadpool(_invocations, store, metrics, body, name)
        return _invocations(store, metrics, body, name)

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(content=metrics.render(store), media_type=CONTENT_TYPE)

    @app.get("/v2")
    async def server_metadata() -> Response:
        return _json({"name": "sparkhep", "version": __version__, "extensions": []})

    @app.get("/v2/health/live")
    async def live() -> Response:
        return _json({"live": True})

    @app.get("/v2/health/ready")
    async def ready() -> Response:
        return _json({"ready": len(store.models()) == len(store.names)})

    @app.get("/v2/models/{model}")
    @app.get("/v2/models/{model}/versions/{version}")
    async def model_metadata(model: str, version: str | None = None) -> Response:
        return _v2_call(lambda: _metadata(_v2_model(store, model, version)))

    @app.get("/v2/models/{model}/ready")
    @app.get("/v2/models/{model}/versions/{version}/ready")
    async def model_ready(model: str, version: str | None = None) -> Response:
        return _v2_call(lambda: {"name": _v2_model(store, model, version).name, "ready": True})

    @app.post("/v2/models/{model}/infer")
    @app.post("/v2/models/{model}/versions/{version}/infer")
    async def infer(request: Request, model: str, version: str | None = None) -> Response:
        body = await request.body()
        if len(body) > INLINE_BODY_BYTES:
            return await run_in_threadpool(_infer, store, metrics, body, model, version)
        return _infer(store, metrics, body, model, version)


def _json(content: Any, status: int = 200) -> Response:
    return Response(
        content=json.dumps(content, allow_nan=False, separators=(",", ":")),
        status_code=status,
        media_type="application/json",
    )


def _mlflow_error(status: int, message: str) -> Response:
    code = {400: "BAD_REQUEST", 401: "UNAUTHENTICATED", 404: "RESOURCE_DOES_NOT_EXIST"}.get(
        status, "INTERNAL_ERROR"
    )
    if status == 413:
        code = "REQUEST_LIMIT_EXCEEDED"
    return _json({"error_code": code, "message": message}, status)


def _v2_error(status: int, message: str) -> Response:
    return _json({"error": message}, status)


def _parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError as err:
        raise RequestError(400, f"malformed JSON in the request body: {err}") from err


def _score(loaded: LoadedModel, batch: Batch) -> list[float | None]:
    try:
        probabilities = score(loaded.scorer, batch, integer_columns=loaded.integer_columns)
    except ValueError as err:  # InputError, and the scorer's own checks of columns and values
        raise RequestError(400, str(err)) from err
    return json_numbers(probabilities)


def _invocations(
    store: ModelStore, metrics: ServerMetrics, body: bytes, name: str | None
) -> Response:
    try:
        loaded = _choose_model(store, name)
        batch = parse_mlflow(_parse_json(body), loaded.feature_names)
        predictions = _score(loaded, batch)
    except RequestError as err:
        return _mlflow_error(err.status, err.message)
    except InputError as err:
        return _mlflow_error(400, str(err))
    except Exception as err:
        log.exception("scoring failed")
        return _mlflow_error(500, f"scoring failed: {type(err).__name__}: {err}")
    metrics.scored(loaded.name, len(predictions))
    return _json({"predictions": predictions})


def _choose_model(store: ModelStore, name: str | None) -> LoadedModel:
    if name is None:
        if len(store.names) > 1:
            raise RequestError(
                400,
                f"this server serves several models {store.names!r}: choose one with "
                f"?model=<name> or the header {MODEL_HEADER}: <name>",
            )
        name = store.names[0]
    try:
        return store.get(name)
    except KeyError as err:
        raise RequestError(404, err.args[0]) from None


def _v2_model(store: ModelStore, name: str, version: str | None) -> LoadedModel:
    loaded = _choose_model(store, name)
    if version is not None and version != loaded.version:
        raise RequestError(
            404, f"model {name!r} has version {loaded.version!r} loaded, not {version!r}"
        )
    return loaded


def _v2_call(make: Callable[[], dict[str, Any]]) -> Response:
    try:
        return _json(make())
    except RequestError as err:
        return _v2_error(err.status, err.message)


def _metadata(loaded: LoadedModel) -> dict[str, Any]:
    scorer = loaded.scorer
    features = loaded.feature_names
    return {
        "name": loaded.name,
        "versions": [loaded.version] if loaded.version else [],
        "platform": f"sparkhep_{scorer.engine}",
        "inputs": [
            {
                "name": name,
                "datatype": V2_DATATYPES.get(loaded.column_types.get(name, "double"), "FP64"),
                "shape": [-1],
            }
            for name in features
        ],
        "outputs": [{"name": OUTPUT_NAME, "datatype": "FP64", "shape": [-1]}],
        "parameters": {
            "uri": loaded.source.uri,
            "engine": scorer.engine,
            "feature_matrix_shape": [-1, len(features)],
            "raw_branches": list(scorer.raw_branches),
            "jagged_counts_suffix": "__counts",
        },
    }


def _infer(
    store: ModelStore,
    metrics: ServerMetrics,
    body: bytes,
    name: str,
    version: str | None,
) -> Response:
    try:
        loaded = _v2_model(store, name, version)
        request = _parse_json(body)
        batch = parse_v2(request, loaded.feature_names)
        _check_requested_outputs(request)
        predictions = _score(loaded, batch)
    except RequestError as err:
        return _v2_error(err.status, err.message)
    except InputError as err:
        return _v2_error(400, str(err))
    except Exception as err:
        log.exception("scoring failed")
        return _v2_error(500, f"scoring failed: {type(err).__name__}: {err}")
    metrics.scored(loaded.name, len(predictions))
    answer: dict[str, Any] = {"model_name": loaded.name}
    if loaded.version:
        answer["model_version"] = loaded.version
    if "id" in request:
        answer["id"] = request["id"]
    answer["outputs"] = [
        {"name": OUTPUT_NAME, "datatype": "FP64", "shape": [len(predictions)], "data": predictions}
    ]
    return _json(answer)


def _check_requested_outputs(request: dict[str, Any]) -> None:
    outputs = request.get("outputs")
    if outputs is None:
        return
    names = [o.get("name") if isinstance(o, dict) else o for o in outputs]
    unknown = [n for n in names if n != OUTPUT_NAME] if isinstance(outputs, list) else [outputs]
    if unknown:
        raise RequestError(400, f"outputs {unknown!r}: this model has one output, {OUTPUT_NAME!r}")


def endpoint_label(path: str) -> str:
    """The route template of ``path`` (bounded label values for the metrics)."""
    if path in _STATIC_ENDPOINTS:
        return path
    if path.startswith("/v2/models/"):
        parts = path[len("/v2/models/") :].split("/")
        template, rest = "/v2/models/{model}", parts[1:]
        if len(rest) >= 2 and rest[0] == "versions":
            template, rest = template + "/versions/{version}", rest[2:]
        if not rest:
            return template
        if rest in (["ready"], ["infer"]):
            return f"{template}/{rest[0]}"
    return "other"


class _BodyTooLarge(Exception):
    pass


class ServingMiddleware:
    """Pure ASGI middleware: bearer token, body limit, request metrics.

    Written against ASGI directly: Starlette's ``BaseHTTPMiddleware`` costs a task and a
    memory stream per request, a large share of a one-event request.
    """

    def __init__(
        self, app: Any, *, metrics: ServerMetrics, token: str | None, max_body_bytes: int
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.expected = f"Bearer {token}".encode() if token else None
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path = scope["path"]
        status = 500
        response_started = False

        async def send_counted(message: dict) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
            await send(message)

        received = 0

        async def receive_limited() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise _BodyTooLarge
            return message

        error = _v2_error if path.startswith("/v2") else _mlflow_error
        try:
            headers = dict(scope["headers"])
            if self.expected is not None and path not in OPEN_PATHS:
                given = headers.get(b"authorization", b"")
                if not hmac.compare_digest(given, self.expected):
                    problem = "a wrong bearer token" if given else "no bearer token"
                    reply = error(401, f"unauthorized: the request carries {problem}")
                    reply.headers["WWW-Authenticate"] = "Bearer"
                    await reply(scope, receive, send_counted)
                    return
            length = headers.get(b"content-length")
            if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
                await self._too_large(error, scope, receive, send_counted)
                return
            try:
                await self.app(scope, receive_limited, send_counted)
            except _BodyTooLarge:
                if response_started:
                    raise
                await self._too_large(error, scope, receive, send_counted)
        finally:
            self.metrics.observe(
                endpoint_label(path), scope["method"], status, time.perf_counter() - started
            )

    async def _too_large(
        self, error: Callable[[int, str], Response], scope: dict, receive: Callable, send: Callable
    ) -> None:
        reply = error(
            413, f"the request body is larger than the limit of {self.max_body_bytes} bytes"
        )
        reply.headers["Connection"] = "close"
        await reply(scope, receive, send)


def serve(
    sources: Sequence[str],
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    token_file: str | None = None,
    poll_interval: float = DEFAULT_POLL_INTERVAL,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    workers: int = 1,
) -> None:
    """Run the server with uvicorn until interrupted.

    Args:
        sources: model URIs, as for :func:`create_app`.
        host: address to bind; 127.0.0.1 unless told otherwise.
        port: TCP port.
        token_file: a file whose content (stripped) is the bearer token.
        poll_interval: seconds between alias checks (0: never).
        max_body_bytes: request body limit (413 above).
        workers: uvicorn worker processes; each loads the models and counts its own metrics.
    """
    import uvicorn

    settings = {
        "sources": list(sources),
        "token": read_token(token_file) if token_file else None,
        "poll_interval": poll_interval,
        "max_body_bytes": max_body_bytes,
    }
    options = {"host": host, "port": port, "access_log": False, "log_config": None}
    if workers > 1:
        os.environ[SETTINGS_ENV] = json.dumps(settings)
        uvicorn.run(
            "sparkhep.serve.app:app_from_environment", factory=True, workers=workers, **options
        )
        return
    app = create_app(
        settings["sources"],
        token=settings["token"],
        poll_interval=poll_interval,
        max_body_bytes=max_body_bytes,
    )
    try:
        uvicorn.run(app, **options)
    finally:
        app.state.store.close()


def app_from_environment() -> FastAPI:
    """The app of one ``--workers`` process, from the settings :func:`serve` put in the env."""
    settings = json.loads(os.environ[SETTINGS_ENV])
    return create_app(
        settings["sources"],
        token=settings["token"],
        poll_interval=settings["poll_interval"],
        max_body_bytes=settings["max_body_bytes"],
    )


def read_token(path: str) -> str:
    """The bearer token in ``path`` (surrounding whitespace stripped).

    Raises:
        ValueError: the file is empty.
    """
    with open(path, encoding="utf-8") as handle:
        token = handle.read().strip()
    if not token:
        raise ValueError(f"token file {path!r} is empty")
    return token
