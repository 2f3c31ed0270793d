"""An S3 endpoint that fails on purpose: a proxy in front of moto's server.

The client under test talks real HTTP to it (``AWS_ENDPOINT_URL_S3``); requests pass to moto
unchanged, except those a fault rule matches, which get S3's own error instead: ``SlowDown``
(503) or ``InternalError`` (500) with S3's XML body, or a connection closed without an answer.
Each rule matches a method and a part of the path and query (``?partNumber=`` for
``UploadPart``, say) and is spent after ``times`` matches, so a test says exactly which calls
fail, and how often.
"""

from __future__ import annotations

import http.client
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from local.services import Stoppable

ERRORS = {
    503: ("SlowDown", "Please reduce your request rate."),
    500: ("InternalError", "We encountered an internal error. Please try again."),
}
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


@dataclass
class Rule:
    method: str
    path_contains: str
    status: int  # 503, 500, or 0: close the connection without answering
    times: int
    hits: int = 0


@dataclass
class S3Faults(Stoppable):
    """The proxy; `fail` adds a rule, `url` is the endpoint to give the client."""

    upstream: str
    rules: list[Rule] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # "METHOD path" of each injected failure
    seen: list[str] = field(default_factory=list)  # "METHOD path" of every request
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    def fail(self, method: str, path_contains: str, status: int = 503, times: int = 1) -> None:
        with self._lock:
            self.rules.append(Rule(method, path_contains, status, times))

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def match(self, method: str, path: str) -> Rule | None:
        with self._lock:
            self.seen.append(f"{method} {path}")
            for rule in self.rules:
                if rule.method == method and rule.path_contains in path and rule.hits < rule.times:
                    rule.hits += 1
                    self.failed.append(f"{method} {path}")
                    return rule
        return None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> S3Faults:
        faults = self

        class Handler(_Proxy):
            proxy = faults

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


class _Proxy(BaseHTTPRequestHandler):
    proxy: S3Faults
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        rule = self.proxy.match(self.command, self.path)
        if rule is not None and rule.status == 0:
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if rule is not None:
            self._error(rule.status)
            return
        upstream = urlsplit(self.proxy.upstream)
        connection = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        try:
            connection.request(self.command, self.path, body=body, headers=headers)
            response = connection.getresponse()
            reply = response.read()
            self.send_response(response.status)
            for name, value in response.getheaders():
                if name.lower() not in HOP_BY_HOP:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(reply)
        finally:
            connection.close()

    def _error(self, status: int) -> None:
        code, message = ERRORS[status]
        request_id = uuid.uuid4().hex[:16].upper()
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{message}</Message>"
            f"<RequestId>{request_id}</RequestId></Error>"
        ).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("x-amz-request-id", request_id)
        self.send_header("Content-Length", "0" if self.command == "HEAD" else str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle
