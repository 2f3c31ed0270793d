"""`make rehearse` as part of the suite: the app deployed into moto as `cdk deploy --all` would.

The checks themselves live in `local.rehearsal.scenario` (so `make rehearse` prints them);
here each one must have run and passed.
"""

from __future__ import annotations

import pytest

from local.rehearsal.scenario import RehearsalRun

CHECKS = [
    "all six stacks deployed",
    "dataset uploaded by CDK's handler",
    "the endpoint serves the trained model",
    "uploads to the input bucket fire the client Lambda",
    "a second deploy of the unchanged tree changes nothing",
    "a retrain deploys the training and serving stacks only",
    "a retrain starts a new training job",
    "the endpoint gets a new model and endpoint config with the new model",
]


@pytest.mark.parametrize("name", CHECKS)
def test_check_passes(rehearsal: RehearsalRun, name: str) -> None:
    (check,) = (c for c in rehearsal.checks if c.name == name)
    assert check.passed, f"{check.name}: {check.detail}\n\n{rehearsal.report()}"


def test_no_check_is_left_unlisted(rehearsal: RehearsalRun) -> None:
    assert sorted(c.name for c in rehearsal.checks) == sorted(CHECKS)


def test_the_retrain_replaces_model_and_config_and_updates_the_endpoint(
    rehearsal: RehearsalRun,
) -> None:
    serving = rehearsal.deploys[-1].result("serving")
    assert sorted(serving.replaced) == ["EndpointConfig", "Model"]
    assert sorted(serving.modified) == ["Endpoint", "EndpointConfig", "Model"]
    training = rehearsal.deploys[-1].result("training")
    assert training.replaced == ["TrainingJobC32D198B"]


def test_the_report_says_what_the_emulator_skipped(rehearsal: RehearsalRun) -> None:
    report = rehearsal.report()
    assert "AWS::CloudWatch::Alarm x4: not emulated at all" in report
    assert "AWS::S3::Bucket: properties ignored: LifecycleConfiguration" in report
    assert "IAM is not enforced" in report
    assert "Custom::SageMakerTrainingJob x1: custom resource, handler run" in report
