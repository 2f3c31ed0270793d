"""`make demo`: the whole pipeline on one machine, with no AWS account.

Synthesizes the CDK app, then runs what the stacks would run in AWS, with the
configuration read back from the synthesized templates (never a second copy):

1. the training program on the bundled data, in SageMaker's directory layout,
   with the training job's hyperparameters and metric definitions; for a spot job
   (``-c config.training.use_spot=true ...``), as SageMaker runs one whose instance is
   reclaimed: stopped with SIGTERM after its first checkpoint, then resumed on a second
   instance from the checkpoints the first left, with how much the resume saved;
2. packages the model as SageMaker does (``model.tar.gz``) and unpacks it into a
   fresh, read-only serving tree;
3. the model server with the serving stack's container environment, moto's S3
   server and the local SageMaker runtime adapter, on free loopback ports;
4. the client Lambda's handler, in its own process with the client stack's
   environment, on the exact event S3 sends for the uploaded inference file; with an
   asynchronous endpoint (``-c config.serving.mode=async``), SageMaker's queue then works
   and SNS hands each notification to the completion handler, as the stacks have it;
5. a generated file above the batch threshold (``--big-file-mb``, default 16 MiB; the demo
   sets the threshold to 8 MiB unless ``-c`` sets one): the client starts a batch transform
   job, a second model server with SageMaker's batch environment runs it
   (``local.batch_transform``), and the transform handler publishes its ``.out``, which must
   hold exactly the sample file's predictions, record for record.

Each run works in a directory of its own (``build/demo/<time>-<pid>/``, or
``--workdir``) on free ports, so two demos at once never collide.

    python -m local.demo [--workdir DIR] [--big-file-mb N] [-c KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from local.async_inference import AsyncInference
from local.batch_transform import BatchTransform, container_environment
from local.credentials import FAKE_CREDENTIALS
from local.model_server import predictor_at, start_model_server
from local.moto_server import start_moto_server
from local.runtime_adapter import Hosting, start_runtime_adapter
from local.s3_event import object_created_record
from local.sagemaker_jobs import (
    JobError,
    fresh_dir,
    literal_values,
    package_model,
    parse_metrics,
    prepare_training_tree,
    synthesize,
    unpack_model,
)

ROOT = Path(__file__).resolve().parent.parent
TRAIN_PROGRAM = ROOT / "containers" / "bin" / "train"
LAMBDA_DIR = ROOT / "lambda_fn"
DATA_DIR = ROOT / "data"
INFERENCE_FILE = DATA_DIR / "inference" / "inference.csv"
INPUT_KEY = "incoming/inference.csv"
# Where the asynchronous endpoint's stand-in writes its results and failures.
ASYNC_BUCKET = "demo-async-inference"
# Where batch transform jobs stage their requests and write their output (the models bucket).
MODELS_BUCKET = "demo-models"
LARGE_KEY = "incoming/large.csv"
# The demo's batch threshold, unless `-c config.client.batch_transform.threshold_bytes=N`.
DEMO_BATCH_THRESHOLD_BYTES = 8 * 1024 * 1024
THRESHOLD_SETTING = "config.client.batch_transform.threshold_bytes"
REGION = "us-east-1"


class Progress:
    """Numbered steps with their duration, printed as they run."""

    def __init__(self, total: int) -> None:
        self.total, self.number, self.current = total, 0, "starting"

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[None]:
        self.number += 1
        self.current = f"step {self.number}/{self.total} ({title})"
        print(f"\n[{self.number}/{self.total}] {title}", flush=True)
        started = time.perf_counter()
        yield
        print(f"      done in {time.perf_counter() - started:.1f} s", flush=True)


def say(text: str) -> None:
    print(f"      {text}", flush=True)


# --- the synthesized app: the one source of truth for what the demo runs ------------------


# The training program's lines the spot emulation reads.
CHECKPOINT_WRITTEN = re.compile(r"checkpoint (checkpoint-\d+\.ckpt) written")
RESUMED = re.compile(
    r"resuming from (checkpoint-\d+\.ckpt): iteration (\d+) of \d+ .*?; ([\d.]+) s of training"
)
EXIT_STOPPED = 128 + signal.SIGTERM


@dataclass(frozen=True)
class TrainingRun:
    log: str
    # Ended by the SIGTERM the demo sent (exit code 143), not by finishing.
    stopped: bool


def run_training(ml_root: Path, image_env: dict[str, str], reclaim: bool = False) -> TrainingRun:
    """Run ``train`` as ``docker run IMAGE train`` would; echo and return its log.

    ``reclaim``: send SIGTERM, SageMaker's notice that a spot instance is being reclaimed, as
    soon as the first checkpoint is written.
    """
    env = {**os.environ, **image_env, "ML_ROOT": str(ml_root), "PYTHONUNBUFFERED": "1"}
    lines: list[str] = []
    sent = False
    with subprocess.Popen(
        [sys.executable, str(TRAIN_PROGRAM)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            for line in process.stdout:
                lines.append(line)
                print(f"      │ {line.rstrip()}", flush=True)
                if reclaim and not sent and CHECKPOINT_WRITTEN.search(line):
                    print("      │ ── SIGTERM: the spot instance is being reclaimed ──", flush=True)
                    process.send_signal(signal.SIGTERM)
                    sent = True
        finally:
            if process.poll() is None:
                process.terminate()
            process.wait()
    stopped = sent and process.returncode == EXIT_STOPPED
    if process.returncode != 0 and not stopped:
        failure = ml_root / "output" / "failure"
        reason = failure.read_text() if failure.exists() else "no failure file written"
        raise JobError(f"training exited with code {process.returncode}: {reason}")
    return TrainingRun("".join(lines), stopped)


@dataclass(frozen=True)
class SpotResume:
    """What resuming on a second instance saved of the run."""

    checkpoint: str
    resumed_at: int
    iterations: int
    seconds_saved: float

    def describe(self) -> str:
        return (
            f"resumed from {self.checkpoint}: {self.resumed_at} of the run's {self.iterations} "
            f"iterations ({self.resumed_at / self.iterations:.0%}) and {self.seconds_saved:.1f} s "
            "of training were not repeated"
        )


def train_on_spot(
    workdir: Path, job: dict[str, Any], image_env: dict[str, str]
) -> tuple[Path, str, SpotResume]:
    """A spot job whose instance is reclaimed, as SageMaker runs it: instance 1 gets SIGTERM
    after its first checkpoint; SageMaker syncs `/opt/ml/checkpoints` to S3 and restores it
    on instance 2, which resumes. Returns instance 2's tree and log, and what was saved.
    """
    first = fresh_dir(workdir / "training-reclaimed")
    prepare_training_tree(first, job)
    (first / "checkpoints").mkdir()
    say("instance 1: SIGTERM (the spot reclaim notice) once its first checkpoint is written")
    if not run_training(first, image_env, reclaim=True).stopped:
        say(
            "instance 1 finished before the notice landed; a reclaimed instance uploads no "
            "model, so only its checkpoints carry over"
        )
    second = fresh_dir(workdir / "training")
    prepare_training_tree(second, job)
    shutil.copytree(first / "checkpoints", second / "checkpoints")
    restored = ", ".join(sorted(path.name for path in (second / "checkpoints").iterdir()))
    say(f"instance 2: {restored} restored from S3")
    log = run_training(second, image_env).log
    found = RESUMED.search(log)
    if found is None:
        raise JobError("instance 2 did not resume from instance 1's checkpoints")
    metadata = json.loads((second / "model" / "metadata.json").read_text())
    resume = SpotResume(found[1], int(found[2]), metadata["iterations_run"], float(found[3]))
    say(resume.describe())
    return second, log, resume


# --- the client, as Lambda runs it -------------------------------------------------------

HANDLER_SNIPPET = (
    "import importlib, json, sys; module, name = sys.argv[1].rsplit('.', 1); "
    "handler = getattr(importlib.import_module(module), name); "
    "print(json.dumps(handler(json.load(sys.stdin), None)))"
)


def invoke_handler(
    event: dict[str, Any], env: dict[str, str], handler: str = "lambda_function.lambda_handler"
) -> Any:
    """The handler in a process of its own, with only the function's environment set."""
    result = subprocess.run(
        [sys.executable, "-c", HANDLER_SNIPPET, handler],
        cwd=LAMBDA_DIR,
        env={"PATH": os.environ.get("PATH", ""), **FAKE_CREDENTIALS, **env},
        input=json.dumps(event),
        capture_output=True,
        text=True,
    )
    for line in result.stdout.splitlines()[:-1]:
        say(f"│ {line}")
    if result.returncode != 0:
        raise JobError(f"the client handler failed:\n{result.stdout}{result.stderr}")
    return json.loads(result.stdout.splitlines()[-1])


