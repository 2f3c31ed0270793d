"""Records the AWS calls a program makes through boto3, and says what IAM sees of each one.

The deploy rehearsal and the IAM tests run our real code (the client Lambda, the training-job
handler, CDK's handlers) against local stand-ins and record every call it makes. `iam_requests`
turns a recorded call into the IAM requests AWS authorizes for it (action, resource ARN,
condition keys), so each can be checked against the policy of the role that makes it. A call
with no entry in the table below raises: new code cannot add an AWS call that nobody checked.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from local.iam_policy import Request

# The environment variable that tells a handler process where to append its calls.
CALLS_FILE_VARIABLE = "REHEARSAL_AWS_CALLS_FILE"


@dataclass(frozen=True)
class AwsCall:
    """One API call as the program made it: boto3's service name, operation and parameters."""

    service: str
    operation: str
    params: dict[str, Any]

    def to_json(self) -> str:
        return json.dumps(
            {"service": self.service, "operation": self.operation, "params": self.params},
            default=lambda value: f"<{type(value).__name__}>",
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, line: str) -> AwsCall:
        data = json.loads(line)
        return cls(data["service"], data["operation"], data["params"])


# botocore fires this for every call a client makes, with the API parameters as given.
CALL_EVENT = "before-parameter-build.*.*"


def recorder(sink: Callable[[AwsCall], None]) -> Callable[..., None]:
    """An event handler that passes each call to `sink`."""

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        sink(AwsCall(model.service_model.service_name, model.name, _plain(params)))

    return record


@contextmanager
def recording(session: boto3.Session | None = None) -> Iterator[list[AwsCall]]:
    """Every call made by clients of `session` (boto3's default one) while the block runs.

    Clients copy their session's event hooks when they are created: only clients created
    inside the block are recorded.
    """
    session = session or boto3._get_default_session()
    calls: list[AwsCall] = []
    session.events.register(CALL_EVENT, recorder(calls.append), unique_id="aws-calls-recorder")
    try:
        yield calls
    finally:
        session.events.unregister(CALL_EVENT, unique_id="aws-calls-recorder")


def append_calls(path: Path, calls: list[AwsCall]) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.writelines(call.to_json() + "\n" for call in calls)


def read_calls(path: Path) -> list[AwsCall]:
    if not path.exists():
        return []
    return [AwsCall.from_json(line) for line in path.read_text().splitlines() if line]


def _plain(params: dict[str, Any]) -> dict[str, Any]:
    """Parameters without bodies and streams, which IAM never sees."""
    return {key: value for key, value in params.items() if key not in ("Body",)}


@dataclass(frozen=True)
class Place:
    """Where the calls go: ARNs are built for this partition, account and region."""

    account: str
    region: str
    partition: str = "aws"

    def arn(self, service: str, resource: str, *, region: bool = True) -> str:
        where = f"{self.region}:{self.account}" if region else ":"
        return f"arn:{self.partition}:{service}:{where}:{resource}"

    def s3_object(self, params: dict[str, Any], key_param: str = "Key") -> str:
        return f"arn:{self.partition}:s3:::{params['Bucket']}/{params[key_param]}"

    def s3_bucket(self, params: dict[str, Any]) -> str:
        return f"arn:{self.partition}:s3:::{params['Bucket']}"


def _object(action: str, versioned_action: str | None = None) -> Mapper:
    def requests(call: AwsCall, place: Place) -> list[Request]:
        chosen = versioned_action if versioned_action and call.params.get("VersionId") else action
        return [Request(chosen, place.s3_object(call.params))]

    return requests


def _list_bucket(call: AwsCall, place: Place) -> list[Request]:
    context = {"s3:prefix": call.params["Prefix"]} if "Prefix" in call.params else {}
    return [Request("s3:ListBucket", place.s3_bucket(call.params), context)]


def _bucket(action: str) -> Mapper:
    return lambda call, place: [Request(action, place.s3_bucket(call.params))]


def _copy_object(call: AwsCall, place: Place) -> list[Request]:
    source = call.params["CopySource"]
    if isinstance(source, str):
        bucket, _, key = source.lstrip("/").partition("/")
        source = {"Bucket": bucket, "Key": key}
    read = "s3:GetObjectVersion" if source.get("VersionId") else "s3:GetObject"
    return [
        Request(read, place.s3_object(source)),
        Request("s3:PutObject", place.s3_object(call.params)),
    ]


