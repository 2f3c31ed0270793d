"""Peak memory and wall time of the client Lambda scoring one large object.

    .venv/bin/python -m benchmarks.client_memory --megabytes 100 --format jsonl --repeat 3

Starts the local stack (moto's S3 server, the real model server with a model
trained by the real training program, the SageMaker runtime adapter), uploads
a generated file, then runs the handler in a fresh child process per repeat,
like a Lambda cold start, and prints the child's peak RSS (``VmHWM``) and
wall time: each run, then the medians. The baseline is a
child that builds the clients but scores nothing. ``tests/client`` reuses
``generate_file`` and ``run_handler_in_child``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
LAMBDA_DIR = REPO_ROOT / "lambda_fn"
INFERENCE_CSV = REPO_ROOT / "data" / "inference" / "inference.csv"
ENDPOINT_NAME = "benchmark-endpoint"


def sample_rows() -> list[list[str]]:
    """The bundled inference rows, cells as written."""
    return [line.split(",") for line in INFERENCE_CSV.read_text().splitlines()[1:]]


def generate_file(path: Path, megabytes: int, fmt: str, seed: int = 1) -> list[int]:
    """Write at least ``megabytes`` MiB of records; return the sample row index of each record.

    Records cycle through the sample rows in a fresh random order per cycle, so
    the expected labels vary along the file and a reordering would show.
    """
    import numpy as np

    rows = sample_rows()
    if fmt == "csv":
        texts = [",".join(row) + "\n" for row in rows]
    else:
        texts = ["[" + ", ".join(row) + "]\n" for row in rows]
    rng = np.random.default_rng(seed)
    target = megabytes * 1024 * 1024
    order: list[int] = []
    written = 0
    with path.open("w") as out:
        while written < target:
            cycle = rng.permutation(len(rows)).tolist()
            block = "".join(texts[i] for i in cycle)
            out.write(block)
            written += len(block)
            order.extend(cycle)
    return order


def run_handler_in_child(
    event: dict[str, Any], env: dict[str, str], baseline: bool = False
) -> dict[str, Any]:
    """Run the handler on ``event`` in a new process; its result, peak RSS (MB) and seconds."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child"]
    if baseline:
        command.append("--baseline")
    completed = subprocess.run(
        command,
        input=json.dumps(event),
        # The function's folder is the import root, as in Lambda's runtime.
        env={**os.environ, **env, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(LAMBDA_DIR)},
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"handler child failed:\n{completed.stderr[-4000:]}")
    return json.loads(completed.stdout.splitlines()[-1])


def _child(baseline: bool) -> None:
    """Inside the child: one cold start and one invocation, then report."""
    event = json.loads(sys.stdin.read())
    started = time.perf_counter()
    import lambda_function

    if baseline:
        lambda_function._processor()
        result: dict[str, Any] = {}
    else:
        result = lambda_function.lambda_handler(event, None)
    seconds = time.perf_counter() - started
    print(
        json.dumps({"result": result, "max_rss_mb": round(_peak_rss_mb(), 1), "seconds": seconds})
    )


def _peak_rss_mb() -> float:
    """This process's peak resident memory since it started its program.

    ``VmHWM`` is the high-water mark of the current address space. ``getrusage``'s
    ``ru_maxrss`` is only the fallback: Linux carries it over from the parent
    across fork and exec, so a child of a big process (pytest) reports the
    parent's peak.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _train(ml_root: Path) -> None:
    """Train a model with the real training program on the bundled data."""
    data = REPO_ROOT / "data"
    for channel, source in (
        ("training", "training/train.csv"),
        ("validation", "validation/validation.csv"),
    ):
        target = ml_root / "input" / "data" / channel
        target.mkdir(parents=True)
        shutil.copy(data / source, target)
    config = ml_root / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text("{}")
    subprocess.run(
        [sys.executable, str(REPO_ROOT / "containers" / "bin" / "train")],
        env={**os.environ, "ML_ROOT": str(ml_root)},
        check=True,
        capture_output=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=100)
    parser.add_argument("--format", choices=("csv", "jsonl"), default="jsonl")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--baseline", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.baseline)
        return

    import boto3

    from local.credentials import FAKE_CREDENTIALS
    from local.model_server import start_model_server
    from local.moto_server import start_moto_server
    from local.runtime_adapter import start_runtime_adapter
    from local.s3_event import object_created_record

    os.environ.update(FAKE_CREDENTIALS)
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        _train(work / "ml")
        data_file = work / f"large.{args.format}"
        records = len(generate_file(data_file, args.megabytes, args.format))
        with (
            start_moto_server() as s3_server,
            start_model_server(work / "ml") as model_server,
            start_runtime_adapter(ENDPOINT_NAME, model_server.url) as adapter,
        ):
            suffix = uuid.uuid4().hex[:8]
            env = {
                "AWS_ENDPOINT_URL_S3": s3_server.url,
                "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": adapter.url,
                "INFERENCE_OUTPUT_BUCKET": f"bench-output-{suffix}",
                "MODEL_ENDPOINT": ENDPOINT_NAME,
                "REQUEST_CONCURRENCY": str(args.concurrency),
            }
            s3 = boto3.client("s3", endpoint_url=s3_server.url)
            input_bucket = f"bench-input-{suffix}"
            for bucket in (input_bucket, env["INFERENCE_OUTPUT_BUCKET"]):
                s3.create_bucket(Bucket=bucket)
                # Versioned, as deployed: the event names the version, the client reads it.
                s3.put_bucket_versioning(
                    Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}
                )
            s3.upload_file(str(data_file), input_bucket, data_file.name)
            version = s3.head_object(Bucket=input_bucket, Key=data_file.name)["VersionId"]
            size = data_file.stat().st_size
            event = {
                "Records": [
                    object_created_record(
                        input_bucket, data_file.name, size, etag=None, version_id=version
                    )
                ]
            }
            baseline = run_handler_in_child(event, env, baseline=True)
            print(f"baseline (imports + clients, no object): {baseline['max_rss_mb']} MB")
            runs = []
            for run in range(1, args.repeat + 1):
                measured = run_handler_in_child(event, env)
                [outcome] = measured["result"]["objects"]
                assert outcome["records"] == records, outcome
                runs.append(measured)
                print(
                    f"run {run}: {data_file.stat().st_size / 2**20:.0f} MiB {args.format}, "
                    f"{outcome['records']} records, {outcome['requests']} requests: "
                    f"peak RSS {measured['max_rss_mb']} MB, {measured['seconds']:.1f} s"
                )
            print(
                f"median peak RSS {statistics.median(r['max_rss_mb'] for r in runs)} MB, "
                f"median time {statistics.median(r['seconds'] for r in runs):.1f} s "
                f"(concurrency {args.concurrency})"
            )


if __name__ == "__main__":
    main()