@contextlib.contextmanager
def start_batch_transform(
    s3: Any,
    serving_root: Path,
    workdir: Path,
    endpoint_name: str,
    server_env: dict[str, str],
    max_payload_mb: str,
) -> Iterator[BatchTransform]:
    """SageMaker batch transform: a job's container is the model's (same image, model and
    environment), which SageMaker starts with its batch settings added."""
    s3.create_bucket(Bucket=MODELS_BUCKET)
    batch_env = {**server_env, **container_environment(max_payload_mb)}
    workers = int(server_env.get("SAGEMAKER_MODEL_SERVER_WORKERS", "1"))
    with (
        start_model_server(serving_root, workers=workers, env=batch_env, log_dir=workdir) as server,
        BatchTransform(s3, server.url, endpoint_name).start() as batch,
    ):
        yield batch


def score_large_file(
    workdir: Path,
    megabytes: int,
    s3: Any,
    batch: BatchTransform,
    input_bucket: str,
    output_bucket: str,
    sample_predictions: list[str],
    handler_env: dict[str, str],
    templates: Any,
) -> str:
    """Upload a generated file above the threshold; the client starts its job, EventBridge
    hands the job's end to the transform handler, whose `.out` must be the sample's
    predictions repeated."""
    path = workdir / "large.csv"
    repeats = generate_large_file(path, megabytes)
    size = path.stat().st_size
    say(f"{path} ({size:,} bytes): the sample's {len(sample_predictions)} records x {repeats}")
    started = time.perf_counter()
    s3.upload_file(str(path), input_bucket, LARGE_KEY)
    head = s3.head_object(Bucket=input_bucket, Key=LARGE_KEY)
    event = {
        "Records": [
            object_created_record(
                input_bucket,
                LARGE_KEY,
                size,
                etag=head["ETag"],
                version_id=head.get("VersionId"),
                region=REGION,
            )
        ]
    }
    (outcome,) = invoke_handler(event, handler_env)["objects"]
    if outcome["outcome"] != "submitted":
        raise JobError(f"expected a batch transform job for {LARGE_KEY}, got {outcome}")
    transforms = templates.client_function("transform_completion.handler")
    transform_env = {
        **literal_values(transforms.get("Environment", {}).get("Variables", {})),
        **handler_env,
    }
    for job_event in batch.drain():
        mini_batches = sum(1 for job, _ in batch.invocations if job == job_event.job_name)
        say(
            f"job {job_event.job_name}: {job_event.event['detail']['TransformJobStatus']} "
            f"({mini_batches} mini-batches); EventBridge invokes the transform handler:"
        )
        invoke_handler(job_event.event, transform_env, "transform_completion.handler")
    body = s3.get_object(Bucket=output_bucket, Key=f"{LARGE_KEY}.out")["Body"].read()
    seconds = time.perf_counter() - started
    predictions = body.decode().splitlines()
    if predictions != sample_predictions * repeats:
        raise JobError(
            f"s3://{output_bucket}/{LARGE_KEY}.out holds {len(predictions)} predictions that "
            f"are not the sample's {len(sample_predictions)} repeated {repeats} times"
        )
    (workdir / "large-predictions.csv").write_bytes(body)
    summary = (
        f"{len(predictions):,} records by batch transform in {seconds:.1f} s, each the same "
        "as the sample file's prediction"
    )
    say(summary)
    return summary