def _sagemaker(action: str, parameter: str, kind: str) -> Mapper:
    """The one SageMaker resource the call names in ``parameter``, e.g. ``endpoint/<name>``."""

    def requests(call: AwsCall, place: Place) -> list[Request]:
        # SageMaker writes names in lower case in its ARNs.
        name = call.params[parameter].lower()
        return [Request(action, place.arn("sagemaker", f"{kind}/{name}"))]

    return requests


def _endpoint(action: str) -> Mapper:
    return _sagemaker(action, "EndpointName", "endpoint")


def _training_job(action: str) -> Mapper:
    return _sagemaker(action, "TrainingJobName", "training-job")


def _transform_job(action: str) -> Mapper:
    return _sagemaker(action, "TransformJobName", "transform-job")


def _create_training_job(call: AwsCall, place: Place) -> list[Request]:
    """CreateTrainingJob also passes its role to SageMaker, which IAM authorizes separately."""
    return [
        *_training_job("sagemaker:CreateTrainingJob")(call, place),
        Request(
            "iam:PassRole",
            call.params["RoleArn"],
            {"iam:PassedToService": "sagemaker.amazonaws.com"},
        ),
    ]


Mapper = Callable[[AwsCall, Place], list[Request]]

# (boto3 service, operation) -> the IAM requests AWS authorizes for it.
IAM_REQUESTS: dict[tuple[str, str], Mapper] = {
    ("s3", "GetObject"): _object("s3:GetObject", "s3:GetObjectVersion"),
    ("s3", "HeadObject"): _object("s3:GetObject", "s3:GetObjectVersion"),
    ("s3", "PutObject"): _object("s3:PutObject"),
    ("s3", "CreateMultipartUpload"): _object("s3:PutObject"),
    ("s3", "UploadPart"): _object("s3:PutObject"),
    ("s3", "CompleteMultipartUpload"): _object("s3:PutObject"),
    ("s3", "AbortMultipartUpload"): _object("s3:AbortMultipartUpload"),
    ("s3", "DeleteObject"): _object("s3:DeleteObject", "s3:DeleteObjectVersion"),
    ("s3", "CopyObject"): _copy_object,
    ("s3", "ListObjectsV2"): _list_bucket,
    ("s3", "ListObjects"): _list_bucket,
    ("s3", "GetBucketNotificationConfiguration"): _bucket("s3:GetBucketNotification"),
    ("s3", "PutBucketNotificationConfiguration"): _bucket("s3:PutBucketNotification"),
    ("sagemaker-runtime", "InvokeEndpoint"): _endpoint("sagemaker:InvokeEndpoint"),
    # SageMaker reads the input object with the endpoint's execution role, not the caller's.
    ("sagemaker-runtime", "InvokeEndpointAsync"): _endpoint("sagemaker:InvokeEndpointAsync"),
    ("sagemaker", "CreateTrainingJob"): _create_training_job,
    ("sagemaker", "DescribeTrainingJob"): _training_job("sagemaker:DescribeTrainingJob"),
    ("sagemaker", "StopTrainingJob"): _training_job("sagemaker:StopTrainingJob"),
    # A transform job runs with its model's execution role: the caller passes no role.
    ("sagemaker", "CreateTransformJob"): _transform_job("sagemaker:CreateTransformJob"),
    ("sagemaker", "DescribeTransformJob"): _transform_job("sagemaker:DescribeTransformJob"),
    ("sagemaker", "DescribeEndpoint"): _endpoint("sagemaker:DescribeEndpoint"),
    ("sagemaker", "DescribeEndpointConfig"): _sagemaker(
        "sagemaker:DescribeEndpointConfig", "EndpointConfigName", "endpoint-config"
    ),
}


class UnmappedCall(LookupError):
    """A call nobody has told the IAM check about; add it to IAM_REQUESTS."""


def iam_requests(call: AwsCall, place: Place) -> list[Request]:
    mapper = IAM_REQUESTS.get((call.service, call.operation))
    if mapper is None:
        raise UnmappedCall(
            f"{call.service}:{call.operation} has no IAM mapping in local/aws_calls.py; add "
            "the action(s), resource ARN and condition keys AWS authorizes for it"
        )
    return mapper(call, place)
