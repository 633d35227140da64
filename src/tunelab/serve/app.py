"""The HTTP side of ``tunelab serve``: a Starlette application and the uvicorn process that runs it.

Starlette rather than FastAPI: the server has five routes and must answer every bad request
with OpenAI's error body, so FastAPI's own additions (validation answered as 422 in its own
shape, generated docs) would all be overridden; pydantic, already a dependency, validates the
requests (``protocol``). Uvicorn is the ASGI server both are usually run with.

Routes: ``GET /health``, ``GET /v1/models``, ``POST /v1/chat/completions``,
``POST /v1/completions``, ``POST /v1/classify``. With an API key, every ``/v1`` route wants
``Authorization: Bearer KEY`` (401 otherwise); ``/health`` stays open for load balancers.
Generation runs on the scheduler's worker thread (``batching``); a request waits on an asyncio
queue its events arrive in, so the event loop stays free. A client that disconnects, streaming
or not, cancels its job.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from jinja2 import TemplateError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tunelab.errors import UserError
from tunelab.serve.batching import BatchScheduler, Failed, Finished, GenerationEvent, GenerationJob, Sampling, TextDelta
from tunelab.serve.models import ServedModel
from tunelab.serve.protocol import (
    DEFAULT_MAX_TOKENS,
    ApiError,
    ChatCompletionRequest,
    ChatShape,
    ClassifyRequest,
    CompletionRequest,
    GenerationRequest,
    RequestT,
    TextShape,
    parse_request,
)

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 1_000_000  # a request body beyond this is refused (413) before it is parsed
DISCONNECT_POLL_SECONDS = 0.2


class ServerState:
    """What every route reads: the served models, the scheduler, the settings."""

    def __init__(
        self, models: Mapping[str, ServedModel], max_batch: int, api_key: str | None, max_body_bytes: int
    ) -> None:
        self.models = models
        self.scheduler = BatchScheduler(models, max_batch)
        self.api_key = api_key
        self.max_body_bytes = max_body_bytes
        self.started = int(time.time())

    def authorize(self, request: Request) -> None:
        if self.api_key is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.api_key.encode()):
            raise ApiError(401, "invalid or missing API key (Authorization: Bearer KEY)", None, code="invalid_api_key")

    async def read_json(self, request: Request) -> Any:
        """The body as JSON: 413 past the size limit (checked while reading), 400 where it is not JSON."""
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise ApiError(413, f"request body over the limit of {self.max_body_bytes} bytes")
        body = bytearray()
        with contextlib.suppress(ClientDisconnect):
            async for chunk in request.stream():
                body += chunk
                if len(body) > self.max_body_bytes:
                    raise ApiError(413, f"request body over the limit of {self.max_body_bytes} bytes")
        try:
            return json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ApiError(400, f"the request body is not valid JSON ({error})") from None

    async def accepted(self, request: Request, kind: type[RequestT]) -> RequestT:
        """An authorized request's body, parsed and validated as ``kind``."""
        self.authorize(request)
        return parse_request(kind, await self.read_json(request))

    def model(self, name: str, generates: bool) -> ServedModel:
        served = self.models.get(name)
        if served is None:
            known = ", ".join(self.models)
            raise ApiError(404, f"model '{name}' is not served here (served: {known})", "model", code="model_not_found")
        if served.generates != generates:
            endpoint = "/v1/chat/completions or /v1/completions" if served.generates else "/v1/classify"
            raise ApiError(400, f"model '{name}' is a {served.task} model: use {endpoint}", "model")
        return served


def _max_tokens(served: ServedModel, requested: int | None, prompt_tokens: int) -> int:
    """The request's token budget, checked against the model's context."""
    if requested is not None and requested <= 0:
        raise ApiError(400, "max_tokens: must be at least 1", "max_tokens")
    if prompt_tokens == 0:
        raise ApiError(400, "the prompt is empty", "prompt")
    context = served.context_length
    if context is None:
        return requested or DEFAULT_MAX_TOKENS
    room = context - prompt_tokens
    if room <= 0:
        raise ApiError(400, f"the prompt is {prompt_tokens} tokens, the model's context is {context}", "messages")
    if requested is not None and requested > room:
        raise ApiError(
            400,
            f"max_tokens: {requested} is over the context: the model's context is {context} tokens and the "
            f"prompt takes {prompt_tokens}, which leaves {room}",
            "max_tokens",
        )
    return min(requested or DEFAULT_MAX_TOKENS, room)


def _sampling(params: GenerationRequest) -> Sampling:
    temperature = 0.0 if params.temperature is None else params.temperature
    return Sampling(temperature, 1.0 if params.top_p is None else params.top_p, params.seed)


def _sse(payload: dict[str, Any] | str) -> bytes:
    return f"data: {payload if isinstance(payload, str) else json.dumps(payload)}\n\n".encode()


async def _cancel_on_disconnect(request: Request, job: GenerationJob) -> None:
    while not await request.is_disconnected():
        await asyncio.sleep(DISCONNECT_POLL_SECONDS)
    job.cancel()


