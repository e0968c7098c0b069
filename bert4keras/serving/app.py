"""The HTTP service: a Starlette app over one :class:`Batcher`.

Routes (text-embeddings-inference style): ``GET /health``, ``GET /info``, ``GET /metrics``,
``POST /tokenize``, and by task ``POST /embed`` + ``POST /v1/embeddings``, ``POST /predict``,
``POST /ner`` or ``POST /generate`` (server-sent events with ``"stream": true``).
Every client mistake is a 4xx with ``{"error": ..., "error_type": ...}`` naming the field
or the limit; only a fault of the server is a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from bert4keras.serving.batcher import Batcher, QueueFull, ShuttingDown
from bert4keras.serving.metrics import Metrics
from bert4keras.serving.model import POOLINGS, ServedModel, length_buckets, load_served_model

access_log = logging.getLogger("bert4keras.serving.access")
log = logging.getLogger("bert4keras.serving")


@dataclass
class ServeConfig:
    """What ``python -m bert4keras serve`` accepts; the defaults are the command line's."""

    model_dir: str
    task: str | None = None
    max_length: int | None = None
    buckets: list[int] | None = None
    max_batch_tokens: int = 16384
    max_batch_size: int = 64
    max_wait_ms: float = 2.0
    max_queue: int = 512
    max_texts: int = 256
    max_request_bytes: int = 1 << 20
    pooling: str = "mean"
    api_key: str | None = None
    retry_after_s: int = 1
    application: str | None = None
    max_new_tokens: int = 256
    max_beams: int = 8


class ApiError(Exception):
    """A client mistake: HTTP ``status`` with a message naming the field or limit."""

    def __init__(self, status: int, message: str, kind: str = "validation"):
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind


def error_response(status: int, message: str, kind: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "error_type": kind}, status_code=status, headers=headers)


# --------------------------------------------------------------------------- the service


@dataclass
class Service:
    """The loaded model and its batcher; ``ready`` once every shape has been warmed up."""

    config: ServeConfig
    metrics: Metrics = field(default_factory=Metrics)
    model: ServedModel | None = None
    batcher: Batcher | None = None
    ready: bool = False
    load_error: str | None = None
    on_fatal: Callable[[], None] | None = None
    generation_lock: threading.Lock | None = None
    in_flight: int = 0

    def load(self) -> None:
        """Load, build the batcher, warm every (batch, length) shape; runs on a background thread."""
        c = self.config
        try:
            started = time.monotonic()
            self.model = load_served_model(c.model_dir, c.task, c.max_length, c.application)
            if self.model.task == "generate":
                log.info("generator %s loaded in %.1fs; warming up", self.model.name, time.monotonic() - started)
                self.model.warm_up([], min(16, c.max_new_tokens))
                self.generation_lock = threading.Lock()
                self.ready = True
                log.info("ready after %.1fs", time.monotonic() - started)
                return
            buckets = length_buckets(self.model.max_length, c.buckets)
            batcher = Batcher(self.model, self.metrics, buckets, c.max_batch_tokens, c.max_batch_size,
                              c.max_wait_ms / 1000.0, c.max_queue)
            shapes = batcher.shapes()
            log.info("model %s (task %s) loaded in %.1fs; warming %d shapes", self.model.name,
                     self.model.task, time.monotonic() - started, len(shapes))
            self.model.warm_up(shapes)
            batcher.start()
            self.batcher = batcher
            self.ready = True
            log.info("ready after %.1fs", time.monotonic() - started)
        except Exception as error:
            self.load_error = f"{type(error).__name__}: {error}"
            log.error("could not load %s: %s", c.model_dir, self.load_error)
            if self.on_fatal is not None:
                self.on_fatal()

    def require(self, task: str | None = None) -> ServedModel:
        if not self.ready:
            raise ApiError(503, self.load_error or "the model is still loading; poll GET /health", "unavailable")
        if task is not None and self.model.task != task:
            raise ApiError(404, f"this service runs task {self.model.task!r}; this route needs "
                                f"--task {task}", "not_found")
        return self.model

    def encode(self, texts: list[str], truncate: bool, field_name: str = "texts",
               offsets: bool = False) -> tuple[list, ...]:
        """Token and segment ids (and character offsets); an over-long text is 422 unless ``truncate``."""
        model = self.require()
        encoded = model.tokenizer.encode_batch(texts, return_offsets=offsets)
        too_long = [(i, len(x)) for i, x in enumerate(encoded[0]) if len(x) > model.max_length]
        if too_long and not truncate:
            i, n = too_long[0]
            raise ApiError(422, f"{field_name}[{i}] has {n} tokens; max_length is {model.max_length} "
                                "(send \"truncate\": true to cut it)")
        if too_long:
            encoded = model.tokenizer.encode_batch(texts, maxlen=model.max_length, return_offsets=offsets)
        return encoded

    async def run(self, ids: list, segments: list, pooling: str | None = None, normalize: bool = False) -> list:
        try:
            return await self.batcher.submit(ids, segments, pooling, normalize)
        except QueueFull:
            raise ApiError(429, f"the queue is full ({self.config.max_queue} requests, --max-queue); "
                                "retry later", "overloaded") from None
        except ShuttingDown:
            raise ApiError(503, "the server is shutting down", "unavailable") from None


