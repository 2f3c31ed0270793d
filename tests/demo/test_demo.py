"""`make demo`'s pipeline, run as a user runs it: synth, train, package, serve, score.

Six demos run at once: the default one to the end, the default one interrupted with
Ctrl-C once its services are up, and one of each other configuration (another model
family, spot training, each serving mode), which also shows that concurrent demos do not
collide.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from app import STACKS

ROOT = Path(__file__).resolve().parents[2]
INFERENCE_ROWS = 114
TIMEOUT_S = 300


@dataclass
class DemoRun:
    returncode: int
    output: str
    workdir: Path


@dataclass
class Runs:
    complete: DemoRun
    interrupted: DemoRun
    interrupted_urls: list[str]
    # The other configurations, each run to the end beside these two.
    others: dict[str, DemoRun]


# Demos of other configurations: (name, `-c` overrides). All run at once with the default one.
OTHERS = {
    "xgboost": ("config.model_family=xgboost",),
    "spot": ("config.training.use_spot=true", "config.training.max_wait_seconds=2400"),
    "serverless": ("config.serving.mode=serverless",),
    "async": ("config.serving.mode=async",),
}


def _as_in_a_terminal() -> None:
    """Ctrl-C's default action: a shell starts background jobs with SIGINT ignored, which
    their children inherit (CI may run the suite so), and Python then never raises
    KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_demo(workdir: Path, *context: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "local.demo",
            "--workdir",
            str(workdir),
            *(argument for item in context for argument in ("-c", item)),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_as_in_a_terminal,
    )


def is_listening(url: str) -> bool:
    parts = urlsplit(url)
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((parts.hostname, parts.port)) == 0


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    tmp = tmp_path_factory.mktemp("demos")
    complete = start_demo(tmp / "complete")
    interrupted = start_demo(tmp / "interrupted")
    others = {name: start_demo(tmp / name, *context) for name, context in OTHERS.items()}
    assert interrupted.stdout is not None
    head, urls = [], []
    for line in interrupted.stdout:
        head.append(line)
        urls += re.findall(r"http://127\.0\.0\.1:\d+", line)
        if "SageMaker runtime for endpoint" in line:
            interrupted.send_signal(signal.SIGINT)
            break
    interrupted_output = "".join(head) + interrupted.stdout.read()
    complete_output, _ = complete.communicate(timeout=TIMEOUT_S)
    finished = {}
    for name, process in others.items():
        output, _ = process.communicate(timeout=TIMEOUT_S)
        finished[name] = DemoRun(process.returncode, output, tmp / name)
    return Runs(
        DemoRun(complete.returncode, complete_output, tmp / "complete"),
        DemoRun(interrupted.wait(timeout=60), interrupted_output, tmp / "interrupted"),
        urls,
        finished,
    )


def test_demo_succeeds_and_scores_every_record(runs: Runs) -> None:
    run = runs.complete
    assert run.returncode == 0, run.output
    assert "Demo succeeded" in run.output
    assert re.search(rf"records scored\s+: {INFERENCE_ROWS}\n", run.output)
    predictions = (run.workdir / "predictions.csv").read_text().splitlines()
    assert len(predictions) == INFERENCE_ROWS
    assert set(predictions) <= {"benign", "malignant"}


def test_demo_trains_with_the_synthesized_training_job(runs: Runs) -> None:
    run = runs.complete
    job = next(
        resource["Properties"]
        for path in (run.workdir / "cdk.out").glob("*.template.json")
        for resource in json.loads(path.read_text())["Resources"].values()
        if resource["Type"] == "Custom::SageMakerTrainingJob"
    )
    written = run.workdir / "training" / "input" / "config" / "hyperparameters.json"
    assert json.loads(written.read_text()) == job["HyperParameters"]
    accuracy = float(re.search(r"validation accuracy\s+: ([0-9.]+)", run.output).group(1))
    assert accuracy >= 0.90
    for definition in job["MetricDefinitions"]:
        assert f"metric {definition['Name']}: " in run.output


def test_demo_reports_which_predictor_served(runs: Runs) -> None:
    """LightGBM models are compiled at training and served compiled; XGBoost's library
    serves its models."""
    assert re.search(r"predictor\s+: compiled \(", runs.complete.output)
    assert re.search(r"predictor\s+: library \(", runs.others["xgboost"].output)