def served_by(url: str) -> str:
    """Which code predicts in the server at ``url``: its compiled trees, or the model library
    (the server says why in its log), as every response's X-Model-Predictor header says."""
    kind = predictor_at(url) or "not reported"
    return {
        "compiled": "compiled (the model's trees as native code)",
        "library": "library (the model library's own predict)",
    }.get(kind, kind)


def count_records(csv_file: Path) -> int:
    """Data lines of a CSV with a header row."""
    with csv_file.open() as handle:
        return sum(1 for line in handle if line.strip()) - 1


# --- the pipeline ------------------------------------------------------------------------


def generate_large_file(path: Path, megabytes: int) -> int:
    """The sample file's records repeated to at least ``megabytes`` MiB under its header;
    how many times, so the expected predictions are the sample's, repeated."""
    header, _, rows = INFERENCE_FILE.read_text().partition("\n")
    rows = rows.rstrip("\n") + "\n"
    repeats = -(-megabytes * 1024 * 1024 // len(rows))
    with path.open("w") as out:
        out.write(header + "\n")
        for _ in range(repeats):
            out.write(rows)
    return repeats


def run(workdir: Path, progress: Progress, context: list[str], big_file_mb: int) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    cdk_out = workdir / "cdk.out"
    if not any(item.startswith(f"{THRESHOLD_SETTING}=") for item in context):
        context = [*context, f"{THRESHOLD_SETTING}={DEMO_BATCH_THRESHOLD_BYTES}"]

    with progress.step("Synthesizing the six stacks (npx cdk synth)"):
        templates = synthesize(cdk_out, context)
        for line in templates.summary():
            say(line)
        # What the images' Dockerfiles set from their build arguments (the model family).
        image_env = templates.image_build_args
        say(f"images built with {json.dumps(image_env, sort_keys=True)}")

    with progress.step("Training on the bundled data, as the training stack's job would"):
        job = templates.the("Custom::SageMakerTrainingJob")
        say(f"hyperparameters: {json.dumps(job['HyperParameters'], sort_keys=True)}")
        spot = None
        if job["UseSpot"] == "true":
            training_root, log, spot = train_on_spot(workdir, job, image_env)
        else:
            training_root = fresh_dir(workdir / "training")
            prepare_training_tree(training_root, job)
            log = run_training(training_root, image_env).log
        metrics = parse_metrics(log, job["MetricDefinitions"])
        for name, value in metrics.items():
            say(f"metric {name}: {value}")

    with progress.step("Packaging the model as SageMaker does (model.tar.gz)"):
        archive = workdir / "model.tar.gz"
        package_model(training_root / "model", archive)
        serving_root = fresh_dir(workdir / "serving")
        model_dir = unpack_model(archive, serving_root)
        say(f"{archive} ({archive.stat().st_size} bytes) unpacked into {model_dir} (read-only)")

    with contextlib.ExitStack() as services:
        with progress.step("Starting the model server, S3 (moto) and the SageMaker runtime"):
            container_env = literal_values(
                templates.the("AWS::SageMaker::Model")["PrimaryContainer"].get("Environment", {})
            )
            workers = int(container_env.get("SAGEMAKER_MODEL_SERVER_WORKERS", "1"))
            model_server = services.enter_context(
                start_model_server(
                    serving_root,
                    workers=workers,
                    env={**image_env, **container_env},
                    log_dir=workdir,
                )
            )
            predictor = served_by(model_server.url)
            say(
                f"model server: {model_server.url} ({workers} workers; log "
                f"{model_server.log_path}); predictor: {predictor}"
            )
            s3_server = services.enter_context(start_moto_server())
            say(f"S3 (moto): {s3_server.url}")
            s3 = boto3.client(
                "s3",
                endpoint_url=s3_server.url,
                region_name=REGION,
                aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            )
            endpoint_name = templates.the("AWS::SageMaker::Endpoint")["EndpointName"]
            endpoint_config = templates.the("AWS::SageMaker::EndpointConfig")
            (variant,) = endpoint_config["ProductionVariants"]
            serverless = variant.get("ServerlessConfig")
            hosting = Hosting.serverless(serverless["MaxConcurrency"]) if serverless else Hosting()
            queue = None
            if "AsyncInferenceConfig" in endpoint_config:
                s3.create_bucket(Bucket=ASYNC_BUCKET)
                queue = AsyncInference(
                    s3,
                    f"s3://{ASYNC_BUCKET}/async-inference/results/",
                    f"s3://{ASYNC_BUCKET}/async-inference/failures/",
                )
            function = templates.client_function()
            variables = literal_values(function.get("Environment", {}).get("Variables", {}))
            batch = None
            if "BATCH_THRESHOLD_BYTES" in variables:
                batch = services.enter_context(
                    start_batch_transform(
                        s3,
                        serving_root,
                        workdir,
                        endpoint_name,
                        {**image_env, **container_env},
                        variables.get("TRANSFORM_MAX_PAYLOAD_MB", "6"),
                    )
                )
                say(
                    f"SageMaker batch transform: {batch.url}; its jobs' model server (batch "
                    f"mode): {batch.container_url}"
                )
            adapter = services.enter_context(
                start_runtime_adapter(
                    endpoint_name, model_server.url, hosting=hosting, asynchronous=queue
                )
            )
            say(f"SageMaker runtime for endpoint {endpoint_name!r}: {adapter.url}")
            if serverless:
                say(
                    f"serverless: at most {hosting.max_concurrency} invocations at once (more "
                    f"are throttled), {hosting.payload_limit_bytes} bytes per request"
                )
            if queue:
                say(
                    f"asynchronous: results and failures under s3://{ASYNC_BUCKET}/async-inference/"
                )

        with progress.step("Uploading the inference file and invoking the client on S3's event"):
            input_bucket, output_bucket = "demo-inference-input", "demo-inference-output"
            for bucket in (input_bucket, output_bucket):
                s3.create_bucket(Bucket=bucket)
                s3.put_bucket_versioning(
                    Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}
                )
            started = time.perf_counter()
            body = INFERENCE_FILE.read_bytes()
            put = s3.put_object(Bucket=input_bucket, Key=INPUT_KEY, Body=body)
            event = {
                "Records": [
                    object_created_record(
                        input_bucket,
                        INPUT_KEY,
                        len(body),
                        etag=put["ETag"],
                        version_id=put.get("VersionId"),
                        region=REGION,
                    )
                ]
            }
            handler_env = {
                **variables,
                "INFERENCE_OUTPUT_BUCKET": output_bucket,
                "AWS_ENDPOINT_URL_S3": s3_server.url,
                "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": adapter.url,
                **(
                    {
                        "AWS_ENDPOINT_URL_SAGEMAKER": batch.url,
                        "TRANSFORM_STAGING": f"s3://{MODELS_BUCKET}/batch-transform/",
                    }
                    if batch
                    else {}
                ),
            }
            invoke_handler(event, handler_env)
            if queue:
                completions = templates.client_function("async_completion.handler")
                completion_env = {
                    **literal_values(completions.get("Environment", {}).get("Variables", {})),
                    **handler_env,
                    "INFERENCE_INPUT_BUCKET": input_bucket,
                }
                for notification in queue.drain():
                    say(f"SageMaker notifies the {notification.topic} topic; SNS invokes:")
                    invoke_handler(
                        notification.sns_event(), completion_env, "async_completion.handler"
                    )
            output_key = f"{INPUT_KEY}.out"
            predictions = s3.get_object(Bucket=output_bucket, Key=output_key)["Body"].read()
            latency = time.perf_counter() - started
            lines = predictions.decode().splitlines()
            expected = count_records(INFERENCE_FILE)
            if len(lines) != expected:
                raise JobError(
                    f"s3://{output_bucket}/{output_key} holds {len(lines)} predictions "
                    f"for {expected} records"
                )
            local_copy = workdir / "predictions.csv"
            local_copy.write_bytes(predictions)
            say(f"s3://{output_bucket}/{output_key}: {len(lines)} predictions")
            say(f"labels: {dict(Counter(lines))}")

        large = None
        with progress.step(f"Scoring a generated {big_file_mb} MiB file by batch transform"):
            if batch is None:
                say("skipped: batch transform is off (config.client.batch_transform.enabled)")
            else:
                large = score_large_file(
                    workdir,
                    big_file_mb,
                    s3,
                    batch,
                    input_bucket,
                    output_bucket,
                    lines,
                    handler_env,
                    templates,
                )

        with progress.step("Stopping every process the demo started"):
            services.close()
            say("model servers, S3 server, runtime adapter and batch transform stopped")

    return {
        "val_accuracy": metrics.get("Validation Accuracy"),
        "records": len(lines),
        "output": f"s3://{output_bucket}/{output_key}",
        "latency_s": latency,
        "spot_resume": spot.describe() if spot else None,
        "large_file": large,
        "predictor": predictor,
        "artefacts": {
            "templates": cdk_out,
            "model": training_root / "model",
            "model_archive": archive,
            "predictions": local_copy,
            "model_server_log": model_server.log_path,
        },
    }


