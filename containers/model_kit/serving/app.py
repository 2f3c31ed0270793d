"""The WSGI application: ``/ping``, ``/invocations``, ``/execution-parameters``.

A bare WSGI callable rather than a web framework: the request path is a
dictionary lookup, so a 1-record request costs little more than the
prediction itself (see ``benchmarks/serving_choices.py``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

import numpy as np

from model_kit.model_io import Model
from model_kit.serving.config import MIB, ServerConfig
from model_kit.serving.decoders import PARSERS
from model_kit.serving.encoders import PredictionEncoders
from model_kit.serving.errors import RequestError
from model_kit.serving.media import JSON, MEDIA_TYPES, request_type, response_type

log = logging.getLogger("model_kit.serving")

Response = tuple[int, str, bytes]
StartResponse = Callable[..., Any]


class InferenceApp:
    """Serves one model that was loaded before the workers forked."""

    def __init__(self, model: Model, config: ServerConfig) -> None:
        self.model = model
        self.feature_names = model.feature_names
        self.encoders = PredictionEncoders(model.classes)
        self.max_payload_bytes = config.max_payload_bytes
        self.batch = config.batch
        self.predict_threads = config.predict_threads
        self._execution_parameters = json.dumps(
            {
                "MaxConcurrentTransforms": config.max_concurrent_transforms,
                "BatchStrategy": config.batch_strategy,
                "MaxPayloadInMB": config.max_payload_mb,
            }
        ).encode()
        self._routes: dict[str, tuple[str, Callable[[dict[str, Any]], Response]]] = {
            "/ping": ("GET", self.ping),
            "/invocations": ("POST", self.invocations),
            "/execution-parameters": ("GET", self.execution_parameters),
        }

    def warm_up(self) -> None:
        """One prediction in a new worker, so its first request does not pay for set-up."""
        self.model.predict_proba(
            np.full((1, len(self.feature_names)), np.nan), num_threads=self.predict_threads
        )

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        headers: list[tuple[str, str]] = []
        try:
            status, content_type, body = self._dispatch(environ)
        except RequestError as error:
            log.info(
                "%s %s -> %d: %s",
                environ.get("REQUEST_METHOD"),
                environ.get("PATH_INFO"),
                error.status,
                error.message,
            )
            status, content_type, body = error.status, JSON, error.body()
            if error.status == HTTPStatus.METHOD_NOT_ALLOWED and error.allowed:
                headers.append(("Allow", ", ".join(error.allowed)))
        except Exception:
            # A bug must cost one request, never the worker: log it and answer 500.
            log.exception("unexpected error on %s", environ.get("PATH_INFO"))
            status, content_type = HTTPStatus.INTERNAL_SERVER_ERROR, JSON
            body = b'{"error": "internal server error; the container log has the traceback"}'
        headers += [("Content-Type", content_type), ("Content-Length", str(len(body)))]
        start_response(f"{status} {HTTPStatus(status).phrase}", headers)
        return [body]

    def _dispatch(self, environ: dict[str, Any]) -> Response:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "")
        route = self._routes.get(path)
        if route is None:
            raise RequestError(
                404, f"no such path {path!r}; this server answers {', '.join(self._routes)}"
            )
        allowed_method, handler = route
        if method != allowed_method:
            raise RequestError(
                405,
                f"{method} is not allowed on {path}; use {allowed_method}",
                allowed=[allowed_method],
            )
        return handler(environ)

    def ping(self, environ: dict[str, Any]) -> Response:
        """Healthy: the model was loaded before this worker existed."""
        return 200, JSON, b'{"status": "ok"}'

    def execution_parameters(self, environ: dict[str, Any]) -> Response:
        """Batch transform asks this when the job leaves the parameters unset."""
        return 200, JSON, self._execution_parameters

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

    def _read_body(self, environ: dict[str, Any]) -> bytes:
        """The body, refused by its Content-Length before reading when it is too large."""
        stream = environ["wsgi.input"]
        declared = environ.get("CONTENT_LENGTH")
        if declared:
            try:
                length = int(declared)
            except ValueError:
                raise RequestError(400, f"Content-Length {declared!r} is not a number") from None
            if length > self.max_payload_bytes:
                raise self._too_large(f"{length} bytes")
            body = stream.read(length)
            if len(body) < length:
                raise RequestError(
                    400, f"request body ended after {len(body)} of its {length} bytes"
                )
            return body
        body = stream.read(self.max_payload_bytes + 1)
        if len(body) > self.max_payload_bytes:
            raise self._too_large(f"more than {self.max_payload_bytes} bytes")
        return body

    def invocations(self, environ: dict[str, Any]) -> Response:
        """Parse, predict, encode: one output record per input record, in order."""
        request_kind = request_type(environ.get("CONTENT_TYPE"))
        answer_kind = response_type(environ.get("HTTP_ACCEPT"), request_kind)
        body = self._read_body(environ)
        features = PARSERS[MEDIA_TYPES[request_kind]](body, self.feature_names)
        probabilities = self.model.predict_proba(features, num_threads=self.predict_threads)
        encode = self.encoders.by_type[MEDIA_TYPES[answer_kind]]
        return 200, answer_kind, encode(probabilities.argmax(axis=1), probabilities)
