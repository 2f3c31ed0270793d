"""A 1 GB CSV file scored end to end through the batch transform path, locally.

    .venv/bin/python -m benchmarks.batch_transform --megabytes 1024 [--repeat 5] [--json FILE]

Files above the batch threshold are not streamed by the client Lambda: it starts a SageMaker
batch transform job, and the job's state-change event makes ``transform_completion`` publish
``<key>.out``. This plays that path on one machine, with the code that runs in AWS:

1. trains the model with the real training program and writes a CSV of ``--megabytes`` MiB
   (the bundled header line first, then the bundled rows in shuffled cycles);
2. starts moto's S3 server, the real model server in SageMaker's batch mode
   (``SAGEMAKER_BATCH=true``, ``SAGEMAKER_MAX_PAYLOAD_IN_MB``, ``MULTI_RECORD``, 2 workers as
   on the default ``ml.m5.large``) and ``local.batch_transform`` as SageMaker's API and
   transform worker; uploads the file (not timed);
3. runs the client handler in a fresh process, like a cold Lambda: it starts the job;
4. lets the stand-in run the job against the server's ``/invocations``;
5. runs ``transform_completion.handler`` in a fresh process on the job's event;
6. checks the ``.out``: one line per record, each the label the model predicts in process
   for that record's row, and fails loudly otherwise;
7. runs 3 to 6 ``--repeat`` times, each with a fresh stand-in (SageMaker refuses a job name
   it has seen, and the client names the job after the input version), each once the
   machine has settled (or after a minute).

Prints each run and the medians, and writes with ``--json``: wall time end to end (3 to 5,
the upload excluded) and per stage, records/s end to end and for the job alone, each
handler's peak RSS (``VmHWM``), the model server's processes' ``VmHWM``, and the CPU seconds
each local process spent from the client's start to the job's end (they share this
machine's CPUs, as nothing does in AWS). With
``--server-results`` (default ``benchmarks/results.json``), also the ratio of the job's
records/s to the server's own rate on its largest requests in that ``make bench`` run
(``report.py`` computes the same ratio from the run that includes this one).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import report
from benchmarks.client_memory import (
    ENDPOINT_NAME,
    MIB,
    REPO_ROOT,
    generate_file,
    peak_rss_mb,
    run_handler_in_child,
    sample_rows,
)
from benchmarks.footprint import descendants
from benchmarks.serving_choices import train_model

# The client's default mini-batch bound (``TRANSFORM_MAX_PAYLOAD_MB``); the container is told
# the same, as SageMaker sets ``SAGEMAKER_MAX_PAYLOAD_IN_MB`` from the job.
MAX_PAYLOAD_MB = 6
# The default instance, ml.m5.large, has 2 vCPUs: the server starts one worker per vCPU.
SERVER_WORKERS = 2
JOB_PREFIX = "bench"
JOB_TIMEOUT_SECONDS = 3600.0
# Before each run, wait up to this long for the machine to settle: other processes, and the
# kernel's work after a GB has passed through moto and the page cache, compete for the CPUs.
SETTLE_SECONDS = 60.0
QUIET_CPUS = 0.1
SERVER_RESULTS = REPO_ROOT / "benchmarks" / "results.json"


@dataclass(frozen=True)
class Processes:
    """The local processes whose CPU time and memory the run reports."""

    server: int
    moto: int

    def server_tree(self) -> list[int]:
        """The server's master first, then its workers."""
        return descendants(self.server)

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds used so far: the server (all processes), moto, this process (the
        SageMaker stand-in's threads), and the rest of the machine (other processes and the
        kernel's own work): what competed for the CPUs."""
        times = os.times()
        found = {
            "model server": sum(_cpu_seconds(pid) for pid in self.server_tree()),
            "moto (S3)": _cpu_seconds(self.moto),
            "the benchmark process (plays SageMaker)": times.user + times.system,
        }
        return {**found, "rest of the machine": _machine_busy_seconds() - sum(found.values())}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one live process (``/proc/<pid>/stat`` fields 14, 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_busy_seconds() -> float:
    """CPU seconds every CPU of the machine has spent busy since boot (``/proc/stat``: user,
    nice, system, irq, softirq, steal)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = (
        int(field) for field in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _wait_until_quiet() -> float:
    """Wait until the whole machine is at most ``QUIET_CPUS`` busy for a second, or
    ``SETTLE_SECONDS`` have passed; the seconds waited."""
    started = time.perf_counter()
    while time.perf_counter() - started < SETTLE_SECONDS:
        before = _machine_busy_seconds()
        time.sleep(1.0)
        if _machine_busy_seconds() - before <= QUIET_CPUS:
            break
    return time.perf_counter() - started


def _expected_labels(ml_root: Path, order: list[int]) -> list[str]:
    """The label of every record, predicted in this process for the bundled row it repeats."""
    import numpy as np
    from model_kit.model_io import load_model

    model = load_model(ml_root / "model")
    rows = np.array([[float(cell) for cell in row] for row in sample_rows()], dtype=np.float64)
    labels = [str(label) for label in model.predict_labels(model.predict_proba(rows))]
    return [labels[index] for index in order]


def _check_output(s3: Any, bucket: str, key: str, expected: list[str]) -> None:
    """One line per record, each the in-process label; raise ``SystemExit`` otherwise."""
    response = s3.get_object(Bucket=bucket, Key=key)
    lines = response["Body"].read().decode().splitlines()
    if len(lines) != len(expected):
        raise SystemExit(f"{key} has {len(lines):,} lines for {len(expected):,} records")
    if lines != expected:
        wrong = [
            i for i, pair in enumerate(zip(lines, expected, strict=True)) if pair[0] != pair[1]
        ]
        first = wrong[0]
        raise SystemExit(
            f"{key}: {len(wrong):,} of {len(lines):,} labels differ from the in-process "
            f"prediction, the first at record {first + 1}: {lines[first]!r}, "
            f"expected {expected[first]!r}"
        )
    if response["Metadata"].get("record-count") != str(len(expected)):
        raise SystemExit(f"{key} says {response['Metadata']} for {len(expected):,} records")


def server_rate(path: Path) -> tuple[float, str] | None:
    """The server's records/s on its largest requests in a ``make bench`` results file, and
    when that run finished; None without one."""
    if not path.is_file():
        return None
    results = json.loads(path.read_text())
    if report.BIG_SCENARIO not in results.get("runs", {}):
        return None
    return report.server_big_records_per_s(results), results.get("finished_utc", "?")


@dataclass(frozen=True)
class Stack:
    """The running local stack and the uploaded file, shared by every repeat."""

    s3: Any
    s3_url: str
    container_url: str
    processes: Processes
    buckets: dict[str, str]
    event: dict[str, Any]
    size: int


def _one_run(stack: Stack, expected: list[str]) -> dict[str, Any]:
    """Client, job, publish and the output check, with a fresh SageMaker (job names are per
    account, and each repeat's client starts the same job name again)."""
    from local.batch_transform import BatchTransform

    with BatchTransform(stack.s3, stack.container_url, ENDPOINT_NAME).start() as service:
        env = {
            "AWS_ENDPOINT_URL_S3": stack.s3_url,
            "AWS_ENDPOINT_URL_SAGEMAKER": service.url,
            # Never called (the file is above the threshold); nothing may reach AWS.
            "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": service.url,
            "INFERENCE_OUTPUT_BUCKET": stack.buckets["output"],
            "MODEL_ENDPOINT": ENDPOINT_NAME,
            "BATCH_THRESHOLD_BYTES": str(stack.size - 1),
            "TRANSFORM_STAGING": f"s3://{stack.buckets['models']}/batch-transform/",
            "TRANSFORM_JOB_PREFIX": JOB_PREFIX,
            "TRANSFORM_INSTANCE_TYPE": "ml.m5.large",
            "TRANSFORM_MAX_PAYLOAD_MB": str(MAX_PAYLOAD_MB),
        }
        cpu_before = stack.processes.cpu_seconds()
        started = time.perf_counter()
        client = run_handler_in_child(stack.event, env)
        client_s = time.perf_counter() - started
        [submitted] = client["result"]["objects"]
        if submitted["outcome"] != "submitted":
            raise SystemExit(f"the client did not start a job: {submitted}")
        [ended] = service.drain(JOB_TIMEOUT_SECONDS)
        cpu_after = stack.processes.cpu_seconds()
        detail = ended.event["detail"]
        if detail["TransformJobStatus"] != "Completed":
            raise SystemExit(
                f"the job ended {detail['TransformJobStatus']}: {detail.get('FailureReason')}; "
                f"{service.logs.get(ended.job_name)}"
            )
        publish_started = time.perf_counter()
        publish = run_handler_in_child(ended.event, env, module="transform_completion")
        finished = time.perf_counter()
        batches = [size for _, size in service.invocations]
    published = publish["result"]
    if published.get("outcome") != "predictions" or published["records"] != len(expected):
        raise SystemExit(f"the transform handler did not publish every record: {published}")
    _check_output(stack.s3, stack.buckets["output"], published["output_key"], expected)
    job_s = detail["TransformEndTime"] - detail["CreationTime"]
    return {
        "client_start_s": client_s,
        "job_s": job_s,
        "publish_s": finished - publish_started,
        "end_to_end_s": finished - started,
        "records_per_s": len(expected) / (finished - started),
        "job_records_per_s": len(expected) / job_s,
        "client_peak_rss_mb": client["max_rss_mb"],
        "transform_peak_rss_mb": publish["max_rss_mb"],
        # What publishing costs on one CPU: on Lambda, divide by the function's vCPU share.
        "transform_cpu_seconds": publish["cpu_seconds"],
        "mini_batches": len(batches),
        "max_mini_batch_bytes": max(batches),
        "job_cpu_seconds": _cpu_used(cpu_before, cpu_after, client["cpu_seconds"]),
    }


def _cpu_used(
    before: dict[str, float], after: dict[str, float], client_seconds: float
) -> dict[str, float]:
    """CPU seconds each spent between two readings; the client handler's own taken out of the
    rest of the machine, so that what remains is what competed with the run."""
    used = {name: after[name] - before[name] for name in after}
    rest = used.pop("rest of the machine") - client_seconds
    return {**used, "client handler": client_seconds, "rest of the machine": rest}


def _medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's median over the repeats (the CPU seconds per process too)."""
    found: dict[str, Any] = {
        key: statistics.median(run[key] for run in runs)
        for key, value in runs[0].items()
        if not isinstance(value, dict)
    }
    found["job_cpu_seconds"] = {
        name: statistics.median(run["job_cpu_seconds"][name] for run in runs)
        for name in runs[0]["job_cpu_seconds"]
    }
    return found


def measure(megabytes: int, repeats: int) -> dict[str, Any]:
    """Set up once, run the whole path ``repeats`` times; every figure (see the docstring)."""
    import boto3

    from local.batch_transform import container_environment
    from local.credentials import FAKE_CREDENTIALS
    from local.model_server import start_model_server
    from local.moto_server import start_moto_server
    from local.s3_event import object_created_record

    os.environ.update(FAKE_CREDENTIALS)
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as scratch:
        work = Path(scratch)
        train_model(work / "ml")
        data_file = work / "large.csv"
        order = generate_file(data_file, megabytes, "csv", header=True)
        expected = _expected_labels(work / "ml", order)
        size = data_file.stat().st_size
        print(f"{size / MIB:,.0f} MiB, {len(order):,} records", flush=True)
        batch_env = container_environment(MAX_PAYLOAD_MB)
        with (
            start_moto_server() as s3_server,
            start_model_server(
                work / "ml", workers=SERVER_WORKERS, env=batch_env, log_dir=work
            ) as model_server,
        ):
            s3 = boto3.client("s3", endpoint_url=s3_server.url)
            suffix = uuid.uuid4().hex[:8]
            buckets = {name: f"bench-{name}-{suffix}" for name in ("input", "output", "models")}
            for bucket in buckets.values():
                s3.create_bucket(Bucket=bucket)
                # Versioned, as deployed: the event names the version, the handlers check it.
                s3.put_bucket_versioning(
                    Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}
                )
            started = time.perf_counter()
            s3.upload_file(str(data_file), buckets["input"], data_file.name)
            upload_s = time.perf_counter() - started
            data_file.unlink()  # moto holds its own copy: one on disk is enough
            head = s3.head_object(Bucket=buckets["input"], Key=data_file.name)
            record = object_created_record(
                buckets["input"],
                data_file.name,
                size,
                etag=head["ETag"],
                version_id=head["VersionId"],
            )
            processes = Processes(model_server.process.pid, s3_server.process.pid)
            stack = Stack(
                s3, s3_server.url, model_server.url, processes, buckets, {"Records": [record]}, size
            )
            runs = []
            for number in range(1, repeats + 1):
                settled_s = _wait_until_quiet()
                runs.append({**_one_run(stack, expected), "settled_s": settled_s})
                print(f"run {number}: " + "; ".join(describe_run(runs[-1])), flush=True)
            server_hwm = [peak_rss_mb(pid) for pid in processes.server_tree()]
            stand_ins_hwm = {
                "moto (S3)": peak_rss_mb(processes.moto),
                "the benchmark process (plays SageMaker)": peak_rss_mb("self"),
            }
    return {
        "command": (
            f".venv/bin/python -m benchmarks.batch_transform --megabytes {megabytes} "
            f"--repeat {repeats}"
        ),
        "finished_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average_start": load_start,
        "load_average_end": os.getloadavg(),
        "megabytes": megabytes,
        "bytes": size,
        "records": len(order),
        "upload_s": upload_s,
        "max_payload_mb": MAX_PAYLOAD_MB,
        "server_workers": SERVER_WORKERS,
        "runs": runs,
        "median": _medians(runs),
        # High-water marks over every repeat; the workers share the model's pages.
        "server_peak_rss_mb": {
            "master": server_hwm[0],
            "workers": server_hwm[1:],
            "workers_sum": sum(server_hwm[1:]),
        },
        "stand_ins_peak_rss_mb": stand_ins_hwm,
    }


def describe_run(run: dict[str, Any]) -> list[str]:
    """One run's (or the medians') figures, as printed."""
    return [
        f"end to end {run['end_to_end_s']:.1f} s (client start {run['client_start_s']:.1f} s, "
        f"job {run['job_s']:.1f} s, publish {run['publish_s']:.1f} s)",
        f"{run['records_per_s']:,.0f} records/s end to end, {run['job_records_per_s']:,.0f} "
        f"for the job alone ({run['mini_batches']:.0f} mini-batches)",
        f"peak RSS: client handler {run['client_peak_rss_mb']:.0f} MB, transform handler "
        f"{run['transform_peak_rss_mb']:.0f} MB",
        "CPU seconds from the client's start to the job's end: "
        + ", ".join(f"{name} {cpu:.1f}" for name, cpu in run["job_cpu_seconds"].items()),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=5, help="runs of the whole path")
    parser.add_argument("--json", type=Path, help="also write the result here")
    parser.add_argument(
        "--server-results",
        type=Path,
        default=SERVER_RESULTS,
        help="a make bench results.json to compare records/s with",
    )
    args = parser.parse_args()
    result = measure(args.megabytes, args.repeat)
    server = result["server_peak_rss_mb"]
    print(
        f"{result['bytes'] / MIB:,.0f} MiB CSV, {result['records']:,} records (upload to moto, "
        f"not counted: {result['upload_s']:.1f} s); medians of {args.repeat} runs:"
    )
    print("\n".join(describe_run(result["median"])))
    print(
        f"model server peak RSS: master {server['master']:.0f} MB, workers "
        f"{' + '.join(f'{mb:.0f}' for mb in server['workers'])} = {server['workers_sum']:.0f} MB"
    )
    found = server_rate(args.server_results)
    if found is None:
        print(f"no server figure to compare with in {args.server_results}")
    else:
        rate, finished = found
        print(
            f"the server on its largest requests ({report.BIG_SCENARIO}, make bench of "
            f"{finished}): {rate:,.0f} records/s; the job reached "
            f"{result['median']['job_records_per_s'] / rate:.2f}x of it, end to end "
            f"{result['median']['records_per_s'] / rate:.2f}x"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
