"""How ``serve`` starts, fails, behaves under load and stops: the process, not the routes."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from model_kit.serving.config import available_cpus
from model_kit.serving.server import THREADS_PER_WORKER
from test_serving_http import (
    CSV,
    bodies,
    body_of_exactly,
    invoke,
    load_sample,
    read_only_ml_root,
    refused_before_the_body,
    request,
)

from local.model_server import SERVE_PROGRAM, start_model_server
from local.services import free_port

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def ml_root(tmp_path_factory: pytest.TempPathFactory, trained_model_dir: Path) -> Path:
    return read_only_ml_root(tmp_path_factory.mktemp("lifecycle_ml_root"), trained_model_dir)


@pytest.fixture(scope="module")
def sample():
    return load_sample()


def run_serve(tmp_path: Path, ml_root: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``serve`` called by path from an unrelated working directory, expected to exit."""
    return subprocess.run(
        [sys.executable, str(SERVE_PROGRAM)],
        cwd=tmp_path,
        env={
            **os.environ,
            "ML_ROOT": str(ml_root),
            "SAGEMAKER_BIND_TO_PORT": str(free_port()),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_serve_is_an_executable_python3_script():
    assert os.access(SERVE_PROGRAM, os.X_OK)
    assert SERVE_PROGRAM.read_text().startswith("#!/usr/bin/env python3\n")


@pytest.mark.parametrize(
    ("variable", "value", "allowed"),
    [
        ("SAGEMAKER_MODEL_SERVER_WORKERS", "four", "a whole number from 1 to 256"),
        ("SAGEMAKER_MODEL_SERVER_WORKERS", "0", "a whole number from 1 to 256"),
        ("SAGEMAKER_MODEL_SERVER_TIMEOUT", "-5", "a whole number of seconds from 1 to 3600"),
        ("SAGEMAKER_BIND_TO_PORT", "70000", "a whole number from 1 to 65535"),
        ("SAGEMAKER_BATCH", "yes", "expected 'true' or 'false'"),
        ("SAGEMAKER_BATCH_STRATEGY", "ALL", "expected one of MULTI_RECORD, SINGLE_RECORD"),
    ],
)
def test_an_invalid_environment_value_fails_naming_variable_value_and_allowed(
    tmp_path, ml_root, variable, value, allowed
):
    result = run_serve(tmp_path, ml_root, **{variable: value})
    assert result.returncode == 2
    assert f"{variable}={value!r} is not allowed" in result.stderr
    assert allowed in result.stderr


def test_batch_payload_above_100_mb_is_refused_at_start(tmp_path, ml_root):
    result = run_serve(tmp_path, ml_root, SAGEMAKER_BATCH="true", SAGEMAKER_MAX_PAYLOAD_IN_MB="101")
    assert result.returncode == 2
    assert "SAGEMAKER_MAX_PAYLOAD_IN_MB='101' is not allowed" in result.stderr
    assert "from 1 to 100" in result.stderr


def test_an_unbounded_batch_payload_is_refused_at_start_saying_what_to_set(tmp_path, ml_root):
    result = run_serve(tmp_path, ml_root, SAGEMAKER_BATCH="true", SAGEMAKER_MAX_PAYLOAD_IN_MB="0")
    assert result.returncode == 2
    assert "SAGEMAKER_MAX_PAYLOAD_IN_MB=0 asks this container" in result.stderr
    assert "set MaxPayloadInMB from 1 to 100 in the transform job" in result.stderr


def test_a_missing_model_exits_non_zero_naming_the_path(tmp_path):
    result = run_serve(tmp_path, tmp_path / "empty_root")
    assert result.returncode == 1
    model_dir = tmp_path / "empty_root" / "model"
    assert f"cannot load the model from {model_dir}" in result.stderr
    assert "metadata.json not found" in result.stderr


def test_a_corrupt_model_exits_non_zero_naming_the_path(tmp_path, trained_model_dir):
    root = tmp_path / "root"
    (root / "model").mkdir(parents=True)
    (root / "model" / "metadata.json").write_text((trained_model_dir / "metadata.json").read_text())
    (root / "model" / "model.txt").write_text("this is not a LightGBM model\n")
    result = run_serve(tmp_path, root)
    assert result.returncode == 1
    assert f"cannot load the model from {root / 'model'}" in result.stderr


def test_a_port_in_use_fails_clearly(tmp_path, ml_root):
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_serve(tmp_path, ml_root, SAGEMAKER_BIND_TO_PORT=str(port))
    assert result.returncode == 1
    assert f"cannot listen on 0.0.0.0:{port} (SAGEMAKER_BIND_TO_PORT)" in result.stderr


def test_connections_are_accepted_early_and_ping_is_200_only_after_the_model_loaded(ml_root):
    """The socket is bound before the model loads; requests wait instead of failing."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(SERVE_PROGRAM)],
        env={**os.environ, "ML_ROOT": str(ml_root), "SAGEMAKER_BIND_TO_PORT": str(port)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
                conn.connect()
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline, "serve never accepted a connection"
                time.sleep(0.005)
        conn.request("GET", "/ping")
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert output.index("model loaded from") < output.index("Booting worker")


def read_response(client: socket.socket) -> tuple[bytes, bytes]:
    """One HTTP/1.1 response with a Content-Length: (head, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = client.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = int(re.search(rb"Content-Length: (\d+)", head, re.IGNORECASE).group(1))
    while len(body) < length:
        chunk = client.recv(65536)
        assert chunk, "connection closed inside the body"
        body += chunk
    return head, body


def test_sigterm_lets_an_in_flight_request_finish_then_exits(ml_root, sample):
    body = bodies(sample, CSV)
    request_head = (
        f"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with start_model_server(ml_root, workers=1) as server:
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=30) as client:
            client.sendall(request_head + body)  # a first request: the worker owns the connection
            assert read_response(client)[0].startswith(b"HTTP/1.1 200 OK")
            client.sendall(request_head + body[:100])
            time.sleep(0.3)  # the worker is now reading the rest of the body
            stopping_at = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            client.sendall(body[100:])
            head, answer = read_response(client)
        assert head.startswith(b"HTTP/1.1 200 OK")
        assert len(answer.decode().splitlines()) == len(sample[2])
        assert server.process.wait(timeout=30) == 0
        assert time.monotonic() - stopping_at < 30


def test_sigterm_does_not_wait_for_idle_kept_alive_connections(ml_root):
    """SageMaker keeps connections open between requests; a stop must not wait for them.

    Repeated, because a SIGTERM that lands while a worker boots was once lost.
    """
    for _ in range(3):
        server = start_model_server(ml_root, workers=2)
        connections = []
        for _ in range(4):
            connection = http.client.HTTPConnection(server.url.removeprefix("http://"), timeout=10)
            assert request(server, "GET", "/ping", connection=connection)[0] == 200
            connections.append(connection)
        stopping_at = time.monotonic()
        assert server.stop() == 0
        assert time.monotonic() - stopping_at < 10, server.log()
        for connection in connections:
            connection.close()


@pytest.fixture(scope="module")
def batch_server(ml_root):
    env = {"SAGEMAKER_BATCH": "true", "SAGEMAKER_MAX_PAYLOAD_IN_MB": "8"}
    with start_model_server(ml_root, workers=1, env=env) as running:
        yield running


def test_batch_mode_raises_the_payload_limit_to_sagemaker_max_payload_in_mb(batch_server, sample):
    status, _, answer = invoke(batch_server, body_of_exactly(8 * MIB, sample), CSV, CSV)
    assert status == 200
    assert answer.count(b"\n") > 30_000
    status, error = refused_before_the_body(batch_server, 8 * MIB + 1)
    assert status == 413
    assert f"the limit is {8 * MIB} bytes (8 MB)" in error
    status, _, parameters = request(batch_server, "GET", "/execution-parameters")
    assert json.loads(parameters) == {
        "MaxConcurrentTransforms": 1,
        "BatchStrategy": "MULTI_RECORD",
        "MaxPayloadInMB": 8,
    }


@pytest.fixture(scope="module")
def two_workers(ml_root):
    with start_model_server(ml_root, workers=2) as running:
        deadline = time.monotonic() + 10
        while running.log().count("ready: predictions use") < 2:
            assert time.monotonic() < deadline, running.log()
            time.sleep(0.05)
        yield running


def worker_pids(server) -> list[int]:
    master = server.process.pid
    return [int(pid) for pid in Path(f"/proc/{master}/task/{master}/children").read_text().split()]


def thread_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def big_requests(server, body: bytes, count: int) -> list[int]:
    statuses: list[int] = []

    def send() -> None:
        statuses.append(invoke(server, body, CSV, CSV)[0])

    threads = [threading.Thread(target=send) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def test_ping_answers_within_2_s_while_5_mb_predictions_run(two_workers, sample):
    body = body_of_exactly(5 * MIB, sample)
    stop = threading.Event()
    statuses: list[int] = []

    def load() -> None:
        while not stop.is_set():
            statuses.append(invoke(two_workers, body, CSV, CSV)[0])

    loaders = [threading.Thread(target=load) for _ in range(4)]
    for loader in loaders:
        loader.start()
    slowest = 0.0
    try:
        time.sleep(0.3)
        for _ in range(15):
            started = time.monotonic()
            assert request(two_workers, "GET", "/ping")[0] == 200
            slowest = max(slowest, time.monotonic() - started)
            time.sleep(0.1)
    finally:
        stop.set()
        for loader in loaders:
            loader.join()
    assert statuses and set(statuses) == {200}
    assert slowest < 2.0


@pytest.mark.skipif(sys.platform != "linux", reason="reads thread counts from /proc")
def test_several_workers_predict_with_one_openmp_thread_each(two_workers, sample):
    """No OpenMP team appears in a worker: its only new threads are the app's predict pool."""
    assert "predictions use 1 OpenMP thread(s)" in two_workers.log()
    pids = worker_pids(two_workers)
    assert len(pids) == 2
    before = {pid: thread_count(pid) for pid in pids}
    body = bodies(sample, CSV) * 50
    assert set(big_requests(two_workers, body, 4 * THREADS_PER_WORKER)) == {200}
    for pid in pids:
        assert thread_count(pid) - before[pid] <= THREADS_PER_WORKER


def resident_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE).group(1)) / 1024


@pytest.mark.skipif(sys.platform != "linux", reason="reads memory from /proc")
def test_an_idle_worker_gives_the_memory_of_large_requests_back(ml_root, sample):
    """5 MB bodies wait in the heap while they arrive; once idle, the worker returns it."""
    with start_model_server(ml_root, workers=1) as server:
        [pid] = worker_pids(server)
        started = resident_mib(pid)
        body = body_of_exactly(5 * MIB, sample)
        for _ in range(3):
            assert set(big_requests(server, body, 8)) == {200}
        time.sleep(2.5)
        assert resident_mib(pid) - started < 8, server.log()


@pytest.mark.skipif(
    sys.platform != "linux" or available_cpus() < 2, reason="needs /proc and 2 CPUs"
)
def test_a_single_worker_predicts_with_every_cpu(ml_root, sample):
    """The control for the test above: with one worker, OpenMP threads do appear."""
    with start_model_server(ml_root, workers=1) as server:
        assert f"predictions use {available_cpus()} OpenMP thread(s)" in server.log()
        [pid] = worker_pids(server)
        before = thread_count(pid)
        body = bodies(sample, CSV) * 50
        assert set(big_requests(server, body, 2 * THREADS_PER_WORKER)) == {200}
        assert thread_count(pid) - before > THREADS_PER_WORKER


def test_inference_image_matches_the_training_image_and_runs_serve_from_path():
    containers = SERVE_PROGRAM.parent.parent
    inference = (containers / "Dockerfile.inference").read_text()
    training = (containers / "Dockerfile.training").read_text()
    # Every stage, the C library's build stage too, starts from the training image's base.
    bases = set(re.findall(r"^FROM (\S+)", inference, re.MULTILINE))
    assert bases == set(re.findall(r"^FROM (\S+)", training, re.MULTILINE))
    # model_kit arrives as the wheel its build stage made, C library inside, C source left out.
    assert re.search(r"^COPY --from=native /build/dist/ /tmp/dist/$", inference, re.MULTILINE)
    assert "pip install --no-cache-dir --no-deps /tmp/dist/*.whl" in inference
    assert re.search(r"^COPY bin/serve bin/serve$", inference, re.MULTILINE)
    assert 'PATH="/opt/program/bin:${PATH}"' in inference
    assert "PYTHONUNBUFFERED=1" in inference
    assert "libgomp1" in inference
    assert re.search(r"^EXPOSE 8080$", inference, re.MULTILINE)
    assert "-r requirements-inference.txt" in inference
    requirements = (containers / "requirements-inference.txt").read_text().splitlines()
    assert "-r requirements-model.txt" in requirements
    assert not any(line.startswith("pandas") for line in requirements)
