"""What every local service shares: a free port, a wait for it to answer, and its stop.

The model server, moto's S3 server and the SageMaker runtime adapter are each a
``Stoppable``: ``stop()`` ends it and a ``with`` block stops it, so tests and the
demo can stack them.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

POLL_SECONDS = 0.05


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def answers(url: str) -> bool:
    """True once ``GET url`` answers with a 2xx status."""
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def stop_process(process: subprocess.Popen[bytes], timeout_s: float) -> int:
    """SIGTERM, then wait; SIGKILL only if it outlives ``timeout_s``. The exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def wait_until_answering(
    process: subprocess.Popen[bytes],
    url: str,
    *,
    what: str,
    timeout_s: float,
    output: Callable[[], str] = lambda: "",
) -> None:
    """Return once ``url`` answers; raise (with ``output()``) if the process exits or times out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode}{output()}")
        if answers(url):
            return
        time.sleep(POLL_SECONDS)
    stop_process(process, timeout_s=10)
    raise RuntimeError(f"{what} did not answer {url} within {timeout_s} s{output()}")


class Stoppable:
    """Mixed into each local service, so tests and the demo can stack them in ``with``."""

    def stop(self) -> Any:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
