"""`make image-test`: both images built from what `cdk synth` stages, their programs run inside.

1. `npx cdk synth`; the two image assets it stages are exactly what `cdk deploy` builds;
2. both images built (Docker, or podman on a stand-in base: see `engines`, `standin`);
3. `train` in the training image, as SageMaker runs it: `/opt/ml` laid out from the
   synthesized training job (channels, hyperparameters), no network; the model and the
   metrics its definitions read; then a bad input, which must fail with a failure file;
4. `serve` in the inference image with the serving stack's container environment and the
   model unpacked read-only: `/ping`, the compiled trees the training image wrote served
   (`X-Model-Predictor`), the sample file's predictions equal to the host's, and
   SIGTERM ending it cleanly within SageMaker's 30 s;
5. a copy of the training Dockerfile with a COPY removed must fail to build, with a message
   that names the image and the step.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from local.checks import Checklist
from local.images.engines import Engine, ImageError, Mount, docker_engine, podman_engine
from local.images.standin import StandIn, ensure_base, install_tools
from local.model_server import predictor_at
from local.rehearsal.assembly import ImageAsset, read_assembly
from local.sagemaker_jobs import (
    DATA_DIR,
    JobError,
    Templates,
    fresh_dir,
    literal_values,
    package_model,
    parse_metrics,
    prepare_training_tree,
    synthesize,
    unpack_model,
)
from local.services import answers, free_port

ROOT = Path(__file__).resolve().parents[2]
INFERENCE_FILE = DATA_DIR / "inference" / "inference.csv"
# Run inside the inference image: the files of the model_kit.serving it has installed.
INSTALLED_SERVING_FILES = (
    "import pathlib, model_kit.serving as s; "
    "print(*sorted(p.name for p in pathlib.Path(s.__file__).parent.iterdir()))"
)
TRAIN_TIMEOUT_SECONDS = 600
PING_TIMEOUT_SECONDS = 120
# SageMaker sends SIGTERM, then SIGKILL after 30 s.
STOP_GRACE_SECONDS = 30
REMOVED_FOR_THE_BROKEN_BUILD = (
    "COPY requirements-model.txt requirements-training.txt requirements-${MODEL_FAMILY}.txt \\\n"
    "    requirements-training-${MODEL_FAMILY}.txt ./"
)


@dataclass(kw_only=True)
class ImageRun(Checklist):
    engine: str = ""
    standin: StandIn | None = None
    built: dict[str, float] = field(default_factory=dict)

    def report(self) -> str:
        lines = [f"engine: {self.engine}"]
        if self.standin:
            reuse = "reused from an earlier run" if self.standin.reused else "built now"
            lines.append(f"base: {self.standin.differences()} ({reuse})")
        else:
            lines.append("base: the real python:3.13-slim-trixie")
        lines.extend(
            f"built {name} image in {seconds:.0f} s" for name, seconds in self.built.items()
        )
        lines.extend(check.line() for check in self.checks)
        return "\n".join(lines)


def choose_engine(workdir: Path, run: ImageRun) -> Engine:
    engine = docker_engine()
    if engine is None:
        installed = install_tools()
        engine = podman_engine(workdir)
        run.standin = ensure_base(engine, workdir)
        if installed:
            engine.name += f"; installed from Debian: {', '.join(installed)}"
    run.engine = engine.name
    return engine


def image_assets(cdk_out: Path) -> dict[str, ImageAsset]:
    """The training and inference image assets the registry stack stages, by image."""
    assets = {
        image.dockerfile.removeprefix("Dockerfile."): image
        for stack in read_assembly(cdk_out)
        for image in stack.images
    }
    if sorted(assets) != ["inference", "training"]:
        raise ImageError(
            f"expected a training and an inference image asset, found {sorted(assets)}"
        )
    return assets


def build(engine: Engine, run: ImageRun, name: str, asset: ImageAsset, logs: Path) -> str:
    tag = f"localhost/custom-sm-image-test/{name}:{asset.tag[:12]}"
    started = time.monotonic()
    engine.build(
        name, asset.directory, asset.dockerfile, tag, logs / f"build-{name}.log", asset.build_args
    )
    run.built[name] = time.monotonic() - started
    engine.remove_other_tags(tag)
    return tag


def check_training(
    engine: Engine, run: ImageRun, image: str, job: dict[str, Any], workdir: Path
) -> Path:
    """`train` as SageMaker runs it; returns the model folder it wrote."""
    ml_root = fresh_dir(workdir / "training")
    prepare_training_tree(ml_root, job)
    result = engine.run(
        image, ["train"], mounts=[Mount(ml_root, "/opt/ml")], timeout=TRAIN_TIMEOUT_SECONDS
    )
    log = result.stdout + result.stderr
    (workdir / "train.log").write_text(log)
    if result.returncode != 0:
        raise ImageError(
            f"`train` failed in the training image (exit {result.returncode}; log "
            f"{workdir / 'train.log'}):\n{_tail(log)}"
        )
    written = sorted(path.name for path in (ml_root / "model").iterdir())
    try:
        metrics = parse_metrics(log, job["MetricDefinitions"])
    except JobError as error:  # a metric its definition does not find in the log
        metrics = {"error": str(error)}
    run.check(
        "train runs in the training image and writes the model",
        # metadata.json and the family's own model file(s)
        "metadata.json" in written and len(written) > 1 and "error" not in metrics,
        f"/opt/ml/model: {', '.join(written) or 'empty'}; metrics {json.dumps(metrics)}",
    )
    return ml_root / "model"


def check_training_failure(
    engine: Engine, run: ImageRun, image: str, job: dict[str, Any], workdir: Path
) -> None:
    """A training file without the label column: a clear reason in /opt/ml/output/failure."""
    ml_root = fresh_dir(workdir / "training-bad-input")
    prepare_training_tree(ml_root, job)
    train_file = next((ml_root / "input" / "data" / "training").glob("*.csv"))
    rows = [line.rsplit(",", 1)[0] for line in train_file.read_text().splitlines()]
    train_file.write_text("\n".join(rows) + "\n")
    result = engine.run(
        image, ["train"], mounts=[Mount(ml_root, "/opt/ml")], timeout=TRAIN_TIMEOUT_SECONDS
    )
    failure = ml_root / "output" / "failure"
    reason = failure.read_text().strip() if failure.exists() else ""
    run.check(
        "a bad training input fails with a reason in /opt/ml/output/failure",
        result.returncode != 0 and "label" in reason,
        f"exit {result.returncode}; failure: {reason[:200] or 'none written'}",
    )


def host_predictions(model_dir: Path) -> tuple[list[str], np.ndarray]:
    """What the model predicts for the sample file on the host, labels and probabilities:
    the oracle."""
    import csv

    from model_kit.model_io import load_model

    model = load_model(model_dir)
    rows = list(csv.reader(INFERENCE_FILE.read_text().splitlines()))[1:]
    matrix = np.array([[float(v) for v in row] for row in rows], dtype=np.float64)
    probabilities = model.predict_proba(matrix)
    return [str(label) for label in model.predict_labels(probabilities)], probabilities


def check_serving(
    engine: Engine, run: ImageRun, image: str, templates: Templates, model_dir: Path, workdir: Path
) -> None:
    """`serve` with the serving stack's environment and the model read-only."""
    archive = workdir / "model.tar.gz"
    package_model(model_dir, archive)
    serving_model = unpack_model(archive, fresh_dir(workdir / "serving"))
    environment = literal_values(
        templates.the("AWS::SageMaker::Model")["PrimaryContainer"].get("Environment", {})
    )
    name = f"custom-sm-image-test-{os.getpid()}"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    engine.remove(name)
    try:
        engine.start(
            name,
            image,
            ["serve"],
            mounts=[Mount(serving_model, "/opt/ml/model", read_only=True)],
            port=port,
            environment=environment,
        )
        started = time.monotonic()
        ready = _wait_for_ping(f"{url}/ping")
        run.check(
            "serve answers /ping in the inference image",
            ready,
            f"after {time.monotonic() - started:.1f} s" if ready else _tail(engine.logs(name)),
        )
        if ready:
            predictor = predictor_at(url)
            metadata = json.loads((serving_model / "metadata.json").read_text())
            compiled = metadata.get("compiled_predictor", {"compiled": False})
            run.check(
                "it serves the compiled trees the training image wrote (LightGBM models)",
                predictor == ("compiled" if metadata["family"] == "lightgbm" else "library")
                and predictor == ("compiled" if compiled["compiled"] else "library"),
                f"X-Model-Predictor: {predictor}; a {metadata['family']} model, "
                f"compiled_predictor {compiled} in its metadata.json",
            )
            labels = _predict(f"{url}/invocations", "text/csv").decode().split()
            expected, probabilities = host_predictions(model_dir)
            run.check(
                "its predictions for the sample file equal the host's",
                labels == expected,
                f"{len(labels)} predictions; the host's model gives {len(expected)}, "
                f"{sum(a == b for a, b in zip(labels, expected, strict=False))} of them equal",
            )
            answer = json.loads(_predict(f"{url}/invocations", "application/json"))
            got = np.array([list(p["probabilities"].values()) for p in answer["predictions"]])
            same = got.shape == probabilities.shape and bool(
                np.allclose(got, probabilities, rtol=0, atol=1e-12)
            )
            run.check(
                "its JSON answer (the C writer built in the image) reads back to the host's "
                "labels and probabilities",
                same and [str(p["label"]) for p in answer["predictions"]] == expected,
                f"{len(got)} records, largest difference "
                f"{np.abs(got - probabilities).max() if same else 'n/a'}",
            )
        exit_code, seconds = engine.stop(name, STOP_GRACE_SECONDS)
        run.check(
            "SIGTERM ends the server cleanly",
            exit_code == 0 and seconds < STOP_GRACE_SECONDS,
            f"exit {exit_code} after {seconds:.1f} s",
        )
        (workdir / "serve.log").write_text(engine.logs(name))
    finally:
        engine.remove(name)
    listing = engine.run(
        image,
        ["python", "-c", INSTALLED_SERVING_FILES],
        mounts=[],
        timeout=60,
    ).stdout.split()
    run.check(
        "the inference image's installed model_kit holds the built C library, not its C source",
        "_native.so" in listing and not any(name.endswith(".c") for name in listing),
        ", ".join(sorted(name for name in listing if name.endswith((".so", ".c")))),
    )


