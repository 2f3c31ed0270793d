"""``make bench``: our model server beside the classic container, measured in one run.

    .venv/bin/python -m benchmarks.run_bench [--rounds 5] [--seconds 5] [--skip-lambda]

1. Trains the model with the real ``containers/bin/train`` on the bundled data.
2. Serves it with our server twice, with its compiled trees ("ours", the default) and
   with ``MODEL_COMPILED_PREDICTOR=false`` ("ours (LightGBM)"), and with
   ``benchmarks/reference`` (nginx -> gunicorn gevent -> flask -> pandas), same worker
   count, OpenMP limited the same way, all up at once; checks from each answer's
   ``X-Model-Predictor`` header that ours predict as labelled, and that every server
   answers every payload with the labels the model predicts in process.
3. Drives them with wrk on loopback, the order reversed each round (so each pair swaps
   which goes first): 1 record at 1, 8 and 32 connections, 500 records and 5 MB at 8
   connections; and ours alone answering 500 records and 5 MB in JSON and JSON Lines
   (labels and probabilities; the reference answers CSV only).
4. Measures the in-process ``predict`` ceiling of LightGBM and of the compiled trees in
   every round, cold start and memory (PSS of the whole process tree) with 1 and 4
   workers, the 5 MB request's stages with a pyinstrument profile, the size of what the
   compiled trees add (the compiler in the training image, the model's shared library),
   and the client Lambda on a 100 MB file (``benchmarks/client_memory.py``).
5. Then the client side, unless ``--skip-lambda``: how fast the client streams a 200 MiB
   file with Lambda's CPU share for 512 MB and with one vCPU (``client_memory.py
   --cpu-share``, which sets the default batch threshold), and a 1 GB file scored end to
   end through batch transform (``benchmarks/batch_transform.py``).
6. Writes ``results.json``, ``RESULTS.md`` and ``results.png`` into
   ``benchmarks/`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

from model_kit.model_io import Model, load_model  # noqa: E402

from benchmarks import ceiling, footprint, profiles, report  # noqa: E402
from benchmarks.loadgen import run_wrk, wrk_path  # noqa: E402
from benchmarks.payloads import Payload, standard_payloads  # noqa: E402
from benchmarks.reference.serve import nginx_binary  # noqa: E402
from benchmarks.servers import (  # noqa: E402
    check_predictors,
    post_csv,
    start_ours,
    start_reference,
)
from benchmarks.serving_choices import train_model  # noqa: E402
from local.model_server import ModelServer  # noqa: E402

OURS, OURS_LIBRARY, REFERENCE = "ours", "ours (LightGBM)", "reference"
# What each of our servers must answer in its X-Model-Predictor header.
PREDICTORS = {OURS: "compiled", OURS_LIBRARY: "library"}
ANSWER_FORMATS = {"JSON": "application/json", "JSON Lines": "application/jsonlines"}
# Lambda gives a function 1/1769 of a vCPU per MB; the client's default memory is 512 MB.
LAMBDA_CPU_SHARES = ("512/1769", "1")
STREAM_REPEATS = 3
# The workers' whole job without HTTP (ceiling.server_work_records_per_s): two threads per
# CPU keep every CPU busy while the others are between calls.
NO_HTTP_THREADS = 2 * ceiling.available_cpus()
NO_HTTP_SECONDS = 2.0


@dataclass(frozen=True)
class Scenario:
    """One load pattern: which payload, how many connections, for how long."""

    name: str
    payload: str
    connections: int
    seconds: float
    # What the request asks for back, and which servers run it.
    accept: str = "text/csv"
    servers: tuple[str, ...] = (OURS, OURS_LIBRARY, REFERENCE)


def scenarios(seconds: float, big_seconds: float) -> list[Scenario]:
    answers = [
        Scenario(f"{payload}, {kind} answers, 8 connections", payload, 8, time, accept, (OURS,))
        for payload, time in (("500 records", seconds), ("5 MB", big_seconds))
        for kind, accept in ANSWER_FORMATS.items()
    ]
    return [
        Scenario("1 record, 1 connection", "1 record", 1, seconds),
        Scenario("1 record, 8 connections", "1 record", 8, seconds),
        Scenario("1 record, 32 connections", "1 record", 32, seconds),
        Scenario("500 records, 8 connections", "500 records", 8, seconds),
        Scenario("5 MB, 8 connections", "5 MB", 8, big_seconds),
        *answers,
    ]


def require_tools() -> None:
    """nginx and wrk come from Debian; say how to get them rather than fail later."""
    nginx_binary()
    wrk_path()


def describe_machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory_kib = int(Path("/proc/meminfo").read_text().split()[1])
    nginx = subprocess.run([nginx_binary(), "-v"], capture_output=True, text=True).stderr.strip()
    return {
        "cpu": cpu,
        "cpus": ceiling.available_cpus(),
        "memory_gib": round(memory_kib / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "nginx": nginx.split("/")[-1],
        "wrk": subprocess.run([wrk_path(), "-v"], capture_output=True, text=True)
        .stdout.split("[")[0]
        .strip(),
    }


def busy_processes() -> list[str]:
    """What else used the CPUs while the benchmark ran: processes at 1% CPU or more (``ps``)."""
    listing = subprocess.run(
        ["ps", "-eo", "pcpu,etimes,args", "--sort=-pcpu"], capture_output=True, text=True
    ).stdout.splitlines()
    busy = [line.strip() for line in listing[1:] if float(line.split()[0]) >= 1.0]
    return [line[:100] for line in busy[:8]]


def expected_answer(model: Model, payload: Payload) -> bytes:
    """One label per line: what every server must return for ``payload``."""
    probabilities = model.predict_proba(ceiling.parse(payload.body), num_threads=1)
    return ("\n".join(str(label) for label in model.predict_labels(probabilities)) + "\n").encode()


def check_answers(servers: dict[str, ModelServer], model: Model, payloads: dict[str, Payload]):
    """Every server's CSV answers, and our JSON and JSON Lines labels, are the model's."""
    for payload in payloads.values():
        expected = expected_answer(model, payload)
        for name, server in servers.items():
            answer = post_csv(server.url, payload.body)
            if answer != expected:
                raise SystemExit(
                    f"{name} answered the {payload.name} request wrongly: "
                    f"{answer[:200]!r}... expected {expected[:200]!r}..."
                )
        labels = expected.decode().splitlines()
        for kind, accept in ANSWER_FORMATS.items():
            answer = post_csv(servers[OURS].url, payload.body, accept).decode()
            records = (
                json.loads(answer)["predictions"]
                if kind == "JSON"
                else [json.loads(line) for line in answer.splitlines()]
            )
            if [str(record["label"]) for record in records] != labels:
                raise SystemExit(f"ours answered the {payload.name} request in {kind} wrongly")


def measure_ceiling(
    model: Model, compiled: Model, payloads: dict[str, Payload]
) -> dict[str, dict[str, float]]:
    """LightGBM's ("1 thread", "all CPUs", "no HTTP") and the compiled trees' ("compiled
    ...") in-process rates: each server's own ceiling."""
    rates = {}
    for name, payload in payloads.items():
        features = ceiling.parse(payload.body)
        rates[name] = {
            "1 thread": ceiling.predict_records_per_s(model, features, 1),
            "all CPUs": ceiling.predict_records_per_s(model, features, ceiling.available_cpus()),
            "compiled 1 thread": ceiling.predict_records_per_s(compiled, features, 1),
        }
    for key, predictor in (("no HTTP", model), ("compiled no HTTP", compiled)):
        rates["5 MB"][key] = ceiling.server_work_records_per_s(
            predictor, payloads["5 MB"].body, NO_HTTP_THREADS, NO_HTTP_SECONDS
        )
    return rates


def load_rounds(
    servers: dict[str, ModelServer],
    models: tuple[Model, Model],
    payloads: dict[str, Payload],
    body_files: dict[str, Path],
    plan: list[Scenario],
    rounds: int,
) -> tuple[dict[str, dict[str, list[dict[str, float]]]], list[dict[str, dict[str, float]]]]:
    """Every scenario on its servers per round, the order reversed each round (every pair
    of servers swaps which goes first); and the ceilings of ``models`` (LightGBM, compiled)."""
    runs: dict[str, dict[str, list[dict[str, float]]]] = {
        scenario.name: {name: [] for name in scenario.servers} for scenario in plan
    }
    ceilings = []
    for round_number in range(rounds):
        order = list(servers) if round_number % 2 == 0 else list(reversed(servers))
        ceilings.append(measure_ceiling(*models, payloads))
        for scenario in plan:
            for name in (name for name in order if name in scenario.servers):
                with ThreadPoolExecutor(1) as pool:
                    load = pool.submit(
                        run_wrk,
                        f"{servers[name].url}/invocations",
                        body_files[scenario.payload],
                        scenario.connections,
                        scenario.seconds,
                        accept=scenario.accept,
                    )
                    time.sleep(min(1.0, scenario.seconds / 2))
                    split = footprint.connections_per_worker(servers[name])
                    result = load.result()
                records = payloads[scenario.payload].records
                runs[scenario.name][name].append(
                    {
                        **asdict(result),
                        "requests_per_s": result.requests_per_s,
                        "records_per_s": result.requests_per_s * records,
                        "connections_per_worker": split,
                    }
                )
                print(
                    f"round {round_number + 1} {scenario.name:<44} {name:<15} "
                    f"{result.requests_per_s:8.1f} req/s  p50 {result.p50_ms:8.2f} ms  "
                    f"p99 {result.p99_ms:8.2f} ms  connections per worker {split}",
                    flush=True,
                )
    return runs, ceilings


def measure_footprint(ml_root: Path, big_file: Path) -> dict[str, Any]:
    """Cold start of every server; memory of each with 1 and 4 workers; what the compiled
    trees add on disk."""
    starts = {
        OURS: start_ours,
        OURS_LIBRARY: partial(start_ours, compiled=False),
        REFERENCE: start_reference,
    }
    result: dict[str, Any] = {
        "cold_start_s": {
            # Ours alternate, so that a drift in the machine's load reaches both alike.
            **footprint.cold_starts_s(
                {name: partial(starts[name], ml_root, 2) for name in (OURS, OURS_LIBRARY)},
                repeats=5,
            ),
            REFERENCE: footprint.cold_start_s(lambda: start_reference(ml_root, 2), repeats=3),
        },
        "memory_mib": {name: {} for name in starts},
        "compiled_size": footprint.compiled_size(ml_root / "model"),
    }
    for workers in (1, 4):
        for name, start in starts.items():
            with start(ml_root, workers) as server:
                result["memory_mib"][name][str(workers)] = footprint.memory_mib(
                    server, big_file, workers
                )
    return result


def run_measurement(module: str, arguments: list[str], timeout: float) -> dict[str, Any]:
    """``python -m benchmarks.<module> ... --json FILE`` as a child process; what it wrote."""
    with tempfile.TemporaryDirectory(prefix="bench-child-") as scratch:
        written = Path(scratch) / "result.json"
        completed = subprocess.run(
            [sys.executable, "-m", f"benchmarks.{module}", *arguments, "--json", str(written)],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=timeout,
        )
        if completed.returncode != 0 or not written.is_file():
            raise RuntimeError(
                f"benchmarks.{module} failed:\n{completed.stdout}\n{completed.stderr[-3000:]}"
            )
        print(completed.stdout.strip(), flush=True)
        return json.loads(written.read_text())


def measure_lambda(megabytes: int) -> dict[str, float]:
    """The client Lambda scoring a ``megabytes`` MiB CSV file through the local stack."""
    measured = run_measurement(
        "client_memory", ["--megabytes", str(megabytes), "--format", "csv", "--repeat", "1"], 900
    )
    [run] = measured["runs"]
    return {
        "megabytes": megabytes,
        "records": run["records"],
        "requests": run["requests"],
        "seconds": run["seconds"],
        "records_per_s": run["records"] / run["seconds"],
        "peak_rss_mb": run["peak_rss_mb"],
        "baseline_rss_mb": measured["baseline_rss_mb"],
    }


def measure_streaming(megabytes: int) -> dict[str, Any]:
    """The client streaming a CSV file capped at Lambda's CPU share for 512 MB and at one
    vCPU: the rate the default batch threshold rests on."""
    shares = [argument for share in LAMBDA_CPU_SHARES for argument in ("--cpu-share", share)]
    file = ["--megabytes", str(megabytes), "--format", "csv", "--repeat", str(STREAM_REPEATS)]
    return run_measurement("client_memory", [*file, *shares], 1800)


def measure_batch_transform(megabytes: int) -> dict[str, Any]:
    """A ``megabytes`` MiB CSV file scored end to end through batch transform."""
    return run_measurement("batch_transform", ["--megabytes", str(megabytes)], 3600)


def profile_live(server: ModelServer, body_file: Path, workdir: Path) -> dict[str, float]:
    """py-spy on our workers while wrk sends them 5 MB requests."""
    workers = footprint.descendants(server.process.pid)[1:]
    with ThreadPoolExecutor(1) as pool:
        load = pool.submit(run_wrk, f"{server.url}/invocations", body_file, 8, 7)
        time.sleep(0.5)
        stages = profiles.py_spy_stages(workers, 5, workdir)
        load.result()
    return stages


def measure_profile(compiled: Model, library: Model, big: Payload) -> dict[str, Any]:
    """The 5 MB request in process as the default server predicts it (compiled trees)."""
    app = profiles.our_app(compiled, workers=2)
    return {
        "stages_ms": profiles.stage_ms(compiled, big.body, library),
        "pyinstrument": profiles.profile_text(lambda: profiles.call_ours(app, big.body)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5, help="per small-payload run")
    parser.add_argument("--big-seconds", type=int, default=8, help="per 5 MB run")
    parser.add_argument("--workers", type=int, default=ceiling.available_cpus())
    parser.add_argument("--lambda-megabytes", type=int, default=100)
    parser.add_argument("--stream-megabytes", type=int, default=200)
    parser.add_argument("--batch-megabytes", type=int, default=1024)
    parser.add_argument(
        "--skip-lambda",
        action="store_true",
        help="skip the client's measurements (100 MB file, streaming rate, batch transform)",
    )
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks")
    args = parser.parse_args()
    require_tools()
    started = time.time()
    results: dict[str, Any] = {
        "command": "make bench",
        "arguments": {key: str(value) for key, value in vars(args).items() if key != "out"},
        "machine": describe_machine(),
        "load_average_start": os.getloadavg(),
        "busy_processes_start": busy_processes(),
    }
    payloads = standard_payloads()
    plan = scenarios(args.seconds, args.big_seconds)
    with tempfile.TemporaryDirectory(prefix="bench-") as scratch:
        work = Path(scratch)
        ml_root = train_model(work / "ml")
        model = load_model(ml_root / "model")
        compiled = load_model(ml_root / "model", compiled=True)
        if compiled.predictor_kind != "compiled":
            raise SystemExit("the trained model's compiled trees did not load in process")
        results["model"] = {
            "family": model.family,
            "iterations": model.metadata["best_iteration"],
            "features": model.n_features,
        }
        results["payloads"] = {
            name: {"records": p.records, "bytes": len(p.body)} for name, p in payloads.items()
        }
        body_files = {}
        for name, payload in payloads.items():
            body_files[name] = work / f"{name.replace(' ', '_')}.csv"
            body_files[name].write_bytes(payload.body)
        print(f"model: {results['model']}; {args.workers} workers each", flush=True)
        with (
            start_ours(ml_root, args.workers) as ours,
            start_ours(ml_root, args.workers, compiled=False) as ours_library,
            start_reference(ml_root, args.workers) as reference,
        ):
            servers = {OURS: ours, OURS_LIBRARY: ours_library, REFERENCE: reference}
            results["predictors"] = check_predictors(
                servers, [payload.body for payload in payloads.values()], PREDICTORS
            )
            check_answers(servers, model, payloads)
            for server in servers.values():  # every worker loads and warms up
                run_wrk(f"{server.url}/invocations", body_files["500 records"], 8, 2)
            wrk_alone = run_wrk(f"{reference.url}/", None, 8, 3, any_status=True)
            results["wrk_against_static_nginx_rps"] = wrk_alone.requests_per_s
            results["runs"], results["ceilings"] = load_rounds(
                servers, (model, compiled), payloads, body_files, plan, args.rounds
            )
            print("py-spy on our (compiled) workers under 5 MB requests", flush=True)
            live = profile_live(ours, body_files["5 MB"], work)
        results["scenarios"] = [asdict(scenario) for scenario in plan]
        results["no_http_threads"] = NO_HTTP_THREADS
        print("footprint: cold start and memory", flush=True)
        results["footprint"] = measure_footprint(ml_root, body_files["5 MB"])
        print("profile of the 5 MB request", flush=True)
        results["profile"] = {
            **measure_profile(compiled, model, payloads["5 MB"]),
            "py_spy": live,
        }
    if not args.skip_lambda:
        print(f"client Lambda on a {args.lambda_megabytes} MiB file", flush=True)
        results["lambda"] = measure_lambda(args.lambda_megabytes)
        print(f"client streaming rate on a {args.stream_megabytes} MiB file", flush=True)
        results["streaming"] = measure_streaming(args.stream_megabytes)
        print(f"batch transform on a {args.batch_megabytes} MiB file", flush=True)
        results["batch_transform"] = measure_batch_transform(args.batch_megabytes)
    results["load_average_end"] = os.getloadavg()
    results["busy_processes_end"] = busy_processes()
    results["wall_seconds"] = time.time() - started
    results["finished_utc"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    report.write(results, args.out)
    print(f"wrote {args.out / 'RESULTS.md'} and {args.out / 'results.png'}", flush=True)


if __name__ == "__main__":
    main()
