"""The training job's handlers against botocore's Stubber and a real wait-condition handle.

Stubber checks every request against the real SageMaker API model, so these tests prove the
handlers send valid CreateTrainingJob/DescribeTrainingJob/StopTrainingJob calls; the wait
handle is an HTTP server on a loopback port that records each signal PUT to it.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import pytest
from botocore.stub import ANY, Stubber

from constructs_lib.training_job import content_hash, job_name_stem

HANDLER_PATH = (
    Path(__file__).resolve().parents[2] / "constructs_lib" / "training_job" / "handler" / "index.py"
)
_spec = importlib.util.spec_from_file_location("training_job_handler", HANDLER_PATH)
handler = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(handler)

ACCOUNT = "123456789012"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/custom-sm-iam-SageMakerExecutionRole"
IMAGE = f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/cdk-hnb659fds-container-assets:abc123"
STEM = "custom-sm-0123456789abcdef"
PROPERTIES = {
    "ServiceToken": "arn:aws:lambda:eu-west-1:123456789012:function:provider",
    "JobNameStem": STEM,
    "WaitHandle": "set by the wait_handle fixture",
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


class WaitHandle:
    """CloudFormation's side of a wait condition handle: the signals PUT to its URL."""

    def __init__(self) -> None:
        self.signals: list[dict] = []
        self.content_types: list[str | None] = []
        handle = self

        class Receiver(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                handle.signals.append(json.loads(body))
                handle.content_types.append(self.headers.get("Content-Type"))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_args) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/signal?X-Amz-Signature=x"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def wait_handle():
    handle = WaitHandle()
    yield handle
    handle.server.shutdown()
    handle.server.server_close()


def event(
    request_type: str,
    properties=None,
    physical_id=None,
    old_properties=None,
    handle: WaitHandle | None = None,
    resource_type: str = "Custom::SageMakerTrainingJob",
) -> dict:
    resource_properties = copy.deepcopy(properties or PROPERTIES)
    if handle is not None:
        resource_properties["WaitHandle"] = handle.url
    body = {
        "RequestType": request_type,
        "ResourceProperties": resource_properties,
        "ResourceType": resource_type,
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
        "OutputDataConfig": {"S3OutputPath": PROPERTIES["OutputS3Uri"]},
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


def expect_describe(stubber: Stubber, job: str, status: str, **extra) -> None:
    stubber.add_response(
        "describe_training_job", described(job, status, **extra), {"TrainingJobName": job}
    )


def name(attempt: int) -> str:
    return handler.job_name(STEM, attempt)


def test_job_names_are_valid_sagemaker_names_within_the_length_limit():
    digest = content_hash(PROPERTIES)
    assert job_name_stem("custom-sm", digest) == f"custom-sm-{digest}"
    for prefix in ("custom-sm", "x" * 80, "a-" * 40):
        longest = handler.job_name(job_name_stem(prefix, digest), handler.MAX_ATTEMPTS)
        assert re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}", longest), longest
        assert len(longest) <= 63
    assert len(handler.job_name(job_name_stem("x" * 80, digest), handler.MAX_ATTEMPTS)) == 63


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
def test_only_model_shaping_inputs_change_the_digest(key, value, retrains):
    changed = {**PROPERTIES, key: value}
    assert (content_hash(changed) != content_hash(PROPERTIES)) is retrains


