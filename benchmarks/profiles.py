"""Where a 5 MB request's time goes, in process: stage timings and a pyinstrument profile.

In process, our ASGI app is called as gunicorn calls it (the body in one
message), with one OpenMP thread, as each of two workers runs it; live, py-spy samples the
running workers under load. These profiles are behind RESULTS.md's
explanation of the 5 MB numbers. The model given predicts as the default server does (its
compiled trees); the library model's predict and whole call are timed beside it, so that
the report can say how much of a request the faster predict could save.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from model_kit.model_io import Model
from model_kit.serving import decoders
from model_kit.serving.app import InferenceApp
from model_kit.serving.config import ServerConfig
from model_kit.serving.encoders import PredictionEncoders
from pyinstrument import Profiler

from benchmarks.timing import median_ms
from local.asgi_call import call

# Runs per in-process stage timing.
STAGE_REPEATS = 5


def our_app(model: Model, workers: int) -> InferenceApp:
    """The server's app, not warmed up: without its thread pool it predicts in the caller."""
    config = ServerConfig.from_env({"SAGEMAKER_MODEL_SERVER_WORKERS": str(workers)})
    return InferenceApp(model, config, threads=1)


def call_ours(app: InferenceApp, body: bytes, accept: str = "text/csv") -> bytes:
    """One ``/invocations`` request through our ASGI app; the response body."""
    _, answer = call(app, "/invocations", body, {"Content-Type": "text/csv", "Accept": accept})
    return answer


def stage_ms(model: Model, body: bytes, library: Model) -> dict[str, float]:
    """Median milliseconds of each stage of our request path, and of the whole call, with
    ``model``; predict and the whole call also with ``library`` (the same model, LightGBM)."""
    names = model.feature_names
    features = decoders.parse_csv(body, names)
    probabilities = model.predict_proba(features, num_threads=1)
    encoders = PredictionEncoders(model.classes)
    app = our_app(model, workers=2)
    library_app = our_app(library, workers=2)
    return {
        "parse (decoders.parse_csv)": median_ms(
            lambda: decoders.parse_csv(body, names), STAGE_REPEATS
        ),
        "predict (1 thread)": median_ms(
            lambda: model.predict_proba(features, num_threads=1), STAGE_REPEATS
        ),
        "predict (1 thread, LightGBM)": median_ms(
            lambda: library.predict_proba(features, num_threads=1), STAGE_REPEATS
        ),
        "encode (CSV labels)": median_ms(
            lambda: encoders.csv(probabilities.argmax(axis=1), probabilities), STAGE_REPEATS
        ),
        "encode (JSON labels and probabilities)": median_ms(
            lambda: encoders.json(probabilities.argmax(axis=1), probabilities), STAGE_REPEATS
        ),
        "encode (JSON Lines labels and probabilities)": median_ms(
            lambda: encoders.jsonlines(probabilities.argmax(axis=1), probabilities),
            STAGE_REPEATS,
        ),
        "whole app call": median_ms(lambda: call_ours(app, body), STAGE_REPEATS),
        "whole app call, JSON answer": median_ms(
            lambda: call_ours(app, body, "application/json"), STAGE_REPEATS
        ),
        "whole app call, LightGBM": median_ms(lambda: call_ours(library_app, body), STAGE_REPEATS),
    }


def profile_text(action: Callable[[], object], repeats: int = 5) -> str:
    """pyinstrument's call tree of ``repeats`` calls of ``action``, as plain text."""
    profiler = Profiler(interval=0.0005)
    profiler.start()
    for _ in range(repeats):
        action()
    profiler.stop()
    return profiler.output_text(unicode=False, color=False, show_all=False)


# Stages of a request, matched against py-spy stacks in this order (first match wins).
LIVE_STAGES = (
    ("predict", "predict_proba"),
    ("parse (parse_csv)", "parse_csv"),
    ("encode", "encoders.py"),
    ("read the request body", "_read_body"),
    ("gunicorn: sockets, HTTP", "gunicorn/"),
)


def py_spy_stages(pids: list[int], seconds: int, workdir: Path) -> dict[str, float]:
    """Share of sampled CPU-active time per request stage across ``pids`` (py-spy, 100 Hz).

    Samples the live server workers while they serve; idle threads are not
    sampled, so the shares are of the time the workers spent working.
    """
    outputs = [workdir / f"py-spy-{pid}.txt" for pid in pids]
    recorders = [
        subprocess.Popen(
            [
                str(Path(sys.executable).parent / "py-spy"),
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(seconds),
                "--rate",
                "100",
                "--nonblocking",
                "--format",
                "raw",
                "-o",
                str(output),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for pid, output in zip(pids, outputs, strict=True)
    ]
    counts: dict[str, int] = {name: 0 for name, _ in LIVE_STAGES} | {"other": 0}
    for recorder, output in zip(recorders, outputs, strict=True):
        if recorder.wait(timeout=seconds + 30) != 0 or not output.is_file():
            raise RuntimeError(f"py-spy could not sample the server (exit {recorder.returncode})")
        for line in output.read_text().splitlines():
            stack, _, samples = line.rpartition(" ")
            stage = next((name for name, marker in LIVE_STAGES if marker in stack), "other")
            counts[stage] += int(samples)
    total = sum(counts.values()) or 1
    return {stage: count / total for stage, count in counts.items()}
