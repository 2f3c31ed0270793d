"""The training-job custom resource handler against botocore's Stubber.

Stubber checks every request against the real SageMaker API model, so these tests prove the
handler sends valid CreateTrainingJob/DescribeTrainingJob/StopTrainingJob calls.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
from botocore.stub import ANY, Stubber

HANDLER_PATH = (
    Path(__file__).resolve().parents[2] / "constructs_lib" / "training_job" / "handler" / "index.py"
)
_spec = importlib.util.spec_from_file_location("training_job_handler", HANDLER_PATH)
handler = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(handler)

ACCOUNT = "123456789012"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/custom-sm-iam-SageMakerExecutionRole"
IMAGE = f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/cdk-hnb659fds-container-assets:abc123"
PROPERTIES = {
    "ServiceToken": "arn:aws:lambda:eu-west-1:123456789012:function:provider",
    "JobNamePrefix": "custom-sm",
    "RoleArn": ROLE_ARN,
    "TrainingImage": IMAGE,
    "HyperParameters": {"learning_rate": "0.1", "num_iterations": "200", "target": "label"},
    "MetricDefinitions": [{"Name": "Validation Accuracy", "Regex": "val_accuracy: ([0-9\\.]+)"}],
    "Channels": [
        {"ChannelName": "training", "S3Uri": "s3://data-bucket/training/"},
        {"ChannelName": "validation", "S3Uri": "s3://data-bucket/validation/"},
    ],
    "DataVersion": "bundled-0123",
    "OutputS3Uri": "s3://models-bucket/training-output/",
    "InstanceType": "ml.m4.xlarge",
    "InstanceCount": "1",
    "VolumeSizeInGB": "5",
    "MaxRuntimeInSeconds": "1200",
    "UseSpot": "false",
}
NOT_FOUND = {
    "service_error_code": "ValidationException",
    "service_message": "Requested resource not found.",
}


@pytest.fixture
def sagemaker():
    client = boto3.client(
        "sagemaker",
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def event(request_type: str, properties=None, physical_id=None, old_properties=None) -> dict:
    body = {
        "RequestType": request_type,
        "ResourceProperties": copy.deepcopy(properties or PROPERTIES),
        "ResourceType": "Custom::SageMakerTrainingJob",
        "LogicalResourceId": "TrainingJob",
        "StackId": "arn:aws:cloudformation:eu-west-1:123456789012:stack/custom-sm-training/x",
    }
    if physical_id:
        body["PhysicalResourceId"] = physical_id
    if old_properties:
        body["OldResourceProperties"] = copy.deepcopy(old_properties)
    return body


def described(name: str, status: str, **extra) -> dict:
    """A DescribeTrainingJob response with the fields the API model requires."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return {
        "TrainingJobName": name,
        "TrainingJobArn": f"arn:aws:sagemaker:eu-west-1:{ACCOUNT}:training-job/{name}",
        "ModelArtifacts": {
            "S3ModelArtifacts": f"s3://models-bucket/training-output/{name}/output/model.tar.gz"
        },
        "TrainingJobStatus": status,
        "SecondaryStatus": extra.pop("SecondaryStatus", "Training"),
        "AlgorithmSpecification": {"TrainingImage": IMAGE, "TrainingInputMode": "File"},
        "ResourceConfig": {"InstanceType": "ml.m4.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 5},
        "StoppingCondition": {"MaxRuntimeInSeconds": 1200},
        "CreationTime": now,
        **extra,
    }