def test_demo_runs_another_model_family_by_one_override(runs: Runs) -> None:
    """The images' family from the synth reaches training and serving; same output contract."""
    run = runs.others["xgboost"]
    assert run.returncode == 0, run.output
    assert 'images built with {"MODEL_FAMILY": "xgboost"}' in run.output
    assert "model family: xgboost" in run.output
    metadata = json.loads((run.workdir / "training" / "model" / "metadata.json").read_text())
    assert metadata["family"] == "xgboost"
    predictions = (run.workdir / "predictions.csv").read_text().splitlines()
    assert len(predictions) == INFERENCE_ROWS
    assert set(predictions) <= {"benign", "malignant"}


def test_demo_summarises_every_stack(runs: Runs) -> None:
    for stack in STACKS:
        assert re.search(rf"custom-sm-{stack}: \d+ resources \(", runs.complete.output), stack


def test_demo_model_archive_is_what_sagemaker_uploads(runs: Runs) -> None:
    with tarfile.open(runs.complete.workdir / "model.tar.gz") as tar:
        assert sorted(tar.getnames()) == [
            "compiled.json",
            "metadata.json",
            "model.compiled.so",
            "model.txt",
        ]


def test_ctrl_c_stops_every_process_the_demo_started(runs: Runs) -> None:
    run = runs.interrupted
    assert run.returncode == 130, run.output
    assert "every process it started was stopped" in run.output
    # The model server, S3, batch transform and its model server, the runtime adapter.
    assert len(runs.interrupted_urls) == 5
    assert not [url for url in runs.interrupted_urls if is_listening(url)]


def test_a_spot_demo_reports_what_the_resume_saved(runs: Runs) -> None:
    """Instance 1 is reclaimed after its first checkpoint; instance 2 resumes from it and
    writes the very model file of the uninterrupted demo."""
    run = runs.others["spot"]
    output = run.output
    assert run.returncode == 0, output
    assert "SIGTERM: the spot instance is being reclaimed" in output
    saved = re.search(
        r"spot resume\s+: resumed from checkpoint-(\d+)\.ckpt: (\d+) of the run's (\d+) "
        r"iterations \((\d+)%\) and [0-9.]+ s of training were not repeated",
        output,
    )
    assert saved, output
    checkpoint, resumed_at, iterations, share = map(int, saved.groups())
    assert checkpoint == resumed_at >= 1
    assert resumed_at < iterations
    assert share == round(100 * resumed_at / iterations)
    metadata = json.loads((run.workdir / "training" / "model" / "metadata.json").read_text())
    assert metadata["resumed_from_iteration"] == resumed_at
    assert metadata["iterations_run"] == iterations
    model_file = Path("training") / "model" / "model.txt"
    assert (run.workdir / model_file).read_bytes() == (
        runs.complete.workdir / model_file
    ).read_bytes()
    predictions = (run.workdir / "predictions.csv").read_text().splitlines()
    assert len(predictions) == INFERENCE_ROWS


@pytest.mark.parametrize(
    ("mode", "shown"),
    [
        ("serverless", "serverless: at most 10 invocations at once"),
        ("async", "SageMaker notifies the success topic; SNS invokes:"),
    ],
)
def test_every_serving_mode_scores_the_same_as_the_realtime_one(
    runs: Runs, mode: str, shown: str
) -> None:
    """`make demo MODE=...`: the client and the runtime stand-in as the mode has them
    (serverless: 4 MB requests, throttling past its concurrency; async: the object handed
    over, SageMaker's queue, the completion handler on its notification)."""
    run = runs.others[mode]
    assert run.returncode == 0, run.output
    assert shown in run.output
    predictions = (run.workdir / "predictions.csv").read_bytes()
    assert predictions == (runs.complete.workdir / "predictions.csv").read_bytes()
    large = (run.workdir / "large-predictions.csv").read_bytes()
    assert large == (runs.complete.workdir / "large-predictions.csv").read_bytes()


def test_a_file_above_the_batch_threshold_is_scored_by_batch_transform_like_the_sample(
    runs: Runs,
) -> None:
    """The demo checks every record of its generated file against the sample's prediction
    and fails otherwise; here, that the batch path ran: a job, its mini-batches, the
    transform handler's `.out`."""
    run = runs.complete
    assert re.search(
        r"job custom-sm-batch-[0-9a-f]{16}-1: Completed \((\d+) mini-batches\)", run.output
    )
    assert '"outcome": "submitted"' in run.output
    assert re.search(r"large file\s+: 79,572 records by batch transform", run.output)
    labels = (run.workdir / "large-predictions.csv").read_text().splitlines()
    sample = (run.workdir / "predictions.csv").read_text().splitlines()
    assert labels == sample * 698
