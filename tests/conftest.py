"""Shared fixtures: a SageMaker-shaped ``ML_ROOT`` tree and a model trained by the real program.

The server, Lambda and demo tests reuse ``trained_model_dir`` so that they all
exercise a model produced exactly the way SageMaker would produce it: by
running ``containers/bin/train`` as a process on the bundled sample data.

Helpers for other tests: ``from conftest import make_ml_root, run_train`` (and
``read_csv_rows``/``csv_text`` to build variants of the sample CSV files).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
from model_kit import families

REPO_ROOT = Path(__file__).resolve().parent.parent
TRAIN_PROGRAM = REPO_ROOT / "containers" / "bin" / "train"
SAMPLE_DATA = REPO_ROOT / "data"
TRAINING_CSV = SAMPLE_DATA / "training" / "train.csv"
VALIDATION_CSV = SAMPLE_DATA / "validation" / "validation.csv"
INFERENCE_CSV = SAMPLE_DATA / "inference" / "inference.csv"

# A channel's content: a CSV file or a folder to copy, or {relative path: text or file}.
ChannelSource = Path | Mapping[str, str | Path]


def _fill_channel(channel_dir: Path, source: ChannelSource) -> None:
    channel_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(source, Path) and source.is_dir():
        shutil.copytree(source, channel_dir, dirs_exist_ok=True)
    elif isinstance(source, Path):
        shutil.copy(source, channel_dir / source.name)
    else:
        for relative, content in source.items():
            target = channel_dir / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, Path):
                shutil.copy(content, target)
            else:
                target.write_text(content, encoding="utf-8")


def read_csv_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a CSV file, to build variants of the sample data."""
    with path.open(newline="", encoding="utf-8") as handle:
        header, *rows = list(csv.reader(handle))
    return header, rows


def csv_text(header: list[str], rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def make_ml_root(
    root: Path,
    *,
    channels: Mapping[str, ChannelSource],
    hyperparameters: Mapping[str, object] | None = None,
    write_job_config: bool = True,
) -> Path:
    """Lay out ``root`` the way SageMaker mounts ``/opt/ml`` for a training job.

    Hyperparameter values are written as strings, as SageMaker does. With
    ``write_job_config`` the tree also gets ``inputdataconfig.json`` (one entry
    per channel, File mode, text/csv) and a single-host ``resourceconfig.json``.
    """
    config_dir = root / "input" / "config"
    config_dir.mkdir(parents=True, exist_ok=True)
    for name, source in channels.items():
        _fill_channel(root / "input" / "data" / name, source)
    if hyperparameters is not None:
        as_strings = {key: str(value) for key, value in hyperparameters.items()}
        (config_dir / "hyperparameters.json").write_text(json.dumps(as_strings))
    if write_job_config:
        input_data_config = {
            name: {
                "ContentType": "text/csv",
                "TrainingInputMode": "File",
                "S3DistributionType": "FullyReplicated",
                "RecordWrapperType": "None",
            }
            for name in channels
        }
        (config_dir / "inputdataconfig.json").write_text(json.dumps(input_data_config))
        resource_config = {
            "current_host": "algo-1",
            "current_instance_type": "ml.m5.large",
            "hosts": ["algo-1"],
            "network_interface_name": "eth0",
        }
        (config_dir / "resourceconfig.json").write_text(json.dumps(resource_config))
    return root


def run_train(
    ml_root: Path, timeout: float = 120, family: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real training program as SageMaker would, relocated to ``ml_root``; as an
    image built for ``family`` would (default: the default family)."""
    env = {**os.environ, "ML_ROOT": str(ml_root)}
    if family is not None:
        env[families.VARIABLE] = family
    return subprocess.run(
        [sys.executable, str(TRAIN_PROGRAM)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="session")
def sample_training_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """``containers/bin/train`` run once on the bundled sample data: its ML_ROOT and result."""
    ml_root = make_ml_root(
        tmp_path_factory.mktemp("ml_root"),
        channels={"training": TRAINING_CSV, "validation": VALIDATION_CSV},
        hyperparameters={},
    )
    return ml_root, run_train(ml_root)


@pytest.fixture(scope="session")
def trained_model_dir(sample_training_run: tuple[Path, subprocess.CompletedProcess[str]]) -> Path:
    """A model directory trained by ``containers/bin/train`` on the bundled sample data."""
    ml_root, result = sample_training_run
    assert result.returncode == 0, f"training failed:\n{result.stdout}\n{result.stderr}"
    return ml_root / "model"


@pytest.fixture(scope="session")
def family_training_runs(
    tmp_path_factory: pytest.TempPathFactory,
    sample_training_run: tuple[Path, subprocess.CompletedProcess[str]],
) -> dict[str, tuple[Path, subprocess.CompletedProcess[str]]]:
    """``containers/bin/train`` run once per shipped family on the bundled sample data, as an
    image built for that family runs it: each ML_ROOT and result."""
    runs = {families.DEFAULT: sample_training_run}
    for name in sorted(set(families.MODULES) - {families.DEFAULT}):
        ml_root = make_ml_root(
            tmp_path_factory.mktemp(f"ml_root_{name}"),
            channels={"training": TRAINING_CSV, "validation": VALIDATION_CSV},
            hyperparameters={},
        )
        runs[name] = ml_root, run_train(ml_root, family=name)
    return runs


@pytest.fixture(scope="session")
def family_model_dirs(
    family_training_runs: dict[str, tuple[Path, subprocess.CompletedProcess[str]]],
) -> dict[str, Path]:
    """A model directory per shipped family (``family_training_runs``)."""
    for name, (_, result) in family_training_runs.items():
        assert result.returncode == 0, f"{name} training failed:\n{result.stdout}\n{result.stderr}"
    return {name: ml_root / "model" for name, (ml_root, _) in family_training_runs.items()}
