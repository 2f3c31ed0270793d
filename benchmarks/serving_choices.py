"""The measurements behind the model server's choices; every number printed is a median.

    .venv/bin/python -m benchmarks.serving_choices [--seconds 2] [--repeats 3]

1. Parsers and encoders, in process: 1-record and 5 MB bodies, each way we
   considered (pure Python, numpy.loadtxt, numpy.fromstring, our C parser
   ``fastcsv``, json + numpy); answers by json.dumps, Python templates, and our
   C writer ``fastjson``.
2. In-process prediction of the 5 MB body: the ceiling a server can reach.
3. Server stacks: the real app and worker with Python's asyncio event loop or
   uvloop, and with the master's heap frozen (``server.freeze_heap``) or not:
   1-record requests/s and latency at 8 connections (wrk, keep-alive; its p99
   counts the requests a stalled server kept waiting), 5 MB records/s, and how
   long ``/ping`` waits while 5 MB requests run.
4. The real ``serve``: memory (PSS) with 1 and 4 workers, and the time from
   process start to an accepted connection and to the first ``/ping`` 200.

The model is trained by the real ``containers/bin/train`` on the sample data.
Part 3 needs wrk (``make bench`` installs it).
The load client runs on the same machine as the server, so absolute rates are
lower than on a dedicated endpoint; the comparisons are what count.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

from benchmarks.timing import median_ms

REPO = Path(__file__).resolve().parent.parent

DATA = REPO / "data"
FIVE_MB = 5 * 1024 * 1024


def train_model(root: Path) -> Path:
    """An ML_ROOT with the model ``containers/bin/train`` makes from the sample data."""
    config = root / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text("{}")
    for channel, source in (("training", "training/train.csv"), ("validation", "validation")):
        target = root / "input" / "data" / channel
        target.mkdir(parents=True)
        source_path = DATA / source
        files = [source_path] if source_path.is_file() else sorted(source_path.glob("*.csv"))
        for file in files:
            shutil.copy(file, target / file.name)
    subprocess.run(
        [sys.executable, str(REPO / "containers" / "bin" / "train")],
        env={**os.environ, "ML_ROOT": str(root)},
        check=True,
        capture_output=True,
    )
    return root


def csv_body(size: int) -> bytes:
    """Whole records of the inference sample, repeated up to ``size`` bytes."""
    lines = (DATA / "inference" / "inference.csv").read_text().splitlines()[1:]
    block = ("\n".join(lines) + "\n").encode()
    return block * max(1, size // len(block))


def print_table(title: str, rows: list[tuple[str, str]]) -> None:
    print(f"\n## {title}")
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")


def measure_codecs(model_dir: Path) -> None:
    import numpy as np
    from model_kit.model_io import load_model
    from model_kit.serving import decoders, fastcsv
    from model_kit.serving.encoders import PredictionEncoders

    from local import answer_oracle

    model = load_model(model_dir)
    names = model.feature_names
    big = csv_body(FIVE_MB)
    one = csv_body(1)[: csv_body(1).index(b"\n") + 1]
    text = big.decode()

    def python_split(body: bytes) -> np.ndarray:
        return decoders._csv_rows(body.decode(), names, 1)

    def loadtxt(body: bytes) -> np.ndarray:
        return np.loadtxt(
            io.StringIO(body.decode()), delimiter=",", comments=None, ndmin=2, dtype=np.float64
        )

    def fromstring(body: bytes) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            flat = np.fromstring(body.decode().replace("\n", ","), sep=",")
        return flat.reshape(-1, len(names))

    matrix = loadtxt(big)
    lines = csv_body(1).splitlines(keepends=True)
    five, hundred = b"".join(lines[:5]), b"".join((lines * 2)[:100])
    rows: list[tuple[str, str]] = []
    for label, parse in (
        ("pure Python split/float", python_split),
        ("numpy.loadtxt", loadtxt),
        ("numpy.fromstring", fromstring),
        ("fastcsv (C, ctypes)", lambda b: fastcsv.parse([b], len(names))),
        (
            "parse_csv (chosen: fastcsv, exact path on failure)",
            lambda b: decoders.parse_csv(b, names),
        ),
    ):
        np.testing.assert_array_equal(parse(big), matrix)
        small = " | ".join(
            f"{count} rec {median_ms(lambda p=parse, b=body: p(b), 501) * 1e3:6.1f} us"
            for count, body in ((1, one), (5, five), (100, hundred))
        )
        rows.append((f"CSV {label}", f"{small} | 5 MB {median_ms(lambda p=parse: p(big)):6.1f} ms"))
    gaps = "\n".join(",".join(["", *line.split(",")[1:]]) for line in text.splitlines()).encode()
    spaced = big.replace(b",", b", ")
    for label, body in (("an empty cell per record (fastcsv)", gaps), ("spaces (exact)", spaced)):
        rows.append(
            (
                f"CSV with {label}",
                f"5 MB {median_ms(lambda b=body: decoders.parse_csv(b, names)):6.1f} ms",
            )
        )
    json_body = json.dumps({"instances": matrix.tolist()}).encode()
    jsonl_body = ("\n".join(json.dumps(row) for row in matrix.tolist()) + "\n").encode()
    objects = json.dumps(
        {"instances": [dict(zip(names, row, strict=True)) for row in matrix.tolist()]}
    ).encode()
    for label, body, parse in (
        ("JSON lists (numpy fast path)", json_body, decoders.parse_json),
        ("JSON objects (checked per value)", objects, decoders.parse_json),
        ("JSON Lines lists", jsonl_body, decoders.parse_jsonlines),
    ):
        rows.append(
            (
                label,
                f"{len(body) / 1e6:4.1f} MB "
                f"{median_ms(lambda b=body, p=parse: p(b, names)):6.1f} ms",
            )
        )
    rows.append(
        ("json.loads alone (JSON lists)", f"{median_ms(lambda: json.loads(json_body)):6.1f} ms")
    )
    print_table(f"Parsers ({len(matrix)} records in 5 MB of CSV)", rows)

    probabilities = model.predict_proba(matrix, num_threads=1)
    winners = probabilities.argmax(axis=1)
    encoders = PredictionEncoders(model.classes)

    def json_dumps() -> bytes:
        labels = [model.classes[i] for i in winners]
        records = [
            {"label": label, "probabilities": dict(zip(map(str, model.classes), row, strict=True))}
            for label, row in zip(labels, probabilities.tolist(), strict=True)
        ]
        return json.dumps({"predictions": records}).encode()

    def templates() -> bytes:
        return answer_oracle.json_answer(model.classes, winners, probabilities)

    def reprs_alone() -> list[str]:
        return list(map(repr, probabilities.ravel().tolist()))

    assert json.loads(json_dumps()) == json.loads(encoders.json(winners, probabilities))
    assert templates() == encoders.json(winners, probabilities)
    print_table(
        f"Encoders ({len(winners)} records' labels and probabilities, the 5 MB request's)",
        [
            ("json.dumps of dicts", f"{median_ms(json_dumps):6.1f} ms"),
            ("per-class %-templates in Python, JSON", f"{median_ms(templates):6.1f} ms"),
            ("  of which repr() of every probability", f"{median_ms(reprs_alone):6.1f} ms"),
            (
                "C writer, fastjson (chosen), JSON",
                f"{median_ms(lambda: encoders.json(winners, probabilities)):6.1f} ms",
            ),
            (
                "C writer, fastjson (chosen), JSON Lines",
                f"{median_ms(lambda: encoders.jsonlines(winners, probabilities)):6.1f} ms",
            ),
            ("CSV labels", f"{median_ms(lambda: encoders.csv(winners, probabilities)):6.1f} ms"),
        ],
    )
    cpus = len(os.sched_getaffinity(0))
    one_row = matrix[:1]

    def end_to_end() -> bytes:
        proba = model.predict_proba(decoders.parse_csv(big, names), num_threads=1)
        return encoders.csv(proba.argmax(axis=1), proba)

    print_table(
        f"In-process prediction ({model.family}, {model.metadata['best_iteration']} iterations)",
        [
            (
                "5 MB, 1 thread",
                f"{median_ms(lambda: model.predict_proba(matrix, num_threads=1)):6.1f} ms",
            ),
            (
                f"5 MB, {cpus} threads",
                f"{median_ms(lambda: model.predict_proba(matrix, num_threads=cpus)):6.1f} ms",
            ),
            (
                "1 record, 1 thread",
                f"{median_ms(lambda: model.predict_proba(one_row, 1), 501) * 1e3:6.1f} us",
            ),
            (
                "5 MB parse+predict+encode CSV, 1 thread",
                f"{median_ms(end_to_end):6.1f} ms",
            ),
        ],
    )


# --- server stacks ----------------------------------------------------------------


def serve_variant(
    model_dir: Path, port: int, workers: int, loop: str, freeze: str, malloc: str
) -> None:
    """Run the real app and worker with one setting changed (a child process of this script).

    ``loop`` is ``uvloop`` (as ``serve`` does) or ``asyncio``; ``freeze`` is ``frozen``
    (as ``serve`` does) or ``not-frozen``; ``malloc`` is ``tuned`` (as ``serve`` does)
    or ``default`` (glibc's own settings).
    """
    from model_kit.serving import memory, server
    from model_kit.serving.config import ServerConfig

    config = ServerConfig.from_env(
        {"SAGEMAKER_BIND_TO_PORT": str(port), "SAGEMAKER_MODEL_SERVER_WORKERS": str(workers)}
    )
    listener = server.listen(port)
    server.pin_master_threads()
    if malloc == "tuned":
        memory.tune()
    from model_kit.model_io import load_model
    from model_kit.serving.app import InferenceApp

    options = server.gunicorn_options(config, listener)
    options.update(asgi_loop=loop, loglevel="warning")
    app = InferenceApp(load_model(model_dir), config, server.THREADS_PER_WORKER)
    if freeze == "frozen":
        server.freeze_heap()
    server.run_gunicorn(app, options)


def start_variant(
    model_dir: Path, workers: int, loop: str, freeze: str, malloc: str = "tuned"
) -> tuple[subprocess.Popen[bytes], int]:
    """A ``serve_variant`` child process answering /ping: (process, port)."""
    from local.services import free_port

    port = free_port()
    arguments = [str(model_dir), str(port), str(workers), loop, freeze, malloc]
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.serving_choices", "--serve", *arguments], cwd=REPO
    )
    wait_for_ping(port, process)
    return process, port


def wait_for_ping(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, "server exited"
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/ping")
            if conn.getresponse().status == 200:
                conn.close()
                time.sleep(0.5)  # let every worker boot
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not answer /ping")


def load(
    port: int, body: bytes, path: str, connections: int, seconds: float
) -> tuple[int, list[float]]:
    """``connections`` keep-alive clients sending ``body`` back to back: (requests, latencies)."""
    latencies: list[float] = []
    stop = time.monotonic() + seconds
    lock = threading.Lock()

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine = []
        while time.monotonic() < stop:
            started = time.perf_counter()
            if body:
                conn.request("POST", path, body, {"Content-Type": "text/csv", "Accept": "text/csv"})
            else:
                conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            assert response.status == 200, response.status
            mine.append(time.perf_counter() - started)
        conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(latencies), latencies


def ping_under_load(port: int, big: bytes, seconds: float) -> float:
    """The slowest /ping while 4 clients send 5 MB requests."""
    worst: list[float] = []
    loader = threading.Thread(target=load, args=(port, big, "/invocations", 4, seconds))
    loader.start()
    time.sleep(0.3)
    while loader.is_alive():
        started = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("GET", "/ping")
        conn.getresponse().read()
        conn.close()
        worst.append(time.perf_counter() - started)
        time.sleep(0.05)
    return max(worst)


def measure_stacks(model_dir: Path, seconds: float, repeats: int, scratch: Path) -> None:
    from benchmarks.loadgen import run_wrk

    one_file = scratch / "one.csv"
    one_file.write_bytes(csv_body(1)[: csv_body(1).index(b"\n") + 1])
    big = csv_body(FIVE_MB)
    records = big.count(b"\n")
    workers = len(os.sched_getaffinity(0))
    rows = []
    for loop, freeze in (("asyncio", "frozen"), ("uvloop", "not-frozen"), ("uvloop", "frozen")):
        process, port = start_variant(model_dir, workers, loop, freeze)
        try:
            small, heavy, pings = [], [], []
            p50s, p99s, worst = [], [], []
            for _ in range(repeats):
                wrk = run_wrk(f"http://127.0.0.1:{port}/invocations", one_file, 8, seconds)
                small.append(wrk.requests_per_s)
                p50s.append(wrk.p50_ms)
                p99s.append(wrk.p99_ms)
                worst.append(wrk.max_ms)
                count, _ = load(port, big, "/invocations", 2, seconds)
                heavy.append(count * records / seconds)
                pings.append(ping_under_load(port, big, seconds) * 1e3)
            rows.append(
                (
                    f"{loop}, heap {freeze}, {workers} workers",
                    f"1 record: {statistics.median(small):6.0f} req/s, p50 "
                    f"{statistics.median(p50s):5.2f} ms, p99 {statistics.median(p99s):5.2f} ms, "
                    f"max {statistics.median(worst):5.1f} ms | "
                    f"5 MB: {statistics.median(heavy):7.0f} records/s | slowest /ping under "
                    f"5 MB load: {statistics.median(pings):5.0f} ms",
                )
            )
        finally:
            process.terminate()
            process.wait(timeout=30)
    print_table("Server stacks (same app, 8 connections for 1-record requests)", rows)


# --- the real serve -----------------------------------------------------------------


def pss_kib(pid: int) -> int:
    total = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            total += int(line.split()[1])
    return total


def process_tree_pss(pid: int) -> int:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return pss_kib(pid) + sum(pss_kib(int(child)) for child in children)


def measure_serve(ml_root: Path) -> None:
    from local.model_server import start_model_server
    from local.services import free_port

    big = csv_body(FIVE_MB)

    def memory(pid: int, port: int, workers: int) -> tuple[int, int]:
        time.sleep(1.5)
        idle = process_tree_pss(pid)
        load(port, big, "/invocations", 2 * workers, 2.0)
        return idle, process_tree_pss(pid)

    tuned, default = {}, {}
    for workers in (1, 4):
        with start_model_server(ml_root, workers=workers) as server:
            port = int(server.url.rsplit(":", 1)[1])
            tuned[workers] = memory(server.process.pid, port, workers)
        process, port = start_variant(ml_root / "model", workers, "uvloop", "frozen", "default")
        try:
            default[workers] = memory(process.pid, port, workers)
        finally:
            process.terminate()
            process.wait(timeout=30)
    accept, ping = [], []
    for _ in range(5):
        port = free_port()
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, str(REPO / "containers" / "bin" / "serve")],
            env={**os.environ, "ML_ROOT": str(ml_root), "SAGEMAKER_BIND_TO_PORT": str(port)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                conn.connect()
                break
            except ConnectionRefusedError:
                time.sleep(0.001)
        accept.append(time.perf_counter() - started)
        conn.request("GET", "/ping")
        assert conn.getresponse().status == 200
        ping.append(time.perf_counter() - started)
        conn.close()
        process.terminate()
        process.wait(timeout=30)
    print_table(
        "The real serve (asgi workers on uvloop, heap frozen)",
        [
            *(
                (
                    f"memory (PSS of all processes), {label}, {workers} worker(s)",
                    f"idle {found[workers][0] / 1024:6.1f} MiB | after 5 MB requests "
                    f"{found[workers][1] / 1024:6.1f} MiB",
                )
                for label, found in (("tuned malloc", tuned), ("glibc defaults", default))
                for workers in (1, 4)
            ),
            *(
                (
                    f"4 workers / 1 worker, {label}",
                    f"idle {found[4][0] / found[1][0]:4.2f}x | after 5 MB requests "
                    f"{found[4][1] / found[1][1]:4.2f}x",
                )
                for label, found in (("tuned malloc (serve)", tuned), ("glibc defaults", default))
            ),
            ("start -> connection accepted", f"{statistics.median(accept) * 1e3:6.0f} ms"),
            ("start -> first /ping 200", f"{statistics.median(ping) * 1e3:6.0f} ms"),
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per load measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--serve", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        model_dir, port, workers, loop, freeze, malloc = args.serve
        serve_variant(Path(model_dir), int(port), int(workers), loop, freeze, malloc)
        return
    with tempfile.TemporaryDirectory() as scratch:
        ml_root = train_model(Path(scratch))
        print(f"model: {ml_root / 'model'}; CPUs: {len(os.sched_getaffinity(0))}")
        measure_codecs(ml_root / "model")
        measure_stacks(ml_root / "model", args.seconds, args.repeats, Path(scratch))
        measure_serve(ml_root)


if __name__ == "__main__":
    main()
