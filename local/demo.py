"""`make demo`: the whole pipeline on one machine, with no AWS account.

Synthesizes the CDK app, then runs what the stacks would run in AWS, with the
configuration read back from the synthesized templates (never a second copy):

1. the training program on the bundled data, in SageMaker's directory layout,
   with the training job's hyperparameters and metric definitions;
2. packages the model as SageMaker does (``model.tar.gz``) and unpacks it into a
   fresh, read-only serving tree;
3. the model server with the serving stack's container environment, moto's S3
   server and the local SageMaker runtime adapter, on free loopback ports;
4. the client Lambda's handler, in its own process with the client stack's
   environment, on the exact event S3 sends for the uploaded inference file.

Each run works in a directory of its own (``build/demo/<time>-<pid>/``, or
``--workdir``) on free ports, so two demos at once never collide.

    python -m local.demo [--workdir DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from local.credentials import FAKE_CREDENTIALS
from local.model_server import start_model_server
from local.moto_server import start_moto_server
from local.runtime_adapter import start_runtime_adapter
from local.s3_event import object_created_record

ROOT = Path(__file__).resolve().parent.parent
TRAIN_PROGRAM = ROOT / "containers" / "bin" / "train"
LAMBDA_DIR = ROOT / "lambda_fn"
DATA_DIR = ROOT / "data"
INFERENCE_FILE = DATA_DIR / "inference" / "inference.csv"
INPUT_KEY = "incoming/inference.csv"
REGION = "us-east-1"
# What SageMaker writes into resourceconfig.json for a one-instance job.
RESOURCE_CONFIG = {"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0"}


class DemoError(Exception):
    """A step failed; the message says which and why."""


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


@dataclass(frozen=True)
class Templates:
    """The synthesized CloudFormation templates, by stack name."""

    by_stack: dict[str, dict[str, Any]]

    @classmethod
    def read(cls, cdk_out: Path) -> Templates:
        manifest = json.loads((cdk_out / "manifest.json").read_text())
        by_stack = {
            name: json.loads((cdk_out / artifact["properties"]["templateFile"]).read_text())
            for name, artifact in manifest["artifacts"].items()
            if artifact["type"] == "aws:cloudformation:stack"
        }
        return cls(by_stack)

    def resources(self, resource_type: str) -> list[dict[str, Any]]:
        return [
            resource
            for template in self.by_stack.values()
            for resource in template.get("Resources", {}).values()
            if resource["Type"] == resource_type
        ]

    def the(self, resource_type: str) -> dict[str, Any]:
        """The only resource of ``resource_type`` in the app."""
        found = self.resources(resource_type)
        if len(found) != 1:
            raise DemoError(f"expected one {resource_type} in the app, found {len(found)}")
        return found[0]["Properties"]

    def client_function(self) -> dict[str, Any]:
        """The Lambda whose handler is the client's (not the custom resources')."""
        for resource in self.resources("AWS::Lambda::Function"):
            if resource["Properties"].get("Handler") == "lambda_function.lambda_handler":
                return resource["Properties"]
        raise DemoError("no Lambda with handler lambda_function.lambda_handler in the app")

    def summary(self) -> list[str]:
        lines = []
        for name, template in self.by_stack.items():
            types = Counter(r["Type"] for r in template.get("Resources", {}).values())
            counts = ", ".join(f"{n} {t.split('::', 1)[1]}" for t, n in sorted(types.items()))
            lines.append(f"{name}: {sum(types.values())} resources ({counts})")
        return lines


def literal_values(mapping: dict[str, Any]) -> dict[str, str]:
    """The entries of a template mapping known at synth time (not CloudFormation tokens)."""
    return {key: value for key, value in mapping.items() if isinstance(value, str)}


def synthesize(cdk_out: Path) -> Templates:
    command = ["npx", "--no-install", "cdk", "synth", "--quiet", "--output", str(cdk_out)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise DemoError(f"`{' '.join(command)}` failed:\n{result.stdout}{result.stderr}")
    return Templates.read(cdk_out)


# --- training, as a SageMaker training job runs it ----------------------------------------


def fresh_dir(path: Path) -> Path:
    """An empty directory at ``path`` (an earlier run's read-only model tree included)."""
    if path.exists():
        for child in [path, *path.rglob("*")]:
            child.chmod(child.stat().st_mode | stat.S_IWUSR)
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def prepare_training_tree(ml_root: Path, job: dict[str, Any]) -> None:
    """``/opt/ml/input`` as SageMaker lays it out for the training job the stack starts."""
    config_dir = ml_root / "input" / "config"
    config_dir.mkdir(parents=True)
    (config_dir / "hyperparameters.json").write_text(json.dumps(job["HyperParameters"]))
    channels = [channel["ChannelName"] for channel in job["Channels"]]
    input_config = {
        name: {
            "TrainingInputMode": "File",
            "S3DistributionType": "FullyReplicated",
            "RecordWrapperType": "None",
        }
        for name in channels
    }
    (config_dir / "inputdataconfig.json").write_text(json.dumps(input_config))
    (config_dir / "resourceconfig.json").write_text(json.dumps(RESOURCE_CONFIG))
    for name in channels:
        # The storage stack deploys data/<channel>/ to s3://<data bucket>/<channel>/.
        shutil.copytree(DATA_DIR / name, ml_root / "input" / "data" / name)


def run_training(ml_root: Path) -> str:
    """Run ``train`` as ``docker run IMAGE train`` would; echo and return its log."""
    env = {**os.environ, "ML_ROOT": str(ml_root), "PYTHONUNBUFFERED": "1"}
    lines: list[str] = []
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
        finally:
            if process.poll() is None:
                process.terminate()
            process.wait()
    if process.returncode != 0:
        failure = ml_root / "output" / "failure"
        reason = failure.read_text() if failure.exists() else "no failure file written"
        raise DemoError(f"training exited with code {process.returncode}: {reason}")
    return "".join(lines)


def parse_metrics(log: str, definitions: list[dict[str, str]]) -> dict[str, float]:
    """Apply the job's metric definitions to its log, as SageMaker does (last match wins)."""
    metrics = {}
    for definition in definitions:
        matches = re.findall(definition["Regex"], log)
        if not matches:
            raise DemoError(f"metric {definition['Name']!r} ({definition['Regex']}) not in the log")
        metrics[definition["Name"]] = float(matches[-1])
    return metrics


# --- packaging, as SageMaker uploads /opt/ml/model and hosting unpacks it -----------------


def package_model(model_dir: Path, archive: Path) -> None:
    """``model.tar.gz`` with the model directory's files at the archive's root."""
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(model_dir.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(model_dir)), recursive=False)


def unpack_model(archive: Path, serving_root: Path) -> Path:
    """Unpack into ``<serving_root>/model`` and make it read-only, as on an endpoint."""
    model_dir = serving_root / "model"
    model_dir.mkdir(parents=True)
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(model_dir, filter="data")
    for path in [*model_dir.rglob("*"), model_dir]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    return model_dir


# --- the client, as Lambda runs it -------------------------------------------------------

HANDLER_SNIPPET = (
    "import json, sys, lambda_function; "
    "print(json.dumps(lambda_function.lambda_handler(json.load(sys.stdin), None)))"
)


def invoke_handler(event: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """The handler in a process of its own, with only the function's environment set."""
    result = subprocess.run(
        [sys.executable, "-c", HANDLER_SNIPPET],
        cwd=LAMBDA_DIR,
        env={"PATH": os.environ.get("PATH", ""), **FAKE_CREDENTIALS, **env},
        input=json.dumps(event),
        capture_output=True,
        text=True,
    )
    for line in result.stdout.splitlines()[:-1]:
        say(f"│ {line}")
    if result.returncode != 0:
        raise DemoError(f"the client handler failed:\n{result.stdout}{result.stderr}")
    return json.loads(result.stdout.splitlines()[-1])


def count_records(csv_file: Path) -> int:
    """Data lines of a CSV with a header row."""
    with csv_file.open() as handle:
        return sum(1 for line in handle if line.strip()) - 1


# --- the pipeline ------------------------------------------------------------------------


def run(workdir: Path, progress: Progress) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    cdk_out = workdir / "cdk.out"

    with progress.step("Synthesizing the six stacks (npx cdk synth)"):
        templates = synthesize(cdk_out)
        for line in templates.summary():
            say(line)

    with progress.step("Training on the bundled data, as the training stack's job would"):
        job = templates.the("Custom::SageMakerTrainingJob")
        training_root = fresh_dir(workdir / "training")
        prepare_training_tree(training_root, job)
        say(f"hyperparameters: {json.dumps(job['HyperParameters'], sort_keys=True)}")
        metrics = parse_metrics(run_training(training_root), job["MetricDefinitions"])
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
                    serving_root, workers=workers, env=container_env, log_dir=workdir
                )
            )
            say(
                f"model server: {model_server.url} ({workers} workers; log {model_server.log_path})"
            )
            s3_server = services.enter_context(start_moto_server())
            say(f"S3 (moto): {s3_server.url}")
            endpoint_name = templates.the("AWS::SageMaker::Endpoint")["EndpointName"]
            adapter = services.enter_context(start_runtime_adapter(endpoint_name, model_server.url))
            say(f"SageMaker runtime for endpoint {endpoint_name!r}: {adapter.url}")

        with progress.step("Uploading the inference file and invoking the client on S3's event"):
            function = templates.client_function()
            input_bucket, output_bucket = "demo-inference-input", "demo-inference-output"
            s3 = boto3.client(
                "s3",
                endpoint_url=s3_server.url,
                region_name=REGION,
                aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            )
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
                **literal_values(function.get("Environment", {}).get("Variables", {})),
                "INFERENCE_OUTPUT_BUCKET": output_bucket,
                "AWS_ENDPOINT_URL_S3": s3_server.url,
                "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": adapter.url,
            }
            invoke_handler(event, handler_env)
            output_key = f"{INPUT_KEY}.out"
            predictions = s3.get_object(Bucket=output_bucket, Key=output_key)["Body"].read()
            latency = time.perf_counter() - started
            lines = predictions.decode().splitlines()
            expected = count_records(INFERENCE_FILE)
            if len(lines) != expected:
                raise DemoError(
                    f"s3://{output_bucket}/{output_key} holds {len(lines)} predictions "
                    f"for {expected} records"
                )
            local_copy = workdir / "predictions.csv"
            local_copy.write_bytes(predictions)
            say(f"s3://{output_bucket}/{output_key}: {len(lines)} predictions")
            say(f"labels: {dict(Counter(lines))}")

        with progress.step("Stopping every process the demo started"):
            services.close()
            say("model server, S3 server and runtime adapter stopped")

    return {
        "val_accuracy": metrics.get("Validation Accuracy"),
        "records": len(lines),
        "output": f"s3://{output_bucket}/{output_key}",
        "latency_s": latency,
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
    args = parser.parse_args(argv)
    _stop_on_sigterm()
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        os.environ.pop(name, None)
    progress = Progress(total=6)
    try:
        result = run(args.workdir.resolve(), progress)
    except DemoError as error:
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
