"""Run moto's server (every AWS service it emulates) on a free loopback port, as a process.

A subprocess (rather than moto's in-process mock) keeps the client talking real
HTTP to something that is not itself, so tests, the local demo and the deploy rehearsal
exercise the same boto3 code path as AWS, and a memory measurement of the client is not
polluted by the server's copy of the data.

    python -m local.moto_server --port 5000
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys

from local.services import Stoppable, free_port, stop_process, wait_until_answering

STARTUP_TIMEOUT_SECONDS = 30.0


class MotoServer(Stoppable):
    """A running moto server; ``url`` is its endpoint, ``stop()`` ends it."""

    def __init__(self, process: subprocess.Popen[bytes], url: str) -> None:
        self.process = process
        self.url = url

    def stop(self) -> None:
        stop_process(self.process, timeout_s=10)


def start_moto_server(port: int | None = None, host: str = "127.0.0.1") -> MotoServer:
    """Start ``python -m moto.server`` and return once it answers HTTP."""
    port = port or free_port(host)
    url = f"http://{host}:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", host, "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    wait_until_answering(
        process,
        f"{url}/moto-api/",
        what=f"moto server on port {port}",
        timeout_s=STARTUP_TIMEOUT_SECONDS,
    )
    return MotoServer(process, url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=None, help="default: a free port")
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    with start_moto_server(args.port, args.host) as server:
        print(f"moto server at {server.url} (AWS_ENDPOINT_URL={server.url}); Ctrl-C stops it")
        with contextlib.suppress(KeyboardInterrupt):
            server.process.wait()


if __name__ == "__main__":
    main()
