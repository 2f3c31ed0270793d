"""Custom-resource handler that runs one SageMaker training job per distinct model input.

`on_event` starts (or reuses) the job; `is_complete` polls DescribeTrainingJob until it ends.
The job name is a content hash of everything that shapes the model, so CloudFormation sees
the same physical id, and SageMaker trains nothing, when a redeploy changes nothing that
matters; a changed input yields a new name, a new job and a replacement that CloudFormation
cleans up by deleting (stopping, if it still runs) the old one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from typing import Any

import boto3
from botocore.exceptions import ClientError

LOG = logging.getLogger()
LOG.setLevel(logging.INFO)

# Properties that decide what model comes out; everything else (role, spot, timeouts) does not.
MODEL_SHAPING_PROPERTIES = (
    "TrainingImage",
    "HyperParameters",
    "Channels",
    "DataVersion",
    "OutputS3Uri",
    "InstanceType",
    "InstanceCount",
    "VolumeSizeInGB",
)
# A physical id that is not a job name (e.g. after a failed create) names no job.
JOB_NAME_PATTERN = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
HASH_LENGTH = 16
MAX_JOB_NAME_LENGTH = 63
# A name whose job failed or was stopped (or is being stopped, e.g. by a rollback) can never
# be used again; try the next suffix.
MAX_ATTEMPTS = 20
RUNNING = ("InProgress", "Stopping")
UNUSABLE = ("Failed", "Stopped", "Stopping")


def content_hash(properties: dict[str, Any]) -> str:
    """A stable digest of the model-shaping properties (CloudFormation passes strings)."""
    shaping = {key: properties.get(key) for key in MODEL_SHAPING_PROPERTIES}
    canonical = json.dumps(shaping, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:HASH_LENGTH]


def job_name(properties: dict[str, Any], attempt: int) -> str:
    """`<prefix>-<hash>-<attempt>`, cut to SageMaker's 63-character limit."""
    suffix = f"-{content_hash(properties)}-{attempt}"
    prefix = properties["JobNamePrefix"][: MAX_JOB_NAME_LENGTH - len(suffix)].rstrip("-")
    return f"{prefix}{suffix}"


def _describe(client: Any, name: str) -> dict[str, Any] | None:
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


def _matches_hash(physical_id: str, properties: dict[str, Any]) -> bool:
    """True when the current job was named from the same model-shaping inputs."""
    return f"-{content_hash(properties)}-" in physical_id


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
        request["CheckpointConfig"] = {"S3Uri": properties["CheckpointS3Uri"]}
    return request


def _start(client: Any, properties: dict[str, Any]) -> str:
    """Starts the job, or adopts one of the same inputs that is running or has completed."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        name = job_name(properties, attempt)
        existing = _describe(client, name)
        if existing is None:
            client.create_training_job(**create_request(properties, name))
            LOG.info("started training job %s", name)
            return name
        status = existing["TrainingJobStatus"]
        if status not in UNUSABLE:
            LOG.info("reusing training job %s (%s)", name, status)
            return name
        LOG.info("training job %s is %s; trying the next name", name, status)
    raise RuntimeError(
        f"{MAX_ATTEMPTS} training jobs for these inputs already failed or were stopped "
        f"(the last is {name}); change an input, e.g. the 'seed' hyperparameter"
    )


def on_event(event: dict[str, Any], _context: Any = None) -> dict[str, Any]:
    """Lambda entry point of the provider's on-event handler."""
    return handle_event(event, boto3.client("sagemaker"))


def is_complete(event: dict[str, Any], _context: Any = None) -> dict[str, Any]:
    """Lambda entry point of the provider's is-complete handler."""
    return check_complete(event, boto3.client("sagemaker"))


def handle_event(event: dict[str, Any], client: Any) -> dict[str, Any]:
    """Create/Update start a job unless the inputs are unchanged; Delete stops a running job."""
    request_type = event["RequestType"]
    properties = event["ResourceProperties"]
    if request_type == "Delete":
        name = event["PhysicalResourceId"]
        job = _describe(client, name)
        if job is not None and job["TrainingJobStatus"] == "InProgress":
            client.stop_training_job(TrainingJobName=name)
            LOG.info("stopping training job %s", name)
        return {"PhysicalResourceId": name}
    if request_type == "Update" and _matches_hash(event["PhysicalResourceId"], properties):
        LOG.info("model inputs unchanged; keeping %s", event["PhysicalResourceId"])
        return {"PhysicalResourceId": event["PhysicalResourceId"]}
    return {"PhysicalResourceId": _start(client, properties)}


def final_metrics(job: dict[str, Any]) -> dict[str, float]:
    return {metric["MetricName"]: metric["Value"] for metric in job.get("FinalMetricDataList", [])}


def check_complete(event: dict[str, Any], client: Any) -> dict[str, Any]:
    """Polls the job; a failed or stopped job fails the deployment with SageMaker's reason."""
    name = event["PhysicalResourceId"]
    job = _describe(client, name)
    if event["RequestType"] == "Delete":
        return {"IsComplete": job is None or job["TrainingJobStatus"] not in RUNNING}
    if job is None:
        raise RuntimeError(f"training job {name} does not exist")
    status = job["TrainingJobStatus"]
    if status in RUNNING:
        LOG.info("training job %s: %s/%s", name, status, job.get("SecondaryStatus"))
        return {"IsComplete": False}
    if status == "Failed":
        raise RuntimeError(f"training job {name} failed: {job.get('FailureReason', 'no reason')}")
    if status == "Stopped":
        reason = job.get("FailureReason") or job.get("SecondaryStatus", "")
        raise RuntimeError(f"training job {name} was stopped before it completed: {reason}")
    metrics = final_metrics(job)
    LOG.info("training job %s completed: %s", name, metrics)
    return {
        "IsComplete": True,
        "Data": {
            "TrainingJobName": name,
            "TrainingJobArn": job["TrainingJobArn"],
            "ModelDataUrl": job["ModelArtifacts"]["S3ModelArtifacts"],
            "FinalMetrics": json.dumps(metrics, sort_keys=True),
        },
    }
