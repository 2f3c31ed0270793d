"""The ASGI application: ``/ping``, ``/invocations``, ``/execution-parameters``.

A bare ASGI callable rather than a web framework: the request path is a
dictionary lookup, so a 1-record request costs little more than the prediction
itself. Each worker runs it on one event loop (gunicorn's ``asgi`` worker on
uvloop): small requests are answered on the loop, without a thread hop; a body
over ``INLINE_BODY_BYTES`` is parsed and predicted on a small thread pool, so
the loop keeps answering ``/ping`` and small requests meanwhile (LightGBM
releases the GIL while it predicts). ``benchmarks/serving_choices.py`` has the
measurements behind both choices.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import numpy as np

from model_kit.model_io import Model
from model_kit.serving import memory
from model_kit.serving.config import MIB, ServerConfig
from model_kit.serving.encoders import PredictionEncoders
from model_kit.serving.errors import RequestError
from model_kit.serving.formats import BY_MEDIA_TYPE, JSON
from model_kit.serving.media import request_type, response_type

log = logging.getLogger("model_kit.serving")

# Bodies up to this size are parsed and predicted on the event loop, with no thread
# hop: 500 records (~105 KB) are about 1 ms of work. Larger ones would hold the
# loop, and /ping with it, for tens of milliseconds.
INLINE_BODY_BYTES = 128 * 1024
# A worker gives the memory of its large requests back to the OS once it has had none
# in flight for this long (``memory.release_free``).
IDLE_RELEASE_S = 1.0

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
# On every response: which code predicts, "compiled" (the model's compiled trees) or
# "library" (the model library's own), so a client or a test can see what served it.
PREDICTOR_HEADER = b"x-model-predictor"


@dataclass(frozen=True)
class Response:
    status: int
    content_type: str
    body: bytes
    allow: str | None = None

    def start_message(self, predictor: bytes) -> dict[str, Any]:
        headers = [
            (b"content-type", self.content_type.encode()),
            (b"content-length", str(len(self.body)).encode()),
            (PREDICTOR_HEADER, predictor),
        ]
        if self.allow:
            headers.append((b"allow", self.allow.encode()))
        return {"type": "http.response.start", "status": self.status, "headers": headers}


def _error_response(error: RequestError) -> Response:
    allow = None
    if error.status == HTTPStatus.METHOD_NOT_ALLOWED and error.allowed:
        allow = ", ".join(error.allowed)
    return Response(error.status, JSON, error.body(), allow)


class InferenceApp:
    """Serves one model that was loaded before the workers forked."""

    def __init__(self, model: Model, config: ServerConfig, threads: int) -> None:
        self.model = model
        self.feature_names = model.feature_names
        self.encoders = PredictionEncoders(model.classes)
        self.max_payload_bytes = config.max_payload_bytes
        self.batch = config.batch
        self.predict_threads = config.predict_threads
        self.threads = threads
        self._predictor = model.predictor_kind.encode()
        self._pool: ThreadPoolExecutor | None = None
        self._large_in_flight = 0
        self._release: asyncio.TimerHandle | None = None
        self._execution_parameters = json.dumps(
            {
                "MaxConcurrentTransforms": config.max_concurrent_transforms,
                "BatchStrategy": config.batch_strategy,
                "MaxPayloadInMB": config.max_payload_mb,
            }
        ).encode()
        self._routes: dict[str, str] = {
            "/ping": "GET",
            "/invocations": "POST",
            "/execution-parameters": "GET",
        }

    def warm_up(self) -> None:
        """In a new worker: one prediction, so its first request does not pay for set-up,
        and the thread pool (threads must not exist before the fork)."""
        self.model.predict_proba(
            np.full((1, len(self.feature_names)), np.nan), num_threads=self.predict_threads
        )
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="predict")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        try:
            response = await self._respond(scope, receive)
        except RequestError as error:
            log.info("%s %s -> %d: %s", scope["method"], scope["path"], error.status, error.message)
            response = _error_response(error)
        except Exception:
            # A bug must cost one request, never the worker: log it and answer 500.
            log.exception("unexpected error on %s", scope["path"])
            response = Response(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                JSON,
                b'{"error": "internal server error; the container log has the traceback"}',
            )
        await send(response.start_message(self._predictor))
        await send({"type": "http.response.body", "body": response.body})

    async def _respond(self, scope: Scope, receive: Receive) -> Response:
        path, method = scope["path"], scope["method"]
        allowed_method = self._routes.get(path)
        if allowed_method is None:
            raise RequestError(
                404, f"no such path {path!r}; this server answers {', '.join(self._routes)}"
            )
        if method != allowed_method:
            raise RequestError(
                405,
                f"{method} is not allowed on {path}; use {allowed_method}",
                allowed=[allowed_method],
            )
        if path == "/ping":
            # Healthy: the model was loaded before this worker existed.
            return Response(200, JSON, b'{"status": "ok"}')
        if path == "/execution-parameters":
            # Batch transform asks this when the job leaves the parameters unset.
            return Response(200, JSON, self._execution_parameters)
        return await self._invocations(scope, receive)

    async def _invocations(self, scope: Scope, receive: Receive) -> Response:
        headers = dict(scope["headers"])
        request_kind = request_type(_header(headers, b"content-type"))
        answer_kind = response_type(_header(headers, b"accept"), request_kind)
        body = await self._read_body(_header(headers, b"content-length"), receive)
        if sum(map(len, body)) <= INLINE_BODY_BYTES or self._pool is None:
            return self._predict(body, request_kind, answer_kind)
        loop = asyncio.get_running_loop()
        self._large_in_flight += 1
        if self._release is not None:
            self._release.cancel()
        try:
            return await loop.run_in_executor(
                self._pool, self._predict, body, request_kind, answer_kind
            )
        finally:
            self._large_in_flight -= 1
            if self._large_in_flight == 0:
                self._release = loop.call_later(IDLE_RELEASE_S, memory.release_free)

    def _predict(self, body: list[bytes], request_kind: str, answer_kind: str) -> Response:
        """Parse, predict, encode: one output record per input record, in order."""
        features = BY_MEDIA_TYPE[request_kind].decode(body, self.feature_names)
        probabilities = self.model.predict_proba(features, num_threads=self.predict_threads)
        encode = BY_MEDIA_TYPE[answer_kind].encode
        winners = probabilities.argmax(axis=1)
        return Response(200, answer_kind, encode(self.encoders, winners, probabilities))

    def _too_large(self, size: str) -> RequestError:
        limit_mb = self.max_payload_bytes // MIB
        hint = (
            "; split the input into smaller requests"
            if self.batch
            else "; split the input, or use batch transform (SAGEMAKER_BATCH=true with "
            "SAGEMAKER_MAX_PAYLOAD_IN_MB up to 100)"
        )
        return RequestError(
            413,
            f"request body is {size}; the limit is {self.max_payload_bytes} bytes "
            f"({limit_mb} MB){hint}",
        )

    async def _read_body(self, declared: str | None, receive: Receive) -> list[bytes]:
        """The body in the chunks it arrived in, refused by its Content-Length before any
        of it is read when too large.

        A body sent in chunks is refused as soon as it passes the limit.
        """
        length = None
        if declared:
            try:
                length = int(declared)
            except ValueError:
                raise RequestError(400, f"Content-Length {declared!r} is not a number") from None
            if length > self.max_payload_bytes:
                raise self._too_large(f"{length} bytes")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                expected = f"of its {length} bytes" if length is not None else "early"
                raise RequestError(400, f"request body ended after {size} {expected}")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_payload_bytes:
                raise self._too_large(f"more than {self.max_payload_bytes} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks


def _header(headers: dict[bytes, bytes], name: bytes) -> str | None:
    value = headers.get(name)
    return None if value is None else value.decode("latin-1")