async def _generate(
    state: ServerState, request: Request, served: ServedModel, prompt_ids: list[int], params: GenerationRequest
) -> Response:
    """Queue the job, then answer with the whole result or stream it as server-sent events."""
    requested = params.max_completion_tokens if isinstance(params, ChatCompletionRequest) else None
    max_tokens = _max_tokens(served, params.max_tokens if requested is None else requested, len(prompt_ids))
    loop = asyncio.get_running_loop()
    events: asyncio.Queue[GenerationEvent] = asyncio.Queue()

    def deliver(event: GenerationEvent) -> None:  # called on the worker thread
        with contextlib.suppress(RuntimeError):  # the loop has closed: the server is shutting down
            loop.call_soon_threadsafe(events.put_nowait, event)

    job = GenerationJob(served.name, prompt_ids, max_tokens, deliver, _sampling(params), params.stop_strings())
    shape = ChatShape(served.name) if isinstance(params, ChatCompletionRequest) else TextShape(served.name)
    state.scheduler.submit(job)
    watcher = asyncio.create_task(_cancel_on_disconnect(request, job))
    if not params.stream:
        try:
            while not isinstance(event := await events.get(), Finished | Failed):
                pass
        finally:
            watcher.cancel()
            job.cancel()  # no-op once finished; frees the slot if this handler was cancelled
        if isinstance(event, Failed):
            raise ApiError(500, event.message, kind="server_error")
        return JSONResponse(shape.response(event))

    include_usage = bool(params.stream_options and params.stream_options.include_usage)

    async def stream() -> AsyncIterator[bytes]:
        try:
            if (first := shape.first_chunk()) is not None:
                yield _sse(first)
            while True:
                event = await events.get()
                if isinstance(event, TextDelta):
                    yield _sse(shape.chunk(event.text))
                    continue
                if isinstance(event, Failed):
                    yield _sse(ApiError(500, event.message, kind="server_error").body())
                else:
                    yield _sse(shape.last_chunk(event))
                    if include_usage:
                        yield _sse(shape.usage_chunk(event))
                break
            yield _sse("[DONE]")
        finally:
            watcher.cancel()
            job.cancel()

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


async def chat_completions(request: Request) -> Response:
    state: ServerState = request.app.state.serve
    params = await state.accepted(request, ChatCompletionRequest)
    served = state.model(params.model, generates=True)
    try:
        prompt_ids = served.chat_prompt_ids([message.for_template() for message in params.messages])
    except TemplateError as error:  # e.g. a template that wants user and assistant turns to alternate
        raise ApiError(400, f"messages: the model's chat template refused them: {error}", "messages") from None
    return await _generate(state, request, served, prompt_ids, params)


async def completions(request: Request) -> Response:
    state: ServerState = request.app.state.serve
    params = await state.accepted(request, CompletionRequest)
    served = state.model(params.model, generates=True)
    return await _generate(state, request, served, served.text_prompt_ids(params.text()), params)


async def classify(request: Request) -> Response:
    """Labels and probabilities from a classification run, through ``predict_labels`` (``tunelab predict``)."""
    from tunelab.inference.predict import predict_labels

    state: ServerState = request.app.state.serve
    params = await state.accepted(request, ClassifyRequest)
    served = state.model(params.model, generates=False)
    try:
        predictions = await asyncio.to_thread(predict_labels, served.reference, params.texts())
    except UserError as error:
        raise ApiError(400, str(error), "input") from None
    data = [
        {"object": "classification", "index": index, "label": item.label, "probabilities": item.probabilities}
        for index, item in enumerate(predictions)
    ]
    return JSONResponse({"object": "list", "model": served.name, "data": data})


async def list_models(request: Request) -> Response:
    state: ServerState = request.app.state.serve
    state.authorize(request)
    data = [
        {"id": name, "object": "model", "created": state.started, "owned_by": "tunelab", "task": served.task}
        for name, served in state.models.items()
    ]
    return JSONResponse({"object": "list", "data": data})


async def health(request: Request) -> Response:
    state: ServerState = request.app.state.serve
    scheduler = state.scheduler
    return JSONResponse(
        {"status": "ok", "models": list(state.models), "waiting": scheduler.waiting, "running": scheduler.running}
    )


async def _api_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, ApiError)
    return JSONResponse(error.body(), status_code=error.status)


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    body = ApiError(error.status_code, f"{request.method} {request.url.path}: {error.detail}").body()
    return JSONResponse(body, status_code=error.status_code)


async def _unexpected_error(request: Request, error: Exception) -> Response:
    logger.exception("unexpected error on %s", request.url.path)
    body = ApiError(500, f"unexpected {type(error).__name__}: {error}", kind="server_error").body()
    return JSONResponse(body, status_code=500)


def build_app(
    models: Mapping[str, ServedModel],
    max_batch: int = 8,
    api_key: str | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> Starlette:
    """The ASGI application serving ``models``; its scheduler thread runs while the app does."""
    state = ServerState(models, max_batch, api_key, max_body_bytes)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state.scheduler.start()
        try:
            yield
        finally:
            state.scheduler.stop()

    app = Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/v1/models", list_models, methods=["GET"]),
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/v1/classify", classify, methods=["POST"]),
        ],
        exception_handlers={ApiError: _api_error, HTTPException: _http_error, Exception: _unexpected_error},
        lifespan=lifespan,
    )
    app.state.serve = state
    return app


def serve(
    arguments: list[str],
    host: str = "127.0.0.1",
    port: int = 8000,
    max_batch: int = 8,
    api_key: str | None = None,
) -> None:
    """Load every model or run in ``arguments`` and serve them until interrupted."""
    import uvicorn

    from tunelab.serve.models import load_served_models

    if max_batch < 1:
        raise UserError("serve: --max-batch must be at least 1")
    if not 0 <= port <= 65535:
        raise UserError(f"serve: --port {port} is not a port number")
    try:
        probe = socket.create_server((host, port))  # a clear error now, not after loading the models
    except OSError as error:
        raise UserError(f"serve: cannot listen on {host}:{port}: {error.strerror or error}") from None
    probe.close()
    models = load_served_models(arguments)
    for name, served in models.items():
        logger.info(
            "serving %s (%s%s)", name, served.reference, f", adapter {served.adapter}" if served.adapter else ""
        )
    logger.info("listening on http://%s:%d/v1 (max batch %d)", host, port, max_batch)
    uvicorn.run(build_app(models, max_batch, api_key), host=host, port=port, log_level="warning")