@pytest.mark.parametrize(
    "not_found",
    ["Requested resource not found.", "Could not find training job 'custom-sm-x-1'."],
)
def test_create_starts_a_job_with_network_isolation(sagemaker, wait_handle, not_found):
    """Both of SageMaker's wordings of a missing job mean "start one"; the event will say
    when it ends, so nothing is signalled now."""
    client, stubber = sagemaker
    stubber.add_client_error(
        "describe_training_job", service_error_code="ValidationException", service_message=not_found
    )
    expected = handler.create_request(PROPERTIES, name(1))
    stubber.add_response(
        "create_training_job",
        {"TrainingJobArn": f"arn:aws:sagemaker:eu-west-1:{ACCOUNT}:training-job/{name(1)}"},
        expected,
    )
    assert handler.handle_event(event("Create", handle=wait_handle), client) == {
        "PhysicalResourceId": name(1),
        "Data": {"TrainingJobName": name(1)},
    }
    assert wait_handle.signals == []
    assert expected["EnableNetworkIsolation"] is True
    assert expected["StoppingCondition"] == {"MaxRuntimeInSeconds": 1200}
    assert "EnableManagedSpotTraining" not in expected
    assert "CheckpointConfig" not in expected
    assert [c["ChannelName"] for c in expected["InputDataConfig"]] == ["training", "validation"]


def test_spot_jobs_of_one_input_set_share_a_checkpoint_folder(sagemaker, wait_handle):
    """Attempt 2 (after a rollback stopped attempt 1) resumes from attempt 1's checkpoint."""
    client, stubber = sagemaker
    spot = {
        **PROPERTIES,
        "UseSpot": "true",
        "MaxWaitTimeInSeconds": "2400",
        "CheckpointS3Uri": "s3://models-bucket/checkpoints/",
    }
    expect_describe(stubber, name(1), "Stopped")
    stubber.add_client_error("describe_training_job", **NOT_FOUND)
    request = handler.create_request(spot, name(2))
    stubber.add_response("create_training_job", {"TrainingJobArn": "arn:x"}, request)
    result = handler.handle_event(event("Create", spot, handle=wait_handle), client)
    assert result["PhysicalResourceId"] == name(2)
    assert request["EnableManagedSpotTraining"] is True
    assert request["StoppingCondition"] == {
        "MaxRuntimeInSeconds": 1200,
        "MaxWaitTimeInSeconds": 2400,
    }
    assert request["CheckpointConfig"] == {"S3Uri": f"s3://models-bucket/checkpoints/{STEM}/"}
    assert handler.create_request(spot, name(1))["CheckpointConfig"] == request["CheckpointConfig"]


def test_a_completed_job_reused_after_a_rollback_releases_the_wait_at_once(sagemaker, wait_handle):
    """Its state-change event is long gone: the custom resource signals SUCCESS itself."""
    client, stubber = sagemaker
    expect_describe(stubber, name(1), "Completed")
    result = handler.handle_event(event("Create", handle=wait_handle), client)
    assert result["PhysicalResourceId"] == name(1)
    assert wait_handle.signals == [
        {
            "UniqueId": name(1),
            "Status": "SUCCESS",
            "Reason": f"training job {name(1)} completed",
            "Data": name(1),
        }
    ]
    assert wait_handle.content_types == [""], "the pre-signed URL was signed without one"


def test_a_running_job_of_the_same_inputs_is_adopted_and_left_to_its_event(sagemaker, wait_handle):
    client, stubber = sagemaker
    expect_describe(stubber, name(1), "InProgress")
    result = handler.handle_event(event("Create", handle=wait_handle), client)
    assert result["PhysicalResourceId"] == name(1)
    assert wait_handle.signals == []


@pytest.mark.parametrize("status", ["Failed", "Stopped", "Stopping"])
def test_create_skips_names_of_failed_or_stopped_jobs(sagemaker, wait_handle, status):
    client, stubber = sagemaker
    expect_describe(stubber, name(1), status)
    stubber.add_client_error("describe_training_job", **NOT_FOUND)
    stubber.add_response("create_training_job", {"TrainingJobArn": "arn:x"}, _any_request(name(2)))
    result = handler.handle_event(event("Create", handle=wait_handle), client)
    assert result["PhysicalResourceId"] == name(2)
    assert wait_handle.signals == []


