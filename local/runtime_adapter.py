"""A local stand-in for the SageMaker runtime service in front of a real model container.

boto3's ``sagemaker-runtime`` client calls ``POST /endpoints/<name>/invocations``
(``InvokeEndpoint``); point it here with ``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME``.
The adapter forwards the body, ``Content-Type`` and ``Accept`` to the
container's ``/invocations`` and answers the way SageMaker does:

- 2xx from the container: 200 with its body, ``Content-Type`` and the
  ``x-Amzn-Invoked-Production-Variant`` header;
- non-2xx from the container: 424 ``ModelError`` with ``OriginalStatusCode``,
  ``OriginalMessage`` (the container's body) and ``LogStreamArn``;
- no answer from the container (refused, timed out): 424 ``ModelError`` with
  ``OriginalStatusCode`` 0, as SageMaker reports an invocation timeout;
- unknown endpoint name: 400 ``ValidationError`` "Endpoint X of account Y not found.";
- a body above 6 MB (4 MB for a serverless endpoint): 413 without an error type, "HTTP
  content length exceeded N bytes." (what users reported from the real service,
  aws/sagemaker-python-sdk#171, then with the older 5 MB limit); boto3 shows the code "413";
- a serverless endpoint (``Hosting.serverless``) with its maximum concurrency of invocations
  in flight: 400 ``ThrottlingException`` for one more;
- an asynchronous endpoint (``asynchronous=AsyncInference(...)``) also takes
  ``InvokeEndpointAsync`` (``POST /endpoints/<name>/async-invocations``): 202 with the
  inference id and the output and failure locations, the work done later (``async_inference``).

Fault injection emulates the service itself misbehaving (the AWS boundary, not
our code): ``faults.throttle(n)`` answers the next n calls with 400
``ThrottlingException``, ``faults.unavailable(n)`` with 503 ``ServiceUnavailable``.

    python -m local.runtime_adapter --endpoint-name NAME --container-url URL --port P
"""

from __future__ import annotations

import argparse
import http.client
import json
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from lambda_fn.client_config import ENDPOINT_PAYLOAD_LIMIT, SERVERLESS_PAYLOAD_LIMIT
from local.async_inference import AsyncInference
from local.services import Stoppable

CONTAINER_TIMEOUT_SECONDS = 60.0
VARIANT_NAME = "AllTraffic"


