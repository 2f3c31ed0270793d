"""Where a 5 MB request's time goes, in process: stage timings and a pyinstrument profile.

Our WSGI app is called exactly as gunicorn calls it, with one OpenMP thread,
as each of two workers runs it: this is the profile behind RESULTS.md's
explanation of the 5 MB numbers.
"""

from __future__ import annotations

import io
import statistics
import time
from collections.abc import Callable
from typing import Any

from model_kit.model_io import Model
from model_kit.serving import decoders
from model_kit.serving.app import InferenceApp
from model_kit.serving.config import ServerConfig
from model_kit.serving.encoders import PredictionEncoders
from pyinstrument import Profiler


def median_ms(action: Callable[[], object], repeats: int = 5) -> float:
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings) * 1e3


def our_app(model: Model, workers: int) -> InferenceApp:
    config = ServerConfig.from_env({"SAGEMAKER_MODEL_SERVER_WORKERS": str(workers)})
    return InferenceApp(model, config)


def call_ours(app: InferenceApp, body: bytes) -> bytes:
    """One ``/invocations`` request through our WSGI app."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/invocations",
        "CONTENT_TYPE": "text/csv",
        "HTTP_ACCEPT": "text/csv",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    return b"".join(app(environ, lambda status, headers: None))


def stage_ms(model: Model, body: bytes) -> dict[str, float]:
    """Median milliseconds of each stage of our request path, and of the whole call."""
    names = model.feature_names
    features = decoders.parse_csv(body, names)
    probabilities = model.predict_proba(features, num_threads=1)
    encoders = PredictionEncoders(model.classes)
    app = our_app(model, workers=2)
    return {
        "parse (decoders.parse_csv)": median_ms(lambda: decoders.parse_csv(body, names)),
        "predict (1 thread)": median_ms(lambda: model.predict_proba(features, num_threads=1)),
        "encode (CSV labels)": median_ms(
            lambda: encoders.csv(probabilities.argmax(axis=1), probabilities)
        ),
        "whole WSGI call": median_ms(lambda: call_ours(app, body)),
    }


def profile_text(action: Callable[[], object], repeats: int = 5) -> str:
    """pyinstrument's call tree of ``repeats`` calls of ``action``, as plain text."""
    profiler = Profiler(interval=0.0005)
    profiler.start()
    for _ in range(repeats):
        action()
    profiler.stop()
    return profiler.output_text(unicode=False, color=False, show_all=False)
