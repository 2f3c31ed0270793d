"""Run moto's S3 server on a free loopback port, as a separate process.

A subprocess (rather than moto's in-process mock) keeps the client talking real
HTTP to something that is not itself, so tests and the local demo exercise the
same boto3 code path as AWS, and a memory measurement of the client is not
polluted by the server's copy of the data.

    python -m local.s3_server --port 5000
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

from local.stoppable import Stoppable

STARTUP_TIMEOUT_SECONDS = 30.0


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class S3Server(Stoppable):
    """A running moto server; ``url`` is its endpoint, ``stop()`` ends it."""

    def __init__(self, process: subprocess.Popen[bytes], url: str) -> None:
        self.process = process
        self.url = url

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_s3_server(port: int | None = None, host: str = "127.0.0.1") -> S3Server:
    """Start ``python -m moto.server`` and return once it answers HTTP."""
    port = port or free_port(host)
    url = f"http://{host}:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", host, "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    server = S3Server(process, url)
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto server on port {port} exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/moto-api/", timeout=1):
                return server
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(
        f"moto server on port {port} did not answer within {STARTUP_TIMEOUT_SECONDS} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=None, help="default: a free port")
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    with start_s3_server(args.port, args.host) as server:
        print(f"moto S3 server at {server.url} (AWS_ENDPOINT_URL_S3={server.url}); Ctrl-C stops it")
        with contextlib.suppress(KeyboardInterrupt):
            server.process.wait()


if __name__ == "__main__":
    main()
