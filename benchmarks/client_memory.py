"""Peak memory and wall time of the client Lambda scoring one large object.

    .venv/bin/python -m benchmarks.client_memory --megabytes 100 --format jsonl --repeat 3
    .venv/bin/python -m benchmarks.client_memory --megabytes 200 --format csv --repeat 3 \
        --cpu-share 512/1769 --cpu-share 1 --json streaming.json

Starts the local stack (moto's S3 server, the real model server with a model
trained by the real training program, the SageMaker runtime adapter), uploads
a generated file, then runs the handler in a fresh child process per repeat,
like a Lambda cold start, and prints the child's peak RSS (``VmHWM``) and
wall time: each run, then the medians. The baseline is a
child that builds the clients but scores nothing.

``--cpu-share`` runs each repeat once per share, the child inside a cgroup v1 ``cpu``
group whose CFS quota is that share of one CPU: Lambda gives a function 1/1769 of a
vCPU per MB of memory, and the default threshold between streaming and batch
transform (``client_config.STREAM_BYTES_PER_VCPU_SECOND``) rests on the rate measured so.
Without a cgroup v1 ``cpu`` controller (or as non-root) those runs are skipped, with a
line saying why. ``tests/client`` and ``benchmarks/batch_transform.py`` reuse
``generate_file`` and ``run_handler_in_child``.
"""

from __future__ import annotations

import argparse
import contextlib
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
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
LAMBDA_DIR = REPO_ROOT / "lambda_fn"
INFERENCE_CSV = REPO_ROOT / "data" / "inference" / "inference.csv"
ENDPOINT_NAME = "benchmark-endpoint"
MIB = 1024 * 1024
# The handlers a child may run: module -> function, as Lambda's handler setting names them.
HANDLERS = {"lambda_function": "lambda_handler", "transform_completion": "handler"}
CHILD_TIMEOUT_SECONDS = 600.0
CPU_CGROUP_ROOT = Path("/sys/fs/cgroup/cpu")
CFS_PERIOD_US = 100_000


class CgroupUnavailable(RuntimeError):
    """No cgroup v1 ``cpu`` controller this process may write to."""


def sample_rows() -> list[list[str]]:
    """The bundled inference rows, cells as written."""
    return [line.split(",") for line in INFERENCE_CSV.read_text().splitlines()[1:]]


def generate_file(
    path: Path, megabytes: int, fmt: str, seed: int = 1, header: bool = False
) -> list[int]:
    """Write at least ``megabytes`` MiB of records; return the sample row index of each record.

    Records cycle through the sample rows in a fresh random order per cycle, so
    the expected labels vary along the file and a reordering would show.
    ``header`` starts a CSV file with the bundled header line, as users' files do.
    """
    import numpy as np

    rows = sample_rows()
    if fmt == "csv":
        texts = [",".join(row) + "\n" for row in rows]
    else:
        texts = ["[" + ", ".join(row) + "]\n" for row in rows]
    rng = np.random.default_rng(seed)
    target = megabytes * MIB
    order: list[int] = []
    written = 0
    with path.open("w") as out:
        if header and fmt == "csv":
            written += out.write(INFERENCE_CSV.read_text().splitlines(keepends=True)[0])
        while written < target:
            cycle = rng.permutation(len(rows)).tolist()
            block = "".join(texts[i] for i in cycle)
            out.write(block)
            written += len(block)
            order.extend(cycle)
    return order


def parse_share(text: str) -> float:
    """A CPU share as a fraction of one CPU: ``0.29`` or ``512/1769`` (Lambda's MB per vCPU)."""
    share = float(Fraction(text))
    if not 0 < share <= 1:
        raise argparse.ArgumentTypeError(f"a CPU share is above 0 and at most 1, not {text}")
    return share


