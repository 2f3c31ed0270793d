"""Start the servers under test as real processes, healthy and warmed up.

Ours is ``containers/bin/serve`` through ``local.model_server``, with its compiled trees
(the default) or with ``MODEL_COMPILED_PREDICTOR=false`` (LightGBM); the reference is
``benchmarks/reference/serve.py`` (nginx + gunicorn gevent + flask + pandas). All come
back as ``local.model_server.ModelServer`` (``url``, ``stop()``).
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from pathlib import Path

from local.model_server import ModelServer, start_http_server, start_model_server
from local.services import free_port

# The header naming the code that predicted a response: "compiled" or "library".
PREDICTOR_HEADER = "X-Model-Predictor"

REFERENCE_SERVE = Path(__file__).resolve().parent / "reference" / "serve.py"
STARTUP_TIMEOUT_S = 60.0


def start_reference(ml_root: Path, workers: int) -> ModelServer:
    """The classic server, answering 200 on ``/ping``."""
    port = free_port()
    env = {
        "ML_ROOT": str(ml_root),
        "REFERENCE_PORT": str(port),
        "MODEL_SERVER_WORKERS": str(workers),
    }
    return start_http_server(
        [sys.executable, str(REFERENCE_SERVE)],
        env,
        port,
        "reference-server",
        timeout_s=STARTUP_TIMEOUT_S,
    )


def start_ours(ml_root: Path, workers: int, compiled: bool = True) -> ModelServer:
    """Our server, answering 200 on ``/ping`` (polled every 50 ms by ``local.model_server``);
    ``compiled=False`` turns its compiled trees off, so that LightGBM predicts."""
    env = {} if compiled else {"MODEL_COMPILED_PREDICTOR": "false"}
    return start_model_server(ml_root, workers=workers, env=env)


def _invoke(url: str, body: bytes, accept: str) -> tuple[bytes, str | None]:
    request = urllib.request.Request(
        f"{url}/invocations",
        data=body,
        headers={"Content-Type": "text/csv", "Accept": accept},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.read(), response.headers.get(PREDICTOR_HEADER)


def post_csv(url: str, body: bytes, accept: str = "text/csv") -> bytes:
    """One ``/invocations`` request with a CSV body, asking for ``accept`` back."""
    return _invoke(url, body, accept)[0]


def predictor_of(url: str, body: bytes) -> str | None:
    """Which code predicted the answer to ``body``: the response's ``X-Model-Predictor``
    header (None when the server sends none, as the reference does)."""
    return _invoke(url, body, "text/csv")[1]


def check_predictors(
    servers: dict[str, ModelServer], bodies: list[bytes], expected_by_name: dict[str, str]
) -> dict[str, str]:
    """What predicts in each of our servers, by its answers' header; exits unless each
    serves with the predictor it is labelled with (a compiled server quietly falling back
    to LightGBM would measure LightGBM twice)."""
    found = {}
    for name, expected in expected_by_name.items():
        served = {predictor_of(servers[name].url, body) for body in bodies}
        if served != {expected}:
            raise SystemExit(
                f"{name} answered with {PREDICTOR_HEADER}: {sorted(map(str, served))}, "
                f"expected {expected!r}; "
                f"its log:\n{servers[name].log()[-3000:]}"
            )
        found[name] = expected
    return found
