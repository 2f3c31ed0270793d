"""Start-up of the model server: bind, load the model once, fork the workers.

The order matters and is the point of this module:

1. Read and validate the environment (standard library only).
2. Bind the socket before importing numpy and LightGBM: the kernel accepts
   connections from then on (SageMaker wants that within 250 ms), and they
   wait in the backlog until a worker is ready, so ``/ping`` never answers
   before the model is loaded.
3. Pin OpenMP to one thread in the master, before LightGBM loads libgomp: the
   master never predicts, and a libgomp thread pool must not exist at fork.
4. Load the model once, then freeze the heap (``freeze_heap``); gunicorn forks
   the workers after that, so they share its memory copy-on-write.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import sys
from typing import Any, NoReturn

from model_kit.serving import memory
from model_kit.serving.config import (
    COMPILED_PREDICTOR,
    GRACEFUL_TIMEOUT_S,
    ConfigError,
    ServerConfig,
)

log = logging.getLogger("model_kit.serving")

# Threads per worker process for large requests (``app.INLINE_BODY_BYTES``): the
# event loop keeps answering /ping and small requests while they predict
# (LightGBM releases the GIL), and 4 keep 2 CPUs busy with 5 MB requests.
THREADS_PER_WORKER = 4
# Longer than SageMaker's 60 s invocation limit, so its kept-alive connections
# are not closed under it between requests.
KEEPALIVE_S = 75
LISTEN_BACKLOG = 2048


def _fail(message: str, code: int) -> NoReturn:
    print(f"serve: error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def listen(port: int) -> socket.socket:
    """The server's socket on every interface; the kernel queues connections from now on."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("0.0.0.0", port))
    except OSError as exc:
        listener.close()
        _fail(f"cannot listen on 0.0.0.0:{port} (SAGEMAKER_BIND_TO_PORT): {exc.strerror}", 1)
    listener.listen(LISTEN_BACKLOG)
    return listener


def pin_master_threads() -> None:
    """One OpenMP/BLAS thread in the master; call before numpy and LightGBM are imported.

    The master never predicts, and a libgomp thread pool must not exist at fork.
    Workers choose their own count per prediction (``ServerConfig.predict_threads``).
    """
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["OPENBLAS_NUM_THREADS"] = "1"


def freeze_heap() -> None:
    """Take everything allocated so far out of the garbage collector's sight.

    numpy, scipy and LightGBM leave ~113,000 objects behind at import; a full
    collection walks them all (54 ms on a benchmark machine), and under load one
    ran now and then in each worker: the slowest 1-record request took 80-90 ms
    instead of 4-9 ms, and p99 at one connection was 3.4 ms instead of 0.3 ms (wrk,
    3 rounds of 8 s). Frozen objects are never collected, and a collection no
    longer writes to them, so the workers keep sharing their pages with the master.
    """
    gc.collect()
    gc.freeze()


def _post_worker_init(worker: Any) -> None:
    """A gunicorn hook: warm the prediction path up and say how it will use the CPUs."""
    worker.asgi.warm_up()
    log.info(
        "worker %d ready: predictions use %d OpenMP thread(s)",
        os.getpid(),
        worker.asgi.predict_threads,
    )


def gunicorn_options(config: ServerConfig, listener: socket.socket) -> dict[str, Any]:
    """gunicorn settings for ``config``, serving on the already bound ``listener``."""
    from model_kit.serving.worker import ModelServerWorker  # gunicorn: after the bind

    return {
        "bind": [f"fd://{listener.fileno()}"],
        "workers": config.workers,
        "worker_class": ModelServerWorker,
        "asgi_loop": "uvloop",
        # The app has nothing to start or stop: workers warm up in post_worker_init.
        "asgi_lifespan": "off",
        # gunicorn's worker timeout: a worker whose event loop stays blocked this long is
        # killed and replaced. Large requests predict on threads while the loop runs, so
        # it bounds hangs, not single slow requests (the payload limit does).
        "timeout": config.timeout_s,
        "graceful_timeout": GRACEFUL_TIMEOUT_S,
        "keepalive": KEEPALIVE_S,
        "preload_app": True,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "info",
        "proc_name": "model-server",
        "control_socket_disable": True,
        "worker_tmp_dir": "/dev/shm" if os.path.isdir("/dev/shm") else None,
        "post_worker_init": _post_worker_init,
    }


def main() -> None:
    """Entry point of ``serve``."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s [%(process)d] [%(levelname)s] %(message)s"
    )
    try:
        config = ServerConfig.from_env()
    except ConfigError as exc:
        _fail(str(exc), 2)
    listener = listen(config.port)
    pin_master_threads()
    memory.tune()

    from model_kit import families
    from model_kit.model_io import load_model
    from model_kit.paths import MLPaths
    from model_kit.serving import native
    from model_kit.serving.app import InferenceApp

    try:
        native.library()
    except ImportError as exc:
        _fail(str(exc), 1)

    model_dir = MLPaths.from_env().model_dir
    try:
        # An image serves the one family it was built for; unset (a dev run), any.
        model = load_model(
            model_dir,
            family=os.environ.get(families.VARIABLE) or None,
            compiled=config.compiled_predictor,
        )
    except Exception as exc:
        _fail(f"cannot load the model from {model_dir}: {exc}", 1)
    # Which code answers, in the log and in every response's X-Model-Predictor header.
    log.info(
        "predictor: %s%s",
        model.predictor_kind,
        "" if config.compiled_predictor else f" ({COMPILED_PREDICTOR}=false)",
    )
    log.info(
        "model loaded from %s: %d features, classes %s; %d worker(s), each an event loop and "
        "%d threads for large requests, on port %d; payload limit %d MB",
        model_dir,
        model.n_features,
        list(model.classes),
        config.workers,
        THREADS_PER_WORKER,
        config.port,
        config.max_payload_mb,
    )
    app = InferenceApp(model, config, THREADS_PER_WORKER)
    freeze_heap()
    run_gunicorn(app, gunicorn_options(config, listener))


def run_gunicorn(app: Any, options: dict[str, Any]) -> None:
    """Run gunicorn's master loop around an app that already holds its model."""
    from gunicorn.app.base import BaseApplication

    class ModelServer(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return app

    ModelServer().run()