@contextlib.contextmanager
def cpu_cgroup(share: float) -> Iterator[Path]:
    """A cgroup v1 ``cpu`` group capped at ``share`` of one CPU (CFS quota), removed afterwards.

    Raises ``CgroupUnavailable`` where there is no controller to write to.
    """
    if not (CPU_CGROUP_ROOT / "cpu.cfs_quota_us").is_file() or not os.access(
        CPU_CGROUP_ROOT, os.W_OK
    ):
        raise CgroupUnavailable(f"no writable cgroup v1 cpu controller at {CPU_CGROUP_ROOT}")
    group = CPU_CGROUP_ROOT / f"bench-client-{uuid.uuid4().hex[:8]}"
    group.mkdir()
    try:
        (group / "cpu.cfs_period_us").write_text(str(CFS_PERIOD_US))
        (group / "cpu.cfs_quota_us").write_text(str(round(share * CFS_PERIOD_US)))
        yield group
    finally:
        group.rmdir()  # its only process, the handler child, has exited


def run_handler_in_child(
    event: dict[str, Any],
    env: dict[str, str],
    baseline: bool = False,
    module: str = "lambda_function",
    cgroup: Path | None = None,
) -> dict[str, Any]:
    """Run ``module``'s handler on ``event`` in a new process; its result, peak RSS (MB),
    seconds and CPU seconds. With ``cgroup``, the child joins it before reading the event."""
    # -P: not this script's folder on the path, whose batch_transform.py would shadow the
    # function's module of that name; the function's folder is the import root, as in Lambda.
    command = [sys.executable, "-P", str(Path(__file__).resolve()), "--child", "--handler", module]
    if baseline:
        command.append("--baseline")
    with subprocess.Popen(
        command,
        env={**os.environ, **env, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(LAMBDA_DIR)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as child:
        if cgroup is not None:
            # The child waits for the event on stdin: everything it measures runs in the group.
            (cgroup / "cgroup.procs").write_text(str(child.pid))
        try:
            stdout, stderr = child.communicate(json.dumps(event), timeout=CHILD_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            child.kill()
            raise
    if child.returncode != 0:
        raise RuntimeError(f"handler child failed:\n{stderr[-4000:]}")
    return json.loads(stdout.splitlines()[-1])


def _child(module: str, baseline: bool) -> None:
    """Inside the child: one cold start and one invocation, then report."""
    import importlib

    event = json.loads(sys.stdin.read())
    started = time.perf_counter()
    cpu_started = time.process_time()
    handler = importlib.import_module(module)
    if baseline:
        handler._processor()
        result: dict[str, Any] = {}
    else:
        result = getattr(handler, HANDLERS[module])(event, None)
    print(
        json.dumps(
            {
                "result": result,
                "max_rss_mb": round(peak_rss_mb(), 1),
                "seconds": time.perf_counter() - started,
                "cpu_seconds": time.process_time() - cpu_started,
            }
        )
    )


def peak_rss_mb(pid: int | str = "self") -> float:
    """A process's peak resident memory since it started its program, in MB (this one's by
    default).

    ``VmHWM`` is the high-water mark of the current address space. ``getrusage``'s
    ``ru_maxrss`` is only the fallback, for this process: Linux carries it over from the
    parent across fork and exec, so a child of a big process (pytest) reports the parent's
    peak.
    """
    status = Path(f"/proc/{pid}/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    if pid != "self":
        raise RuntimeError(f"no VmHWM for process {pid}")
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


def _throttling(group: Path) -> dict[str, int]:
    """The group's CFS counters: periods run, periods throttled, nanoseconds throttled."""
    lines = (group / "cpu.stat").read_text().split("\n")
    return {name: int(value) for name, value in (line.split() for line in lines if line)}


def _measured_run(
    event: dict[str, Any], env: dict[str, str], size: int, share: float | None
) -> dict[str, Any]:
    """One cold handler run, in a cgroup capped at ``share`` of a CPU when given."""
    with contextlib.ExitStack() as stack:
        group = stack.enter_context(cpu_cgroup(share)) if share is not None else None
        measured = run_handler_in_child(event, env, cgroup=group)
        throttling = _throttling(group) if group is not None else {}
    [outcome] = measured["result"]["objects"]
    object_seconds = outcome["latency_ms"] / 1000
    run = {
        "cpu_share": share,
        "records": outcome["records"],
        "requests": outcome["requests"],
        "peak_rss_mb": measured["max_rss_mb"],
        "seconds": measured["seconds"],
        "object_seconds": object_seconds,
        "cpu_seconds": measured["cpu_seconds"],
        # The object alone (the handler's latency for it), and the whole cold invocation.
        "mib_per_s": size / MIB / object_seconds,
        "whole_mib_per_s": size / MIB / measured["seconds"],
        "mib_per_cpu_second": size / MIB / measured["cpu_seconds"],
        **throttling,
    }
    if share is not None:
        run["mib_per_s_per_vcpu"] = run["mib_per_s"] / share
        run["whole_mib_per_s_per_vcpu"] = run["whole_mib_per_s"] / share
        # Near 1: the quota bound the run; well below: something else did (server, S3).
        run["cpu_of_allowed"] = measured["cpu_seconds"] / (measured["seconds"] * share)
    return run


def _share_summary(share: float | None, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians of one share's runs."""
    medians = {
        f"median_{key}": statistics.median(run[key] for run in runs)
        for key in runs[0]
        if key != "cpu_share"
    }
    return {"cpu_share": share, "runs": len(runs), **medians}


def _cgroup_problem() -> str | None:
    """Why no capped group can be made here (None: it can), found by making one."""
    try:
        with cpu_cgroup(1.0):
            return None
    except (CgroupUnavailable, OSError) as error:
        return str(error)


def _command(arguments: list[str]) -> str:
    """How to run this measurement again: the arguments, less where the result was written."""
    kept = [
        argument
        for index, argument in enumerate(arguments)
        if argument != "--json" and (index == 0 or arguments[index - 1] != "--json")
    ]
    return " ".join([".venv/bin/python -m benchmarks.client_memory", *kept])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=100)
    parser.add_argument("--format", choices=("csv", "jsonl"), default="jsonl")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument(
        "--cpu-share",
        type=parse_share,
        action="append",
        help="run the handler capped at this share of one CPU (e.g. 512/1769); repeatable",
    )
    parser.add_argument("--json", type=Path, help="also write the runs and medians here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--handler", choices=HANDLERS, default="lambda_function", help=argparse.SUPPRESS
    )
    parser.add_argument("--baseline", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.handler, args.baseline)
        return
    shares: list[float | None] = args.cpu_share or [None]
    problem = _cgroup_problem() if args.cpu_share else None
    if problem:
        print(f"skipped the --cpu-share runs: {problem}")
        if args.json:
            args.json.write_text(json.dumps({"skipped": problem}, indent=2) + "\n")
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
        size = data_file.stat().st_size
        with (
            start_moto_server() as s3_server,
            start_model_server(work / "ml", log_dir=work) as model_server,
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
            # Shares alternate within each repeat, so a drift in the machine's load hits all.
            for run_number in range(1, args.repeat + 1):
                for share in shares:
                    run = _measured_run(event, env, size, share)
                    assert run["records"] == records, run
                    runs.append(run)
                    capped = "" if share is None else f" at {share:.4f} of a CPU"
                    rate = f", {run['mib_per_s']:.1f} MiB/s" + (
                        f" ({run['mib_per_s_per_vcpu']:.1f} per vCPU)" if share else ""
                    )
                    print(
                        f"run {run_number}: {size / MIB:.0f} MiB {args.format}{capped}, "
                        f"{run['records']} records, {run['requests']} requests: "
                        f"peak RSS {run['peak_rss_mb']} MB, {run['seconds']:.1f} s{rate}",
                        flush=True,
                    )
    summaries = [
        _share_summary(share, [run for run in runs if run["cpu_share"] == share])
        for share in shares
    ]
    for summary in summaries:
        capped = "" if summary["cpu_share"] is None else f" at {summary['cpu_share']:.4f} CPU"
        print(
            f"median{capped}: peak RSS {summary['median_peak_rss_mb']} MB, "
            f"time {summary['median_seconds']:.1f} s, {summary['median_mib_per_s']:.1f} MiB/s "
            f"(concurrency {args.concurrency})"
        )
    if args.json:
        result = {
            "command": _command(sys.argv[1:]),
            "megabytes": args.megabytes,
            "format": args.format,
            "bytes": size,
            "records": records,
            "concurrency": args.concurrency,
            "baseline_rss_mb": baseline["max_rss_mb"],
            "runs": runs,
            "shares": summaries,
        }
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
