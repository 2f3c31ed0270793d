"""`make demo`'s pipeline, run as a user runs it: synth, train, package, serve, score."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
INFERENCE_ROWS = 114


def demo_command(tmp_path: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "local.demo",
        "--workdir",
        str(tmp_path / "demo"),
        "--cdk-out",
        str(tmp_path / "cdk.out"),
    ]


def is_listening(url: str) -> bool:
    parts = urlsplit(url)
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((parts.hostname, parts.port)) == 0


@pytest.fixture(scope="module")
def demo_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], Path]:
    tmp_path = tmp_path_factory.mktemp("demo")
    result = subprocess.run(
        demo_command(tmp_path), cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    return result, tmp_path


def test_demo_succeeds_and_scores_every_record(demo_run) -> None:
    result, tmp_path = demo_run
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Demo succeeded" in result.stdout
    assert re.search(rf"records scored\s+: {INFERENCE_ROWS}\n", result.stdout)
    predictions = (tmp_path / "demo" / "predictions.csv").read_text().splitlines()
    assert len(predictions) == INFERENCE_ROWS
    assert set(predictions) <= {"benign", "malignant"}


def test_demo_trains_with_the_synthesized_training_job(demo_run) -> None:
    result, tmp_path = demo_run
    job = next(
        resource["Properties"]
        for path in (tmp_path / "cdk.out").glob("*.template.json")
        for resource in json.loads(path.read_text())["Resources"].values()
        if resource["Type"] == "Custom::SageMakerTrainingJob"
    )
    written = tmp_path / "demo" / "training" / "input" / "config" / "hyperparameters.json"
    assert json.loads(written.read_text()) == job["HyperParameters"]
    accuracy = float(re.search(r"validation accuracy\s+: ([0-9.]+)", result.stdout).group(1))
    assert accuracy >= 0.90
    for definition in job["MetricDefinitions"]:
        assert f"metric {definition['Name']}: " in result.stdout


def test_demo_summarises_every_stack(demo_run) -> None:
    result, _ = demo_run
    for stack in ("storage", "registry", "iam", "training", "serving", "client"):
        assert re.search(rf"custom-sm-{stack}: \d+ resources \(", result.stdout), stack


def test_demo_model_archive_is_what_sagemaker_uploads(demo_run) -> None:
    import tarfile

    _, tmp_path = demo_run
    with tarfile.open(tmp_path / "demo" / "model.tar.gz") as tar:
        assert sorted(tar.getnames()) == ["metadata.json", "model.txt"]


def test_ctrl_c_stops_every_process_the_demo_started(tmp_path: Path) -> None:
    process = subprocess.Popen(
        demo_command(tmp_path),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    urls = []
    assert process.stdout is not None
    for line in process.stdout:
        urls += re.findall(r"http://127\.0\.0\.1:\d+", line)
        if "SageMaker runtime for endpoint" in line:
            process.send_signal(signal.SIGINT)
            break
    rest = process.stdout.read()
    assert process.wait(timeout=60) == 130, rest
    assert "every process it started was stopped" in rest
    assert len(urls) == 3
    assert not [url for url in urls if is_listening(url)]
