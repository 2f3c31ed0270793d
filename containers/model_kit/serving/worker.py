"""gunicorn's asgi worker, made to stop as soon as its in-flight requests are answered.

On SIGTERM the stock worker waits for every open connection to close, idle
kept-alive ones included, up to the graceful timeout. SageMaker keeps its
connections to the container open, so every stop took the whole 25 s. This
worker closes the connections that sit idle between requests when it starts
to stop; a request in flight is answered (with ``Connection: close``) first.

It also holds back stop signals while it boots: uvloop acts on a signal only
once its loop runs, so a SIGTERM that came during the boot was lost, and the
master killed the worker 25 s later.

Both fixes lean on internals of gunicorn's asgi protocol (``_awaiting_request``,
``_keepalive_timeout``), so gunicorn is pinned; ``tests/containers/
test_serving_lifecycle.py`` stops servers holding idle connections to catch a change.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from typing import Any

from gunicorn.asgi.protocol import ASGIProtocol
from gunicorn.workers.gasgi import ASGIWorker

# How often a running worker tells the master it is alive.
HEARTBEAT_S = 1.0
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGQUIT}


class TrackedProtocol(ASGIProtocol):  # type: ignore[misc]
    """One HTTP connection, known to its worker while it is open."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.worker.connections.add(self)
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.worker.connections.discard(self)
        super().connection_lost(exc)

    def close_if_idle(self) -> None:
        """Close the connection if it is waiting for its next request."""
        if self._awaiting_request and not self._finishing_calls:
            self._keepalive_timeout()


class ModelServerWorker(ASGIWorker):  # type: ignore[misc]
    """An asgi worker (uvloop, no lifespan, no TLS) that tracks its connections."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connections: set[TrackedProtocol] = set()
        self._stop = asyncio.Event()

    def init_process(self) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        super().init_process()

    def handle_exit_signal(self) -> None:
        super().handle_exit_signal()
        self._stop.set()

    def handle_quit_signal(self) -> None:
        super().handle_quit_signal()
        self._stop.set()

    async def _serve(self) -> None:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        for listener in self.sockets:
            server = await self.loop.create_server(
                lambda: TrackedProtocol(self), sock=listener.sock, start_serving=True
            )
            self.servers.append(server)
        while self.alive and self.ppid == os.getppid():
            self.notify()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), HEARTBEAT_S)
        for server in self.servers:
            server.close()
        for connection in list(self.connections):
            connection.close_if_idle()
        await self._shutdown()