@dataclass
class Faults:
    """Service-side failures to answer with before forwarding, consumed one per call."""

    _queue: list[tuple[int, str, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def throttle(self, count: int) -> None:
        self._add(count, 400, "ThrottlingException", "Rate exceeded")

    def unavailable(self, count: int) -> None:
        self._add(count, 503, "ServiceUnavailable", "Service is temporarily unavailable")

    def _add(self, count: int, status: int, code: str, message: str) -> None:
        with self._lock:
            self._queue.extend([(status, code, message)] * count)

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()

    def next(self) -> tuple[int, str, str] | None:
        with self._lock:
            return self._queue.pop(0) if self._queue else None


@dataclass(frozen=True)
class Hosting:
    """What SageMaker enforces in front of the container, which depends on how the endpoint
    is hosted: the largest request, and (serverless) the invocations it runs at once."""

    payload_limit_bytes: int = ENDPOINT_PAYLOAD_LIMIT
    max_concurrency: int | None = None

    @classmethod
    def serverless(cls, max_concurrency: int) -> Hosting:
        return cls(SERVERLESS_PAYLOAD_LIMIT, max_concurrency)


@dataclass(frozen=True)
class Invocation:
    """One call the adapter answered (for tests to count requests and check statuses)."""

    content_type: str
    accept: str
    body_bytes: int
    status: int


class RuntimeAdapter(Stoppable, ThreadingHTTPServer):
    """The HTTP server; its state is what every request handler reads."""

    daemon_threads = True

    def __init__(
        self,
        port: int,
        *,
        endpoint_name: str,
        container_url: str,
        hosting: Hosting = Hosting(),
        asynchronous: AsyncInference | None = None,
        account_id: str = "123456789012",
        region: str = "us-east-1",
        host: str = "127.0.0.1",
    ) -> None:
        super().__init__((host, port), _Handler)
        self.endpoint_name = endpoint_name
        self.hosting = hosting
        self.asynchronous = asynchronous
        self._in_flight = 0
        self._in_flight_lock = threading.Lock()
        self.container = urlsplit(container_url)
        self.account_id, self.region = account_id, region
        self.faults = Faults()
        self.invocations: list[Invocation] = []
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def log_stream_arn(self) -> str:
        return (
            f"arn:aws:logs:{self.region}:{self.account_id}:log-group:"
            f"/aws/sagemaker/Endpoints/{self.endpoint_name}"
        )

    def admit(self) -> bool:
        """Count one more invocation in flight, unless the endpoint's concurrency is used up."""
        with self._in_flight_lock:
            limit = self.hosting.max_concurrency
            if limit is not None and self._in_flight >= limit:
                return False
            self._in_flight += 1
            return True

    def release(self) -> None:
        with self._in_flight_lock:
            self._in_flight -= 1

    def forward(self, body: bytes, content_type: str, accept: str) -> tuple[int, str, bytes]:
        """POST to the container's `/invocations`: (status, content type, body)."""
        connection = http.client.HTTPConnection(
            self.container.hostname, self.container.port, timeout=CONTAINER_TIMEOUT_SECONDS
        )
        headers = {"Content-Type": content_type}
        if accept:
            headers["Accept"] = accept
        try:
            connection.request("POST", "/invocations", body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.getheader("Content-Type", ""), response.read()
        finally:
            connection.close()

    def start(self) -> RuntimeAdapter:
        """Serve in a background thread."""
        if self.asynchronous is not None:
            self.asynchronous.endpoint_name = self.endpoint_name
            self.asynchronous.start(self.forward)
        self._thread = threading.Thread(target=self.serve_forever, name="runtime-adapter")
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self.asynchronous is not None:
            self.asynchronous.stop()
        if self._thread:
            self._thread.join()


def start_runtime_adapter(
    endpoint_name: str, container_url: str, port: int = 0, **kwargs: Any
) -> RuntimeAdapter:
    """Start the adapter on ``port`` (0: a free one) in a background thread."""
    return RuntimeAdapter(
        port, endpoint_name=endpoint_name, container_url=container_url, **kwargs
    ).start()


class _Handler(BaseHTTPRequestHandler):
    server: RuntimeAdapter
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the tests and the demo read the client's log, not an access log."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        content_type = self.headers.get("Content-Type", "")
        accept = self.headers.get("Accept", "")
        status = self._answer(body, content_type, accept)
        self.server.invocations.append(Invocation(content_type, accept, len(body), status))

    def _answer(self, body: bytes, content_type: str, accept: str) -> int:
        parts = self.path.split("?")[0].strip("/").split("/")
        operations = ("invocations", "async-invocations")
        if len(parts) != 3 or parts[0] != "endpoints" or parts[2] not in operations:
            return self._error(404, "UnknownOperationException", f"no operation at {self.path}")
        name = unquote(parts[1])
        if name != self.server.endpoint_name:
            return self._error(
                400,
                "ValidationError",
                f"Endpoint {name} of account {self.server.account_id} not found.",
            )
        if parts[2] == "async-invocations":
            return self._answer_async()
        limit = self.server.hosting.payload_limit_bytes
        if len(body) > limit:
            message = f"HTTP content length exceeded {limit} bytes."
            body_413 = json.dumps({"message": message}).encode()
            self._send(413, body_413, {"Content-Type": "application/json"})
            return 413
        fault = self.server.faults.next()
        if fault:
            return self._error(*fault)
        if not self.server.admit():
            return self._error(400, "ThrottlingException", "Rate exceeded")
        try:
            status, reply_type, reply = self.server.forward(body, content_type, accept)
        except OSError as exc:
            return self._model_error(0, f"Could not reach container primary: {exc}")
        finally:
            self.server.release()
        if not 200 <= status < 300:
            return self._model_error(status, reply.decode("utf-8", "replace"))
        self._send(
            200,
            reply,
            {"Content-Type": reply_type, "x-Amzn-Invoked-Production-Variant": VARIANT_NAME},
        )
        return 200

    def _answer_async(self) -> int:
        asynchronous = self.server.asynchronous
        if asynchronous is None:
            return self._error(
                400, "ValidationError", f"Endpoint {self.server.endpoint_name} is not asynchronous."
            )
        header = self.headers.get
        location = header("X-Amzn-SageMaker-InputLocation", "")
        if not location.startswith("s3://"):
            return self._error(400, "ValidationError", f"InputLocation {location!r} is no S3 URI")
        inference = header("X-Amzn-SageMaker-Inference-Id") or str(uuid.uuid4())
        output, failure = asynchronous.submit(
            inference,
            location,
            header("X-Amzn-SageMaker-Content-Type", "application/octet-stream"),
            header("X-Amzn-SageMaker-Accept", ""),
        )
        headers = {
            "Content-Type": "application/json",
            "X-Amzn-SageMaker-OutputLocation": output,
            "X-Amzn-SageMaker-FailureLocation": failure,
        }
        self._send(202, json.dumps({"InferenceId": inference}).encode(), headers)
        return 202

    def _model_error(self, original_status: int, original_message: str) -> int:
        side = "client" if 400 <= original_status < 500 else "server"
        message = (
            f"Received {side} error ({original_status}) from primary with message "
            f'"{original_message}". See {self.server.log_stream_arn} in account '
            f"{self.server.account_id} for more information."
        )
        return self._error(
            424,
            "ModelError",
            message,
            OriginalStatusCode=original_status,
            OriginalMessage=original_message,
            LogStreamArn=self.server.log_stream_arn,
            ErrorCode=f"{side.upper()}_ERROR_FROM_MODEL",
        )

    def _error(self, status: int, code: str, message: str, **fields: object) -> int:
        body = json.dumps({"message": message, **fields}).encode()
        self._send(status, body, {"Content-Type": "application/json", "x-amzn-ErrorType": code})
        return status

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in {**headers, "x-amzn-RequestId": str(uuid.uuid4())}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint-name", required=True)
    parser.add_argument("--container-url", required=True, help="e.g. http://127.0.0.1:8080")
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    adapter = RuntimeAdapter(
        args.port,
        endpoint_name=args.endpoint_name,
        container_url=args.container_url,
        host=args.host,
    )
    print(
        f"SageMaker runtime for endpoint {args.endpoint_name} at {adapter.url} "
        f"(AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME={adapter.url}) -> {args.container_url}",
        flush=True,
    )
    try:
        adapter.serve_forever()
    except KeyboardInterrupt:
        adapter.server_close()


if __name__ == "__main__":
    main()