def test_job_name_is_a_valid_sagemaker_name_and_a_content_hash():
    name = handler.job_name(PROPERTIES, 1)
    assert re.fullmatch(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$", name)
    assert name == f"custom-sm-{handler.content_hash(PROPERTIES)}-1"
    long_prefix = {**PROPERTIES, "JobNamePrefix": "x" * 80}
    assert len(handler.job_name(long_prefix, 20)) == 63


@pytest.mark.parametrize(
    ("key", "value", "retrains"),
    [
        ("TrainingImage", IMAGE.replace("abc123", "def456"), True),
        ("DataVersion", "bundled-4567", True),
        ("HyperParameters", {**PROPERTIES["HyperParameters"], "seed": "7"}, True),
        ("InstanceType", "ml.m5.xlarge", True),
        ("Channels", PROPERTIES["Channels"][:1], True),
        ("RoleArn", ROLE_ARN + "2", False),
        ("MaxRuntimeInSeconds", "1800", False),
        ("MetricDefinitions", [], False),
    ],
)
def test_only_model_shaping_inputs_change_the_name(key, value, retrains):
    changed = {**PROPERTIES, key: value}
    assert (handler.content_hash(changed) != handler.content_hash(PROPERTIES)) is retrains


@pytest.mark.parametrize(
    "not_found",
    ["Requested resource not found.", "Could not find training job 'custom-sm-x-1'."],
)
def test_create_starts_a_job_with_network_isolation(sagemaker, not_found):
    """Both of SageMaker's wordings of a missing job mean "start one"."""
    client, stubber = sagemaker
    name = handler.job_name(PROPERTIES, 1)
    stubber.add_client_error(
        "describe_training_job", service_error_code="ValidationException", service_message=not_found
    )
    expected = handler.create_request(PROPERTIES, name)
    stubber.add_response(
        "create_training_job",
        {"TrainingJobArn": f"arn:aws:sagemaker:eu-west-1:{ACCOUNT}:training-job/{name}"},
        expected,
    )
    assert handler.handle_event(event("Create"), client) == {"PhysicalResourceId": name}
    assert expected["EnableNetworkIsolation"] is True
    assert expected["StoppingCondition"] == {"MaxRuntimeInSeconds": 1200}
    assert "EnableManagedSpotTraining" not in expected
    assert [c["ChannelName"] for c in expected["InputDataConfig"]] == ["training", "validation"]


def test_create_with_spot_sets_wait_time_and_checkpoints(sagemaker):
    client, stubber = sagemaker
    spot = {
        **PROPERTIES,
        "UseSpot": "true",
        "MaxWaitTimeInSeconds": "2400",
        "CheckpointS3Uri": "s3://models-bucket/checkpoints/",
    }
    name = handler.job_name(spot, 1)
    stubber.add_client_error("describe_training_job", **NOT_FOUND)
    request = handler.create_request(spot, name)
    stubber.add_response("create_training_job", {"TrainingJobArn": "arn:x"}, request)
    assert handler.handle_event(event("Create", spot), client)["PhysicalResourceId"] == name
    assert request["EnableManagedSpotTraining"] is True
    assert request["StoppingCondition"] == {
        "MaxRuntimeInSeconds": 1200,
        "MaxWaitTimeInSeconds": 2400,
    }
    assert request["CheckpointConfig"] == {"S3Uri": "s3://models-bucket/checkpoints/"}


def test_create_reuses_a_completed_job_of_the_same_inputs(sagemaker):
    """Re-creating after a rollback or a teardown adopts the model instead of retraining."""
    client, stubber = sagemaker
    name = handler.job_name(PROPERTIES, 1)
    stubber.add_response(
        "describe_training_job", described(name, "Completed"), {"TrainingJobName": name}
    )
    assert handler.handle_event(event("Create"), client) == {"PhysicalResourceId": name}


@pytest.mark.parametrize("status", ["Failed", "Stopped", "Stopping"])
def test_create_skips_names_of_failed_or_stopped_jobs(sagemaker, status):
    client, stubber = sagemaker
    first, second = (handler.job_name(PROPERTIES, n) for n in (1, 2))
    stubber.add_response(
        "describe_training_job", described(first, status), {"TrainingJobName": first}
    )
    stubber.add_client_error("describe_training_job", **NOT_FOUND)
    stubber.add_response("create_training_job", {"TrainingJobArn": "arn:x"}, _any_request(second))
    assert handler.handle_event(event("Create"), client) == {"PhysicalResourceId": second}


def test_create_gives_up_after_many_unusable_names(sagemaker):
    client, stubber = sagemaker
    for attempt in range(1, handler.MAX_ATTEMPTS + 1):
        name = handler.job_name(PROPERTIES, attempt)
        stubber.add_response(
            "describe_training_job", described(name, "Failed"), {"TrainingJobName": name}
        )
    with pytest.raises(
        RuntimeError, match=re.escape("change an input, e.g. the 'seed' hyperparameter")
    ):
        handler.handle_event(event("Create"), client)


def _any_request(name: str) -> dict:
    request = handler.create_request(PROPERTIES, name)
    return {key: (ANY if key != "TrainingJobName" else name) for key in request}


def test_unchanged_update_calls_nothing(sagemaker):
    client, _stubber = sagemaker
    current = handler.job_name(PROPERTIES, 1)
    changed_role = {**PROPERTIES, "RoleArn": ROLE_ARN + "-new"}
    result = handler.handle_event(
        event("Update", changed_role, physical_id=current, old_properties=PROPERTIES), client
    )
    assert result == {"PhysicalResourceId": current}


def test_unchanged_update_keeps_a_reused_attempt_name(sagemaker):
    client, _stubber = sagemaker
    current = handler.job_name(PROPERTIES, 3)
    result = handler.handle_event(event("Update", physical_id=current), client)
    assert result == {"PhysicalResourceId": current}


def test_changed_update_starts_a_new_job(sagemaker):
    client, stubber = sagemaker
    old = handler.job_name(PROPERTIES, 1)
    changed = {**PROPERTIES, "DataVersion": "bundled-9999"}
    new = handler.job_name(changed, 1)
    assert new != old
    stubber.add_client_error("describe_training_job", **NOT_FOUND)
    stubber.add_response(
        "create_training_job", {"TrainingJobArn": "arn:x"}, handler.create_request(changed, new)
    )
    result = handler.handle_event(
        event("Update", changed, physical_id=old, old_properties=PROPERTIES), client
    )
    assert result == {"PhysicalResourceId": new}


def test_delete_stops_a_running_job_and_waits_for_it(sagemaker):
    client, stubber = sagemaker
    name = handler.job_name(PROPERTIES, 1)
    stubber.add_response(
        "describe_training_job", described(name, "InProgress"), {"TrainingJobName": name}
    )
    stubber.add_response("stop_training_job", {}, {"TrainingJobName": name})
    assert handler.handle_event(event("Delete", physical_id=name), client) == {
        "PhysicalResourceId": name
    }
    stubber.add_response(
        "describe_training_job", described(name, "Stopping"), {"TrainingJobName": name}
    )
    assert handler.check_complete(event("Delete", physical_id=name), client) == {
        "IsComplete": False
    }
    stubber.add_response(
        "describe_training_job", described(name, "Stopped"), {"TrainingJobName": name}
    )
    assert handler.check_complete(event("Delete", physical_id=name), client) == {"IsComplete": True}


def test_delete_of_a_completed_job_keeps_it(sagemaker):
    """The replaced job after an update: its model may still serve until the switch-over."""
    client, stubber = sagemaker
    name = handler.job_name(PROPERTIES, 1)
    stubber.add_response(
        "describe_training_job", described(name, "Completed"), {"TrainingJobName": name}
    )
    assert handler.handle_event(event("Delete", physical_id=name), client) == {
        "PhysicalResourceId": name
    }


def test_delete_after_a_failed_create_needs_no_job(sagemaker):
    client, _stubber = sagemaker
    physical_id = "custom-sm-training/TrainingJob failed: not a job name"
    assert handler.handle_event(event("Delete", physical_id=physical_id), client) == {
        "PhysicalResourceId": physical_id
    }


def test_is_complete_while_in_progress(sagemaker):
    client, stubber = sagemaker
    name = handler.job_name(PROPERTIES, 1)
    stubber.add_response(
        "describe_training_job", described(name, "InProgress"), {"TrainingJobName": name}
    )
    assert handler.check_complete(event("Create", physical_id=name), client) == {
        "IsComplete": False
    }


def test_is_complete_returns_model_and_metrics(sagemaker):
    client, stubber = sagemaker
    name = handler.job_name(PROPERTIES, 1)
    metrics = [
        {"MetricName": "Validation Accuracy", "Value": 0.97, "Timestamp": datetime(2026, 1, 1)},
        {"MetricName": "Validation Loss", "Value": 0.08, "Timestamp": datetime(2026, 1, 1)},
    ]
    stubber.add_response(
        "describe_training_job",
        described(name, "Completed", SecondaryStatus="Completed", FinalMetricDataList=metrics),
        {"TrainingJobName": name},
    )
    result = handler.check_complete(event("Create", physical_id=name), client)
    assert result["IsComplete"] is True
    data = result["Data"]
    assert data["TrainingJobName"] == name
    assert data["ModelDataUrl"] == f"s3://models-bucket/training-output/{name}/output/model.tar.gz"
    assert json.loads(data["FinalMetrics"]) == {
        "Validation Accuracy": 0.97,
        "Validation Loss": 0.08,
    }


def test_is_complete_surfaces_the_failure_reason(sagemaker):
    client, stubber = sagemaker
    name = handler.job_name(PROPERTIES, 1)
    reason = "AlgorithmError: column 'label' not found in /opt/ml/input/data/training/train.csv"
    stubber.add_response(
        "describe_training_job",
        described(name, "Failed", SecondaryStatus="Failed", FailureReason=reason),
        {"TrainingJobName": name},
    )
    with pytest.raises(RuntimeError, match=f"training job {name} failed: {re.escape(reason)}"):
        handler.check_complete(event("Create", physical_id=name), client)


def test_is_complete_fails_on_a_stopped_job(sagemaker):
    client, stubber = sagemaker
    name = handler.job_name(PROPERTIES, 1)
    stubber.add_response(
        "describe_training_job",
        described(name, "Stopped", SecondaryStatus="MaxRuntimeExceeded"),
        {"TrainingJobName": name},
    )
    with pytest.raises(RuntimeError, match="was stopped before it completed: MaxRuntimeExceeded"):
        handler.check_complete(event("Update", physical_id=name), client)


def test_other_errors_are_not_mistaken_for_a_missing_job(sagemaker):
    client, stubber = sagemaker
    stubber.add_client_error(
        "describe_training_job",
        service_error_code="AccessDeniedException",
        service_message="not authorized to perform sagemaker:DescribeTrainingJob",
    )
    with pytest.raises(Exception, match="AccessDenied"):
        handler.handle_event(event("Create"), client)
