"""Start the two servers under test as real processes, healthy and warmed up.

Ours is ``containers/bin/serve`` through ``local.model_server``; the reference
is ``benchmarks/reference/serve.py`` (nginx + gunicorn gevent + flask + pandas).
Both come back as ``local.model_server.ModelServer`` (``url``, ``stop()``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from local.model_server import ModelServer, start_model_server
from local.s3_server import free_port

REFERENCE_SERVE = Path(__file__).resolve().parent / "reference" / "serve.py"
STARTUP_TIMEOUT_S = 60.0


def ping_status(url: str) -> int | None:
    """The status of ``GET /ping``, or None when nothing answers yet."""
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def wait_healthy(server: ModelServer, timeout_s: float = STARTUP_TIMEOUT_S) -> float:
    """Poll ``/ping`` until 200; the seconds it took. Raises with the log if it never does."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited with {server.process.returncode}:\n{server.log()}")
        if ping_status(server.url) == 200:
            return time.perf_counter() - started
        time.sleep(0.05)  # as local.model_server polls ours
    server.stop()
    raise RuntimeError(f"{server.url} not healthy after {timeout_s} s:\n{server.log()}")


def launch_reference(ml_root: Path, workers: int, port: int | None = None) -> ModelServer:
    """Start the classic server without waiting for it."""
    port = port or free_port()
    log_file = tempfile.NamedTemporaryFile(  # noqa: SIM115 - the file outlives this function
        prefix=f"reference-server-{port}-", suffix=".log", delete=False
    )
    process = subprocess.Popen(
        [sys.executable, str(REFERENCE_SERVE)],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env={
            **os.environ,
            "ML_ROOT": str(ml_root),
            "REFERENCE_PORT": str(port),
            "MODEL_SERVER_WORKERS": str(workers),
            "PYTHONUNBUFFERED": "1",
        },
    )
    log_file.close()
    return ModelServer(process, f"http://127.0.0.1:{port}", Path(log_file.name))


def start_reference(ml_root: Path, workers: int) -> ModelServer:
    """The classic server, answering 200 on ``/ping``."""
    server = launch_reference(ml_root, workers)
    wait_healthy(server)
    return server


def start_ours(ml_root: Path, workers: int) -> ModelServer:
    """Our server, answering 200 on ``/ping`` (polled every 50 ms by ``local.model_server``)."""
    return start_model_server(ml_root, workers=workers)


def post_csv(url: str, body: bytes) -> bytes:
    """One ``/invocations`` request with a CSV body, asking for CSV back."""
    request = urllib.request.Request(
        f"{url}/invocations",
        data=body,
        headers={"Content-Type": "text/csv", "Accept": "text/csv"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.read()