def test_create_gives_up_after_many_unusable_names(sagemaker, wait_handle):
    client, stubber = sagemaker
    for attempt in range(1, handler.MAX_ATTEMPTS + 1):
        expect_describe(stubber, name(attempt), "Failed")
    with pytest.raises(
        RuntimeError, match=re.escape("change an input, e.g. the 'seed' hyperparameter")
    ):
        handler.handle_event(event("Create", handle=wait_handle), client)


def _any_request(job: str) -> dict:
    request = handler.create_request(PROPERTIES, job)
    return {key: (ANY if key != "TrainingJobName" else job) for key in request}


def test_an_update_under_a_new_wait_condition_keeps_the_job_and_releases_the_wait(
    sagemaker, wait_handle
):
    """A longer max_run_seconds needs a new wait condition but no new model."""
    client, stubber = sagemaker
    longer = {**PROPERTIES, "MaxRuntimeInSeconds": "7200"}
    expect_describe(stubber, name(1), "Completed")
    result = handler.handle_event(
        event("Update", longer, physical_id=name(1), old_properties=PROPERTIES, handle=wait_handle),
        client,
    )
    assert result["PhysicalResourceId"] == name(1)
    assert [signal["Status"] for signal in wait_handle.signals] == ["SUCCESS"]


def test_a_changed_update_starts_a_new_job(sagemaker, wait_handle):
    client, stubber = sagemaker
    stem = job_name_stem("custom-sm", content_hash({**PROPERTIES, "DataVersion": "bundled-9"}))
    assert stem != STEM
    changed = {**PROPERTIES, "DataVersion": "bundled-9", "JobNameStem": stem}
    new = handler.job_name(stem, 1)
    stubber.add_client_error("describe_training_job", **NOT_FOUND)
    stubber.add_response(
        "create_training_job", {"TrainingJobArn": "arn:x"}, handler.create_request(changed, new)
    )
    result = handler.handle_event(
        event(
            "Update", changed, physical_id=name(1), old_properties=PROPERTIES, handle=wait_handle
        ),
        client,
    )
    assert result["PhysicalResourceId"] == new


def test_delete_stops_a_running_job(sagemaker):
    client, stubber = sagemaker
    expect_describe(stubber, name(1), "InProgress")
    stubber.add_response("stop_training_job", {}, {"TrainingJobName": name(1)})
    assert handler.handle_event(event("Delete", physical_id=name(1)), client) == {
        "PhysicalResourceId": name(1)
    }


def test_delete_of_a_completed_job_keeps_it(sagemaker):
    """The replaced job after an update: its model may still serve until the switch-over."""
    client, stubber = sagemaker
    expect_describe(stubber, name(1), "Completed")
    assert handler.handle_event(event("Delete", physical_id=name(1)), client) == {
        "PhysicalResourceId": name(1)
    }


def test_delete_after_a_failed_create_needs_no_job(sagemaker):
    client, _stubber = sagemaker
    physical_id = "custom-sm-training/TrainingJob failed: not a job name"
    assert handler.handle_event(event("Delete", physical_id=physical_id), client) == {
        "PhysicalResourceId": physical_id
    }


def state_change(handle: WaitHandle, job: str) -> dict:
    """What the rule's input transformer hands the signal Lambda."""
    return {"TrainingJobName": job, "WaitHandle": handle.url}


def test_a_completed_job_signals_success(sagemaker, wait_handle):
    client, stubber = sagemaker
    expect_describe(stubber, name(1), "Completed", SecondaryStatus="Completed")
    handler.handle_state_change(state_change(wait_handle, name(1)), client)
    assert [(s["Status"], s["UniqueId"]) for s in wait_handle.signals] == [("SUCCESS", name(1))]