def print_summary(result: dict[str, Any]) -> None:
    print("\nDemo succeeded", flush=True)
    print(f"  validation accuracy : {result['val_accuracy']}")
    print(f"  records scored      : {result['records']}")
    print(f"  output key          : {result['output']}")
    print(f"  end-to-end latency  : {result['latency_s']:.2f} s (upload to predictions)")
    print(f"  predictor           : {result['predictor']}")
    if result["spot_resume"]:
        print(f"  spot resume         : {result['spot_resume']}")
    if result["large_file"]:
        print(f"  large file          : {result['large_file']}")
    for name, path in result["artefacts"].items():
        print(f"  {name:<20}: {path}")


def _stop_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so every ``finally`` stops what it started."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workdir",
        type=Path,
        default=ROOT / "build" / "demo" / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}",
        help="where the templates, model, archive and predictions go (default: a new folder "
        "under build/demo/)",
    )
    parser.add_argument(
        "-c",
        "--context",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="passed to `cdk synth -c`, e.g. -c config.model_family=xgboost",
    )
    parser.add_argument(
        "--big-file-mb",
        type=int,
        default=16,
        help="the size of the generated file scored by batch transform (default: 16)",
    )
    args = parser.parse_args(argv)
    _stop_on_sigterm()
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        os.environ.pop(name, None)
    if args.big_file_mb * 1024 * 1024 <= DEMO_BATCH_THRESHOLD_BYTES:
        parser.error("--big-file-mb must be above the demo's batch threshold (8 MiB)")
    progress = Progress(total=7)
    try:
        result = run(args.workdir.resolve(), progress, args.context, args.big_file_mb)
    except JobError as error:
        print(f"\nDemo failed at {progress.current}: {error}", file=sys.stderr, flush=True)
        return 1
    except Exception as error:
        print(
            f"\nDemo failed at {progress.current}: {type(error).__name__}: {error}",
            file=sys.stderr,
            flush=True,
        )
        return 1
    except KeyboardInterrupt:
        print("\nDemo interrupted; every process it started was stopped.", file=sys.stderr)
        return 130
    print_summary(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