def _wait_for_ping(url: str) -> bool:
    deadline = time.monotonic() + PING_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if answers(url):
            return True
        time.sleep(0.2)
    return False


def _predict(url: str, accept: str) -> bytes:
    request = urllib.request.Request(
        url,
        data=INFERENCE_FILE.read_bytes(),
        headers={"Content-Type": "text/csv", "Accept": accept},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.read()


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def check_broken_build(engine: Engine, run: ImageRun, asset: ImageAsset, workdir: Path) -> None:
    """A Dockerfile missing a COPY must fail with the image and the step in the message."""
    context = workdir / "broken-training"
    shutil.rmtree(context, ignore_errors=True)
    shutil.copytree(asset.directory, context)
    dockerfile = context / asset.dockerfile
    text = dockerfile.read_text()
    if REMOVED_FOR_THE_BROKEN_BUILD not in text:
        run.check("a broken Dockerfile names image and step", False, "the COPY to remove is gone")
        return
    dockerfile.write_text(text.replace(REMOVED_FOR_THE_BROKEN_BUILD, ""))
    try:
        engine.build(
            "training",
            context,
            asset.dockerfile,
            "localhost/custom-sm-image-test/broken:x",
            workdir / "build-broken.log",
            asset.build_args,
        )
        message = "it built"
        named = False
    except ImageError as error:
        message = str(error).splitlines()[0]
        named = "training image" in message and re.search(r"RUN pip install", message) is not None
    finally:
        engine.remove_image("localhost/custom-sm-image-test/broken:x")
        shutil.rmtree(context, ignore_errors=True)
    run.check("a broken Dockerfile fails naming the image and the step", named, message)


def image_test(workdir: Path, context: Sequence[str] = ()) -> ImageRun:
    """Runs every step it can; a step that leaves nothing to go on ends the run as a failed
    check that names the image and the step."""
    run = ImageRun()
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        engine = choose_engine(workdir, run)
        cdk_out = workdir / "cdk.out"
        shutil.rmtree(cdk_out, ignore_errors=True)
        templates = synthesize(cdk_out, context)
        assets = image_assets(cdk_out)
        scratch = fresh_dir(workdir / "runs")
        images = {name: build(engine, run, name, asset, workdir) for name, asset in assets.items()}
        job = templates.the("Custom::SageMakerTrainingJob")
        model_dir = check_training(engine, run, images["training"], job, scratch)
        check_training_failure(engine, run, images["training"], job, scratch)
        check_serving(engine, run, images["inference"], templates, model_dir, scratch)
        check_broken_build(engine, run, assets["training"], scratch)
    except (ImageError, JobError) as error:
        run.check("the image test could go on", False, str(error))
    return run
