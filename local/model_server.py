"""Run the inference container's ``serve`` program as a local process.

Tests, the Lambda's tests and the local demo need the real model server, not
an imitation: this starts ``containers/bin/serve`` with ``ML_ROOT`` pointing at
a directory that holds ``model/``, on a free port, and returns once ``/ping``
answers 200 (which the server only does after the model is loaded).

    with start_model_server(ml_root) as server:
        urllib.request.urlopen(server.url + "/ping")

    python -m local.model_server --ml-root DIR [--port 8080] [--workers 1]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from local.services import Stoppable, free_port, stop_process, wait_until_answering

SERVE_PROGRAM = Path(__file__).resolve().parent.parent / "containers" / "bin" / "serve"
STARTUP_TIMEOUT_SECONDS = 30.0
# SageMaker sends SIGKILL 30 s after SIGTERM; the server must be gone by then.
STOP_TIMEOUT_SECONDS = 30.0


class ModelServer(Stoppable):
    """A running ``serve`` process: ``url``, ``log()``, ``stop()``; a context manager."""

    def __init__(self, process: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
        self.process = process
        self.url = url
        self.log_path = log_path

    def log(self) -> str:
        """Everything the server printed so far (stdout and stderr)."""
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> int:
        """SIGTERM, as SageMaker does, then wait; SIGKILL only if it outlives ``timeout``."""
        return stop_process(self.process, timeout)


def start_model_server(
    ml_root: Path,
    port: int | None = None,
    workers: int = 1,
    env: Mapping[str, str] | None = None,
    log_dir: Path | None = None,
) -> ModelServer:
    """Start ``serve`` on ``ml_root/model`` and return once ``/ping`` answers 200.

    ``env`` adds variables (e.g. ``SAGEMAKER_BATCH``); ``ML_ROOT``, the port and the
    worker count always come from the arguments. The server's output goes to a log file
    in ``log_dir`` (default: the system's temp folder).
    """
    port = port or free_port()
    # The arguments win over ``env``: the helper must ping the port it chose.
    server_env = {
        **(env or {}),
        "ML_ROOT": str(ml_root),
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "SAGEMAKER_MODEL_SERVER_WORKERS": str(workers),
    }
    return start_http_server(
        [sys.executable, str(SERVE_PROGRAM)], server_env, port, "model-server", log_dir=log_dir
    )


def predictor_at(url: str) -> str | None:
    """Which code predicts in our model server at ``url``: ``compiled`` or ``library``, as
    its ``/ping`` (and every response) says in X-Model-Predictor."""
    from model_kit.serving.app import PREDICTOR_HEADER

    with urllib.request.urlopen(f"{url}/ping", timeout=10) as response:
        return response.headers.get(PREDICTOR_HEADER.decode())


def start_http_server(
    command: list[str],
    env: Mapping[str, str],
    port: int,
    name: str,
    *,
    log_dir: Path | None = None,
    timeout_s: float = STARTUP_TIMEOUT_SECONDS,
) -> ModelServer:
    """Run ``command`` (a server of SageMaker's container contract on ``port``) until healthy.

    Returns once ``/ping`` answers 200; raises ``RuntimeError`` with the server's
    output if it exits first or is not healthy within ``timeout_s``.
    """
    log_file = tempfile.NamedTemporaryFile(  # noqa: SIM115 - the file outlives this function
        prefix=f"{name}-{port}-", suffix=".log", dir=log_dir, delete=False
    )
    process = subprocess.Popen(
        command,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
    )
    log_file.close()
    server = ModelServer(process, f"http://127.0.0.1:{port}", Path(log_file.name))
    wait_until_answering(
        process,
        f"{server.url}/ping",
        what=f"{name} on port {port}",
        timeout_s=timeout_s,
        output=lambda: f":\n{server.log()}",
    )
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ml-root", type=Path, required=True, help="a directory holding model/")
    parser.add_argument("--port", type=int, default=None, help="default: a free port")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    with start_model_server(args.ml_root, args.port, args.workers) as server:
        print(f"model server at {server.url} (log: {server.log_path}); Ctrl-C stops it")
        with contextlib.suppress(KeyboardInterrupt):
            server.process.wait()


if __name__ == "__main__":
    main()
