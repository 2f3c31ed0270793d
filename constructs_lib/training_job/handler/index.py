"""The training job's Lambda handlers: the custom resources and the state-change signal.

`on_event` starts the job (or adopts one of the same inputs that is running or has
completed) and stops a running job on delete. CloudFormation then waits on a wait condition
(up to 12 hours, where a custom resource may take one) that `on_state_change` releases when
SageMaker's "Training Job State Change" event says the job has ended: SUCCESS once it
completed, FAILURE with SageMaker's reason otherwise. A job that had already ended when the
deploy came to it (reused after a rollback, or an unchanged job under a new wait condition)
is signalled by `on_event` itself, since no event will come for it. After the wait, a second
resource asks `on_event` where the job put its model and for its final metrics.

Job names are `<stem>-<attempt>`, the stem a digest of the model's inputs computed at synth:
an unchanged input set adopts its job, a changed one gets a new job.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.request
from typing import Any

import boto3
from botocore.exceptions import ClientError

LOG = logging.getLogger()
LOG.setLevel(logging.INFO)

# A physical id that is not a job name (e.g. after a failed create) names no job.
JOB_NAME_PATTERN = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
# A name whose job failed or was stopped (or is being stopped, e.g. by a rollback) can never
# be used again; try the next attempt.
MAX_ATTEMPTS = 20
UNUSABLE = ("Failed", "Stopped", "Stopping")
ENDED = ("Completed", "Failed", "Stopped")
RESULT_RESOURCE_TYPE = "Custom::SageMakerTrainingResult"
SIGNAL_TIMEOUT_SECONDS = 30
# CloudFormation shows a failure signal's reason in the stack event; keep it readable.
MAX_REASON_CHARACTERS = 2000


def job_name(stem: str, attempt: int) -> str:
    return f"{stem}-{attempt}"


def describe(client: Any, name: str) -> dict[str, Any] | None:
    """The job, or None when it does not exist.

    SageMaker answers ValidationException ("Requested resource not found", or "Could not find
    ..." as its other Describe calls word it) rather than the ResourceNotFound its API model
    declares; accept all of them.
    """
    if not JOB_NAME_PATTERN.fullmatch(name):
        return None
    try:
        return client.describe_training_job(TrainingJobName=name)
    except ClientError as error:
        code = error.response["Error"]["Code"]
        message = error.response["Error"].get("Message", "").lower()
        missing = "not found" in message or "could not find" in message
        if code == "ResourceNotFound" or (code == "ValidationException" and missing):
            return None
        raise


def create_request(properties: dict[str, Any], name: str) -> dict[str, Any]:
    """The CreateTrainingJob request for these resource properties."""
    stopping = {"MaxRuntimeInSeconds": int(properties["MaxRuntimeInSeconds"])}
    request: dict[str, Any] = {
        "TrainingJobName": name,
        "RoleArn": properties["RoleArn"],
        "HyperParameters": properties["HyperParameters"],
        "AlgorithmSpecification": {
            "TrainingImage": properties["TrainingImage"],
            "TrainingInputMode": "File",
            "MetricDefinitions": properties["MetricDefinitions"],
            "EnableSageMakerMetricsTimeSeries": True,
        },
        "InputDataConfig": [
            {
                "ChannelName": channel["ChannelName"],
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": channel["S3Uri"],
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
                "ContentType": "text/csv",
                "CompressionType": "None",
                "InputMode": "File",
            }
            for channel in properties["Channels"]
        ],
        "OutputDataConfig": {"S3OutputPath": properties["OutputS3Uri"]},
        "ResourceConfig": {
            "InstanceType": properties["InstanceType"],
            "InstanceCount": int(properties["InstanceCount"]),
            "VolumeSizeInGB": int(properties["VolumeSizeInGB"]),
        },
        "StoppingCondition": stopping,
        "EnableNetworkIsolation": True,
        "EnableInterContainerTrafficEncryption": True,
    }
    if str(properties.get("UseSpot")).lower() == "true":
        request["EnableManagedSpotTraining"] = True
        stopping["MaxWaitTimeInSeconds"] = int(properties["MaxWaitTimeInSeconds"])
        # One folder per input set, not per attempt: an attempt after a stopped one (a
        # rollback stops the job) resumes from the checkpoint the stopped one wrote.
        checkpoints = f"{properties['CheckpointS3Uri'].rstrip('/')}/{properties['JobNameStem']}/"
        request["CheckpointConfig"] = {"S3Uri": checkpoints}
    return request


def start(client: Any, properties: dict[str, Any]) -> dict[str, Any]:
    """Starts the job, or adopts one of the same inputs that is running or has completed.

    Returns the job as DescribeTrainingJob shows it; a job started now is InProgress.
    """
    stem = properties["JobNameStem"]
    for attempt in range(1, MAX_ATTEMPTS + 1):
        name = job_name(stem, attempt)
        existing = describe(client, name)
        if existing is None:
            client.create_training_job(**create_request(properties, name))
            LOG.info("started training job %s", name)
            return {"TrainingJobName": name, "TrainingJobStatus": "InProgress"}
        status = existing["TrainingJobStatus"]
        if status not in UNUSABLE:
            LOG.info("reusing training job %s (%s)", name, status)
            return existing
        LOG.info("training job %s is %s; trying the next name", name, status)
    raise RuntimeError(
        f"{MAX_ATTEMPTS} training jobs for these inputs already failed or were stopped "
        f"(the last is {name}); change an input, e.g. the 'seed' hyperparameter"
    )


def final_metrics(job: dict[str, Any]) -> dict[str, float]:
    return {metric["MetricName"]: metric["Value"] for metric in job.get("FinalMetricDataList", [])}


def wait_signal(job: dict[str, Any]) -> dict[str, str]:
    """The wait-condition signal for a job that has ended: SUCCESS, or FAILURE with
    SageMaker's reason, which CloudFormation shows in the wait condition's stack event."""
    name = job["TrainingJobName"]
    status = job["TrainingJobStatus"]
    signal = {"UniqueId": name, "Status": "FAILURE", "Data": name}
    if status == "Completed":
        return {**signal, "Status": "SUCCESS", "Reason": f"training job {name} completed"}
    if status == "Failed":
        reason = f"training job {name} failed: {job.get('FailureReason', 'no reason given')}"
    else:
        why = job.get("FailureReason") or job.get("SecondaryStatus", "")
        reason = f"training job {name} was stopped before it completed: {why}"
    return {**signal, "Reason": reason[:MAX_REASON_CHARACTERS]}


def send_signal(handle_url: str, signal: dict[str, str]) -> None:
    """PUT the signal to the wait condition handle's pre-signed URL.

    The URL was signed without a content type, so none may be sent. Signals with the same
    UniqueId count once: the starter and the event may both send one for the same job.
    """
    request = urllib.request.Request(
        handle_url,
        data=json.dumps(signal).encode(),
        method="PUT",
        headers={"Content-Type": ""},
    )
    with urllib.request.urlopen(request, timeout=SIGNAL_TIMEOUT_SECONDS) as response:
        response.read()
    LOG.info("signalled %s for %s: %s", signal["Status"], signal["UniqueId"], signal["Reason"])


def handle_event(event: dict[str, Any], client: Any) -> dict[str, Any]:
    """The job resource, or the result resource read once the wait is over."""
    if event["ResourceType"] == RESULT_RESOURCE_TYPE:
        return job_result(event, client)
    properties = event["ResourceProperties"]
    if event["RequestType"] == "Delete":
        name = event["PhysicalResourceId"]
        job = describe(client, name)
        if job is not None and job["TrainingJobStatus"] == "InProgress":
            client.stop_training_job(TrainingJobName=name)
            LOG.info("stopping training job %s", name)
        return {"PhysicalResourceId": name}
    job = start(client, properties)
    name = job["TrainingJobName"]
    if job["TrainingJobStatus"] in ENDED:
        send_signal(properties["WaitHandle"], wait_signal(job))
    return {"PhysicalResourceId": name, "Data": {"TrainingJobName": name}}


def job_result(event: dict[str, Any], client: Any) -> dict[str, Any]:
    """Where the completed job put its model, and its final metrics (nothing to delete)."""
    name = event["ResourceProperties"]["TrainingJobName"]
    if event["RequestType"] == "Delete":
        return {"PhysicalResourceId": event["PhysicalResourceId"]}
    job = describe(client, name)
    status = job["TrainingJobStatus"] if job else "missing"
    if job is None or status != "Completed":
        raise RuntimeError(f"training job {name} is {status}, not Completed: it has no model")
    return {
        "PhysicalResourceId": name,
        "Data": {
            "ModelDataUrl": job["ModelArtifacts"]["S3ModelArtifacts"],
            "FinalMetrics": json.dumps(final_metrics(job), sort_keys=True),
        },
    }


def handle_state_change(event: dict[str, Any], client: Any) -> dict[str, str] | None:
    """Signal the wait handle for the job the event names, as DescribeTrainingJob sees it.

    The event only says that something ended: the job's own description is the record (an
    event may be late or repeated; the job cannot be).
    """
    name = event["TrainingJobName"]
    job = describe(client, name)
    if job is None or job["TrainingJobStatus"] not in ENDED:
        LOG.info("training job %s has not ended (%s); nothing to signal", name, job)
        return None
    signal = wait_signal(job)
    send_signal(event["WaitHandle"], signal)
    return signal


def on_event(event: dict[str, Any], _context: Any = None) -> dict[str, Any]:
    """Lambda entry point of the custom resource (the CDK Provider's on-event handler)."""
    return handle_event(event, boto3.client("sagemaker"))


def on_state_change(event: dict[str, Any], _context: Any = None) -> dict[str, str] | None:
    """Lambda entry point of the EventBridge rule's target."""
    return handle_state_change(event, boto3.client("sagemaker"))
