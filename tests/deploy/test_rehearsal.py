"""`make rehearse` as part of the suite: the app deployed into moto as `cdk deploy --all` would,
and torn down as `cdk destroy --all` would, with each removal policy.

The checks themselves live in `local.rehearsal.scenario` (so `make rehearse` prints them);
here each one must have run and passed.
"""

from __future__ import annotations

import pytest

from local.rehearsal.scenario import RehearsalRun

CHECKS = {
    "rehearsal": [
        "all six stacks deployed",
        "dataset uploaded by CDK's handler",
        "the endpoint serves the trained model",
        "the deploy waited for the job until its state-change event released it",
        "uploads to the input bucket fire the client Lambda",
        "a second deploy of the unchanged tree changes nothing",
        "a retrain deploys the training and serving stacks only",
        "a retrain starts a new training job",
        "the endpoint gets a new model and endpoint config with the new model",
        "a longer run time keeps the job, and its new wait condition is released at once",
    ],
    "teardown": [
        "retain leaves exactly the five buckets",
        "switching to destroy changes only the storage stack",
        "destroy leaves nothing of the app",
    ],
}


@pytest.mark.parametrize(
    ("run", "name"), [(run, name) for run, names in CHECKS.items() for name in names]
)
def test_check_passes(request: pytest.FixtureRequest, run: str, name: str) -> None:
    rehearsed: RehearsalRun = request.getfixturevalue(run)
    (check,) = (c for c in rehearsed.checks if c.name == name)
    assert check.passed, f"{check.name}: {check.detail}\n\n{rehearsed.report()}"


@pytest.mark.parametrize("run", CHECKS)
def test_no_check_is_left_unlisted(request: pytest.FixtureRequest, run: str) -> None:
    rehearsed: RehearsalRun = request.getfixturevalue(run)
    assert sorted(c.name for c in rehearsed.checks) == sorted(CHECKS[run])


def test_the_retrain_replaces_model_and_config_and_updates_the_endpoint(
    rehearsal: RehearsalRun,
) -> None:
    retrain = next(d for d in rehearsal.deploys if "num_leaves=63" in d.label)
    serving = retrain.result("serving")
    assert sorted(serving.replaced) == ["EndpointConfig", "Model"]
    assert sorted(serving.modified) == ["Endpoint", "EndpointConfig", "Model"]
    training = retrain.result("training")
    assert sorted(training.replaced) == ["TrainingJobC32D198B", "TrainingJobResult669C2093"]


def test_the_report_says_what_the_emulator_skipped(rehearsal: RehearsalRun) -> None:
    report = rehearsal.report()
    assert "AWS::CloudWatch::Alarm x4: not emulated at all" in report
    assert "AWS::S3::Bucket: properties ignored: LifecycleConfiguration" in report
    assert "IAM is not enforced" in report
    assert "Custom::SageMakerTrainingJob x1: custom resource, handler run" in report
    assert "AWS::CloudFormation::WaitCondition x3: emulated here, released by a SUCCESS" in report


def test_destroy_empties_each_bucket_with_cdks_own_handler(teardown: RehearsalRun) -> None:
    """The buckets held objects in two versions; CDK's Node.js emptier ran for each one."""
    storage = teardown.deploys[-1].result("storage")
    emptied = [call for call in storage.custom_calls if "AutoDeleteObjects" in call]
    assert len(emptied) == 5, storage.custom_calls
    assert not storage.custom_skipped