def test_a_failed_job_signals_failure_with_sagemakers_reason(sagemaker, wait_handle):
    client, stubber = sagemaker
    reason = "AlgorithmError: column 'label' not found in /opt/ml/input/data/training/train.csv"
    expect_describe(stubber, name(1), "Failed", SecondaryStatus="Failed", FailureReason=reason)
    handler.handle_state_change(state_change(wait_handle, name(1)), client)
    assert wait_handle.signals == [
        {
            "UniqueId": name(1),
            "Status": "FAILURE",
            "Reason": f"training job {name(1)} failed: {reason}",
            "Data": name(1),
        }
    ]


def test_a_stopped_job_signals_failure(sagemaker, wait_handle):
    client, stubber = sagemaker
    expect_describe(stubber, name(1), "Stopped", SecondaryStatus="MaxRuntimeExceeded")
    handler.handle_state_change(state_change(wait_handle, name(1)), client)
    [signal] = wait_handle.signals
    assert signal["Status"] == "FAILURE"
    assert signal["Reason"] == (
        f"training job {name(1)} was stopped before it completed: MaxRuntimeExceeded"
    )


def test_a_long_failure_reason_is_cut_to_fit_a_stack_event(sagemaker, wait_handle):
    client, stubber = sagemaker
    expect_describe(stubber, name(1), "Failed", FailureReason="x" * 5000)
    handler.handle_state_change(state_change(wait_handle, name(1)), client)
    assert len(wait_handle.signals[0]["Reason"]) == handler.MAX_REASON_CHARACTERS


@pytest.mark.parametrize("status", ["InProgress", "Stopping"])
def test_an_event_for_a_job_that_has_not_ended_signals_nothing(sagemaker, wait_handle, status):
    """An event is a hint; the job's own description decides (events can come late)."""
    client, stubber = sagemaker
    expect_describe(stubber, name(1), status)
    assert handler.handle_state_change(state_change(wait_handle, name(1)), client) is None
    assert wait_handle.signals == []


def result_event(request_type: str = "Create", **extra) -> dict:
    properties = {"TrainingJobName": name(1)}
    return event(request_type, properties, resource_type=handler.RESULT_RESOURCE_TYPE, **extra)


def test_the_result_is_the_models_location_and_the_final_metrics(sagemaker):
    client, stubber = sagemaker
    metrics = [
        {"MetricName": "Validation Accuracy", "Value": 0.97, "Timestamp": datetime(2026, 1, 1)},
        {"MetricName": "Validation Loss", "Value": 0.08, "Timestamp": datetime(2026, 1, 1)},
    ]
    expect_describe(
        stubber, name(1), "Completed", SecondaryStatus="Completed", FinalMetricDataList=metrics
    )
    result = handler.handle_event(result_event(), client)
    assert result["PhysicalResourceId"] == name(1)
    data = result["Data"]
    assert data["ModelDataUrl"] == (
        f"s3://models-bucket/training-output/{name(1)}/output/model.tar.gz"
    )
    assert json.loads(data["FinalMetrics"]) == {
        "Validation Accuracy": 0.97,
        "Validation Loss": 0.08,
    }


def test_a_result_of_a_job_without_a_model_fails(sagemaker):
    client, stubber = sagemaker
    expect_describe(stubber, name(1), "Failed")
    with pytest.raises(RuntimeError, match=f"training job {name(1)} is Failed, not Completed"):
        handler.handle_event(result_event(), client)


def test_deleting_a_result_calls_nothing(sagemaker):
    client, _stubber = sagemaker
    deleted = handler.handle_event(result_event("Delete", physical_id=name(1)), client)
    assert deleted == {"PhysicalResourceId": name(1)}


def test_other_errors_are_not_mistaken_for_a_missing_job(sagemaker, wait_handle):
    client, stubber = sagemaker
    stubber.add_client_error(
        "describe_training_job",
        service_error_code="AccessDeniedException",
        service_message="not authorized to perform sagemaker:DescribeTrainingJob",
    )
    with pytest.raises(Exception, match="AccessDenied"):
        handler.handle_event(event("Create", handle=wait_handle), client)