# --------------------------------------------------------------------------- request parsing


async def read_json(request: Request, limit: int) -> dict:
    """The body as a JSON object, read up to ``limit`` bytes."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise ApiError(413, f"request body is {length} bytes; the limit is {limit} (--max-request-bytes)",
                       "payload_too_large")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, f"request body exceeds {limit} bytes (--max-request-bytes)", "payload_too_large")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ApiError(400, f"request body is not valid UTF-8 (byte {e.start})", "invalid_body") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ApiError(400, f"request body is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}",
                       "invalid_body") from None
    except RecursionError:
        raise ApiError(400, "request body is nested too deeply", "invalid_body") from None
    if not isinstance(data, dict):
        raise ApiError(422, f"request body must be a JSON object, got {type(data).__name__}")
    return data


def check_fields(data: dict, allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ApiError(422, f"unknown field {unknown[0]!r}; expected {', '.join(allowed)}")


def get_bool(data: dict, name: str, default: bool) -> bool:
    value = data.get(name, default)
    if not isinstance(value, bool):
        raise ApiError(422, f"{name} must be true or false, got {json.dumps(value)[:40]}")
    return value


def get_number(data: dict, name: str, default, kind: type = int, low=None, high=None,
               low_open: bool = False, nullable: bool = False):
    """A number field: the right type (a bool is not a number) within [low, high] (or (low, high])."""
    value = data.get(name, default)
    if value is None and nullable:
        return None
    allowed = (int,) if kind is int else (int, float)
    if isinstance(value, bool) or not isinstance(value, allowed):
        raise ApiError(422, f"{name} must be {'an integer' if kind is int else 'a number'}"
                            f"{' or null' if nullable else ''}, got {json.dumps(value)[:40]}")
    too_low = low is not None and (value <= low if low_open else value < low)
    if too_low or (high is not None and value > high):
        left = "(" if low_open else "["
        raise ApiError(422, f"{name} must be in {left}{low}, {high if high is not None else 'inf'}], got {value}")
    return kind(value)


def get_texts(data: dict, name: str, limit: int, allow_string: bool = False) -> list[str]:
    if name not in data:
        raise ApiError(422, f"missing field {name!r}: a list of strings")
    texts = data[name]
    if allow_string and isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list):
        raise ApiError(422, f"{name} must be a list of strings, got {type(texts).__name__}")
    if not texts:
        raise ApiError(422, f"{name} is empty; send at least one text")
    if len(texts) > limit:
        raise ApiError(422, f"{name} has {len(texts)} items; the limit is {limit} per request (--max-texts)")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ApiError(422, f"{name}[{i}] must be a string, got {type(text).__name__}")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise ApiError(422, f"{name}[{i}] holds an unpaired surrogate {text[e.start]!r} at "
                                f"character {e.start}") from None
    return texts


# --------------------------------------------------------------------------- routes


def create_app(config: ServeConfig, service: Service | None = None) -> Starlette:
    """The ASGI app; the model loads on a background thread when the app starts."""
    service = service or Service(config)
    limit = config.max_request_bytes

    async def health(request: Request) -> Response:
        if service.ready:
            return JSONResponse({"status": "ok"})
        status = "failed" if service.load_error else "loading"
        return JSONResponse({"status": status, "error": service.load_error}, status_code=503)

    async def info(request: Request) -> Response:
        import keras

        import bert4keras

        model = service.require()
        return JSONResponse({
            "model": model.name, "model_dir": config.model_dir, "task": model.task,
            "backend": keras.backend.backend(), "max_length": model.max_length,
            "version": bert4keras.__version__, "labels": model.labels or None,
            "buckets": service.batcher.buckets if service.batcher else None,
            "max_batch_tokens": config.max_batch_tokens,
            "max_batch_size": config.max_batch_size, "max_wait_ms": config.max_wait_ms,
            "max_queue": config.max_queue, "max_texts": config.max_texts,
            "max_request_bytes": config.max_request_bytes, "pooling": config.pooling,
            "application": model.application if model.task == "generate" else None,
            "max_new_tokens": config.max_new_tokens,
        })

    async def metrics(request: Request) -> Response:
        return PlainTextResponse(service.metrics.render(), media_type="text/plain; version=0.0.4")

    async def tokenize(request: Request) -> Response:
        data = await read_json(request, limit)
        check_fields(data, ("texts",))
        texts = get_texts(data, "texts", config.max_texts)
        model = service.require()
        ids, _, offsets = model.tokenizer.encode_batch(texts, return_offsets=True)
        return JSONResponse({"tokens": [
            {"ids": row, "tokens": model.tokenizer.ids_to_tokens(row), "offsets": [list(s) for s in spans]}
            for row, spans in zip(ids, offsets)]})

    async def embed(request: Request) -> Response:
        data = await read_json(request, limit)
        check_fields(data, ("texts", "pooling", "normalize", "truncate"))
        texts = get_texts(data, "texts", config.max_texts)
        pooling = data.get("pooling", config.pooling)
        if pooling not in POOLINGS:
            raise ApiError(422, f"pooling must be one of {', '.join(POOLINGS)}, got {json.dumps(pooling)[:40]}")
        normalize = get_bool(data, "normalize", True)
        truncate = get_bool(data, "truncate", False)
        service.require("embed")
        ids, segments = service.encode(texts, truncate)
        vectors = await service.run(ids, segments, pooling, normalize)
        return JSONResponse({"embeddings": [v.tolist() for v in vectors]})

    async def openai_embeddings(request: Request) -> Response:
        data = await read_json(request, limit)
        check_fields(data, ("input", "model", "encoding_format", "user"))
        texts = get_texts(data, "input", config.max_texts, allow_string=True)
        if data.get("encoding_format", "float") != "float":
            raise ApiError(422, "encoding_format: only \"float\" is supported")
        model = service.require("embed")
        ids, segments = service.encode(texts, truncate=False, field_name="input")
        vectors = await service.run(ids, segments, config.pooling, True)
        tokens = sum(len(x) for x in ids)
        return JSONResponse({
            "object": "list", "model": str(data.get("model") or model.name),
            "data": [{"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vectors)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        })

    async def predict(request: Request) -> Response:
        data = await read_json(request, limit)
        check_fields(data, ("texts", "truncate"))
        texts = get_texts(data, "texts", config.max_texts)
        truncate = get_bool(data, "truncate", False)
        model = service.require("predict")
        ids, segments = service.encode(texts, truncate)
        probabilities = await service.run(ids, segments)
        answers = []
        for p in probabilities:
            order = p.argsort()[::-1]
            answers.append({"label": model.labels[order[0]], "score": float(p[order[0]]),
                            "scores": [{"label": model.labels[i], "score": float(p[i])} for i in order]})
        return JSONResponse({"predictions": answers})

    async def ner(request: Request) -> Response:
        from bert4keras.cli_ner import decode_entities

        data = await read_json(request, limit)
        check_fields(data, ("texts", "truncate"))
        texts = get_texts(data, "texts", config.max_texts)
        truncate = get_bool(data, "truncate", False)
        model = service.require("ner")
        ids, segments, offsets = service.encode(texts, truncate, offsets=True)
        outputs = await service.run(ids, segments)
        return JSONResponse({"entities": [
            decode_entities(row, text, spans, model.ner_info, model.transitions)
            for row, text, spans in zip(outputs, texts, offsets)]})

    async def generate(request: Request) -> Response:
        from bert4keras.cli import answer_text, prompt_ids

        data = await read_json(request, limit)
        check_fields(data, ("prompts", "max_new_tokens", "num_beams", "top_k", "top_p", "temperature",
                            "seed", "stream"))
        prompts = get_texts(data, "prompts", config.max_texts, allow_string=True)
        max_new_tokens = get_number(data, "max_new_tokens", min(32, config.max_new_tokens), int, 1,
                                    config.max_new_tokens)
        options = {
            "num_beams": get_number(data, "num_beams", 1, int, 1, config.max_beams),
            "top_k": get_number(data, "top_k", None, int, 1, None, nullable=True),
            "top_p": get_number(data, "top_p", None, float, 0, 1, low_open=True, nullable=True),
            "temperature": get_number(data, "temperature", 1.0, float, 0, None, low_open=True),
            "seed": get_number(data, "seed", None, int, 0, 2**31 - 1, nullable=True),
        }
        stream = get_bool(data, "stream", False)
        if options["num_beams"] > 1 and (stream or options["top_k"] or options["top_p"] or
                                         options["seed"] is not None):
            raise ApiError(422, "num_beams > 1 (beam search) cannot be combined with stream, top_k, top_p or seed")
        model = service.require("generate")
        tokenizer = model.tokenizer
        ids = [prompt_ids(tokenizer, p, model.application) for p in prompts]
        too_long = [(i, len(x)) for i, x in enumerate(ids) if len(x) > model.max_length]
        if too_long:
            raise ApiError(422, f"prompts[{too_long[0][0]}] has {too_long[0][1]} tokens; max_length is "
                                f"{model.max_length}")
        if service.in_flight >= config.max_queue:
            raise ApiError(429, f"the queue is full ({config.max_queue} requests, --max-queue); retry later",
                           "overloaded")
        options["end_id"] = tokenizer._token_end_id
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        cancelled = threading.Event()

        def put(kind: str, value) -> None:
            loop.call_soon_threadsafe(events.put_nowait, (kind, value))

        def work() -> None:
            """Runs on a worker thread: ("start"), ("step", ...)*, ("done", ...), or ("error", exc)."""
            from bert4keras.generation import stream_text

            try:
                with service.generation_lock:
                    if not stream:
                        new = model.generator.generate(ids, max_new_tokens, **options)
                        put("done", {"ids": new})
                        return
                    steps = model.generator.generate(ids, max_new_tokens, stream=True, **options)
                    put("start", None)
                    recorded = []

                    def tap():
                        for step in steps:
                            if cancelled.is_set():
                                return
                            recorded.append(step)
                            yield step

                    for k, pieces in enumerate(stream_text(tap(), tokenizer)):
                        if k < len(recorded):
                            put("step", {"step": k, "ids": recorded[k], "text": pieces})
                    new = [[step[i] for step in recorded if step[i] is not None] for i in range(len(ids))]
                    put("done", {"ids": new})
            except Exception as error:  # reported to the waiting request
                put("error", error)

        service.in_flight += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                service.in_flight -= 1
                released = True

        try:
            loop.run_in_executor(None, work)
            kind, value = await events.get()
            if kind == "error":
                if isinstance(value, ValueError):
                    raise ApiError(422, str(value))
                raise value
            if kind == "done":
                release()
                return JSONResponse({"generations": [
                    {"text": answer_text(tokenizer, new), "ids": new} for new in value["ids"]]})
        except BaseException:
            release()
            raise

        async def sse():
            try:
                while True:
                    kind, value = await events.get()
                    if kind == "step":
                        yield f"data: {json.dumps(value, ensure_ascii=False)}\n\n"
                    elif kind == "done":
                        body = {"generations": [{"text": answer_text(tokenizer, new), "ids": new}
                                                for new in value["ids"]]}
                        yield f"event: done\ndata: {json.dumps(body, ensure_ascii=False)}\n\n"
                        return
                    else:
                        log.error("generation failed mid-stream: %r", value)
                        yield f"event: error\ndata: {json.dumps({'error': f'{type(value).__name__}: {value}'})}\n\n"
                        return
            finally:
                cancelled.set()
                release()

        return StreamingResponse(sse(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def http_error(request: Request, exc: HTTPException) -> Response:
        detail = exc.detail
        if exc.status_code == 404:
            detail = f"no route {request.url.path}; routes: {', '.join(sorted(ROUTES))}"
        elif exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}"
        return error_response(exc.status_code, detail, "not_found" if exc.status_code == 404 else "http",
                              getattr(exc, "headers", None))

    async def server_error(request: Request, exc: Exception) -> Response:
        return error_response(500, f"internal error: {type(exc).__name__}", "server")

    async def api_error(request: Request, exc: ApiError) -> Response:
        headers = {"Retry-After": str(config.retry_after_s)} if exc.status == 429 else None
        return error_response(exc.status, exc.message, exc.kind, headers)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        threading.Thread(target=service.load, name="bert4keras-load", daemon=True).start()
        yield
        if service.batcher is not None:
            service.batcher.stop()

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/info", info, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/tokenize", tokenize, methods=["POST"]),
        Route("/embed", embed, methods=["POST"]),
        Route("/v1/embeddings", openai_embeddings, methods=["POST"]),
        Route("/ner", ner, methods=["POST"]),
        Route("/generate", generate, methods=["POST"]),
        Route("/predict", predict, methods=["POST"]),
    ]
    ROUTES = {route.path for route in routes}
    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={HTTPException: http_error, ApiError: api_error,
                                        Exception: server_error})
    app.state.service = service
    return Guard(app, service, ROUTES)


class Guard:
    """Outermost ASGI layer: API key, a JSON 500 for server faults, metrics, one JSON access-log line."""

    def __init__(self, app: Any, service: Service, routes: set[str]):
        self.app, self.service, self.routes = app, service, routes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path = scope["path"]
        route = path if path in self.routes else "other"
        status = {"code": 500, "sent": False}

        async def send_wrapper(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"], status["sent"] = message["status"], True
            await send(message)

        try:
            if self._authorized(scope):
                await self.app(scope, receive, send_wrapper)
            else:
                await error_response(401, "missing or wrong API key: send 'Authorization: Bearer <key>'",
                                     "unauthorized", {"WWW-Authenticate": "Bearer"})(scope, receive, send_wrapper)
        except Exception as error:  # a server fault: log it, answer 500, keep serving
            log.exception("unhandled error on %s", path)
            if not status["sent"]:
                await error_response(500, f"internal error: {type(error).__name__}", "server")(
                    scope, receive, send_wrapper)
        elapsed = time.perf_counter() - started
        code = status["code"]
        metrics = self.service.metrics
        metrics.requests.inc(route, code)
        if code >= 400:
            metrics.errors.inc(route, code)
        metrics.latency.observe(elapsed, route)
        client = scope.get("client") or ("", 0)
        access_log.info(json.dumps({"ts": round(time.time(), 3), "client": f"{client[0]}:{client[1]}",
                                    "method": scope["method"], "path": path, "status": code,
                                    "ms": round(elapsed * 1000, 2)}))

    def _authorized(self, scope: dict) -> bool:
        key = self.service.config.api_key
        if not key or scope["path"] == "/health":
            return True
        headers = dict(scope["headers"])
        given = headers.get(b"authorization", b"").decode("latin-1")
        return given.startswith("Bearer ") and hmac.compare_digest(given[7:].encode(), key.encode())


def serve(config: ServeConfig, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info",
          graceful_timeout_s: float = 30.0) -> int:
    """Run the service under uvicorn until SIGINT/SIGTERM; in-flight requests finish first."""
    import uvicorn

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    access_log.addHandler(handler)
    access_log.propagate = False
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    service = Service(config)
    server = uvicorn.Server(uvicorn.Config(
        create_app(config, service), host=host, port=port, log_level=log_level, access_log=False,
        timeout_graceful_shutdown=graceful_timeout_s, lifespan="on"))

    def stop() -> None:
        server.should_exit = True

    service.on_fatal = stop
    server.run()
    return 1 if service.load_error else 0
