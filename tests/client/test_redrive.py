"""`python -m tools.redrive` against moto's SQS and S3, with Lambda's Invoke checked by
botocore's Stubber (moto cannot run a function without Docker), and SageMaker's
DescribeTransformJob answered by one."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from local.moto_server import MotoServer
from local.s3_event import object_created_record
from stacks.client_stack import ClientNames
from tools.redrive import ObjectRef, redrive

NAMES = ClientNames.for_prefix("custom-sm")
FUNCTION = NAMES.function


@dataclass
class Account:
    sqs: Any
    s3: Any
    lambda_: Any
    stubber: Stubber
    sagemaker: Stubber
    queue_url: str
    bucket: str

    def put(self, key: str) -> dict[str, Any]:
        put = self.s3.put_object(Bucket=self.bucket, Key=key, Body=b"a,b\n1,2\n")
        return object_created_record(
            self.bucket, key, 8, etag=put["ETag"], version_id=put["VersionId"]
        )

    def fail(self, *records: dict[str, Any], condition: str = "RetriesExhausted") -> dict:
        """What Lambda sends its on-failure destination for an event it gave up on."""
        payload = {"Records": list(records)}
        self.fail_payload(payload, condition)
        return payload

    def fail_payload(self, payload: dict[str, Any], condition: str = "RetriesExhausted") -> None:
        self.sqs.send_message(
            QueueUrl=self.queue_url,
            MessageBody=json.dumps(
                {
                    "version": "1.0",
                    "timestamp": "2026-11-30T12:00:00.000Z",
                    "requestContext": {
                        "requestId": str(uuid.uuid4()),
                        "functionArn": f"arn:aws:lambda:us-east-1:123456789012:function:{FUNCTION}",
                        "condition": condition,
                        "approximateInvokeCount": 3,
                    },
                    "requestPayload": payload,
                    "responseContext": {"statusCode": 200, "functionError": "Unhandled"},
                    "responsePayload": {"errorMessage": "endpoint unavailable"},
                }
            ),
        )

    def run(self, dry_run: bool = False):
        return redrive(
            sqs=self.sqs,
            lambda_=self.lambda_,
            s3=self.s3,
            sagemaker=self.sagemaker.client,
            queue_url=self.queue_url,
            names=NAMES,
            limit=100,
            dry_run=dry_run,
        )

    def queued(self) -> int:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url, AttributeNames=["ApproximateNumberOfMessages"]
        )
        return int(attributes["Attributes"]["ApproximateNumberOfMessages"])

    def expect_invoke(self, payload: dict[str, Any], function: str = FUNCTION) -> None:
        self.stubber.add_response(
            "invoke",
            {"StatusCode": 202},
            {"FunctionName": function, "InvocationType": "Event", "Payload": json.dumps(payload)},
        )


@pytest.fixture
def account(s3_server: MotoServer) -> Iterator[Account]:
    suffix = uuid.uuid4().hex[:10]
    sqs = boto3.client("sqs", endpoint_url=s3_server.url, region_name="us-east-1")
    s3 = boto3.client("s3", endpoint_url=s3_server.url, region_name="us-east-1")
    queue_url = sqs.create_queue(QueueName=f"failures-{suffix}")["QueueUrl"]
    bucket = f"input-{suffix}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    lambda_ = boto3.client("lambda", region_name="us-east-1")
    sagemaker = boto3.client("sagemaker", region_name="us-east-1")
    with Stubber(lambda_) as stubber, Stubber(sagemaker) as sagemaker_stubber:
        yield Account(sqs, s3, lambda_, stubber, sagemaker_stubber, queue_url, bucket)
        stubber.assert_no_pending_responses()
        sagemaker_stubber.assert_no_pending_responses()


def test_failed_events_are_resubmitted_and_removed(account: Account) -> None:
    first = account.fail(account.put("incoming/a.csv"))
    second = account.fail(account.put("incoming/b.csv"), account.put("incoming/c.csv"))
    account.expect_invoke(first)
    account.expect_invoke(second)

    report = account.run()

    assert [[ref.key for ref in refs] for refs in report.resubmitted] == [
        ["incoming/a.csv"],
        ["incoming/b.csv", "incoming/c.csv"],
    ]
    assert report.lines()[0] == "re-submitted 2 event(s), 3 object(s)"
    assert account.queued() == 0


def test_what_cannot_be_resubmitted_stays_in_the_queue_with_its_reason(account: Account) -> None:
    record = account.put("incoming/gone.csv")
    account.fail(record)
    version = record["s3"]["object"]["versionId"]
    account.s3.delete_object(Bucket=account.bucket, Key="incoming/gone.csv", VersionId=version)
    account.sqs.send_message(QueueUrl=account.queue_url, MessageBody="not json")

    report = account.run()

    assert report.resubmitted == []
    reasons = sorted(reason for _, reason in report.left)
    assert reasons == [
        f"every object is gone: {ObjectRef(account.bucket, 'incoming/gone.csv', version)}",
        "not an S3 event, an asynchronous notification or a state change of one of this "
        "app's transform jobs",
    ]
    assert account.queued() == 2, "left visible for the next run or a person"


def test_a_dry_run_resubmits_nothing_and_keeps_every_message(account: Account) -> None:
    account.fail(account.put("incoming/a.csv"), condition="EventAgeExceeded")

    report = account.run(dry_run=True)

    assert report.lines() == [
        "would re-submit 1 event(s), 1 object(s)",
        f"  s3://{account.bucket}/incoming/a.csv (version {report.resubmitted[0][0].version_id})",
    ]
    assert account.queued() == 1


def test_a_failed_completion_is_handed_back_to_the_completion_handler(account: Account) -> None:
    """An asynchronous result the completion handler could not publish (S3 was down, say)."""
    account.s3.put_object(Bucket=account.bucket, Key="async-inference/results/x-1.out", Body=b"1\n")
    message = {
        "invocationStatus": "Completed",
        "requestParameters": {"inputLocation": f"s3://{account.bucket}/incoming/a.csv"},
        "responseParameters": {
            "outputLocation": f"s3://{account.bucket}/async-inference/results/x-1.out"
        },
        "inferenceId": "x-1",
    }
    notification = {
        "Records": [{"EventSource": "aws:sns", "Sns": {"Message": json.dumps(message)}}]
    }
    account.fail_payload(notification)
    account.expect_invoke(notification, function=NAMES.completions)

    report = account.run()

    assert [[ref.key for ref in refs] for refs in report.resubmitted] == [
        ["async-inference/results/x-1.out"]
    ]
    assert account.queued() == 0


def transform_event(job_name: str) -> dict[str, Any]:
    return {
        "version": "0",
        "detail-type": "SageMaker Transform Job State Change",
        "source": "aws.sagemaker",
        "detail": {"TransformJobName": job_name, "TransformJobStatus": "Completed"},
    }


def describe_job(account: Account, job_name: str, output_path: str) -> None:
    account.sagemaker.add_response(
        "describe_transform_job",
        {
            "TransformJobName": job_name,
            "TransformJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:transform-job/{job_name}",
            "TransformJobStatus": "Completed",
            "ModelName": "model",
            "TransformInput": {
                "DataSource": {
                    "S3DataSource": {"S3DataType": "ManifestFile", "S3Uri": "s3://b/m.json"}
                }
            },
            "TransformOutput": {"S3OutputPath": output_path},
            "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
            "CreationTime": "2026-11-30T12:00:00Z",
        },
        {"TransformJobName": job_name},
    )


def test_a_transform_jobs_state_change_goes_back_to_the_transform_handler(
    account: Account,
) -> None:
    """Both ways it lands in the queue: the handler's on-failure record (it could not
    publish), and EventBridge's dead letter (it could not deliver): the bare event."""
    folder = "batch-transform/custom-sm-batch-0123456789abcdef-1/"
    account.s3.put_object(Bucket=account.bucket, Key=f"{folder}request.json", Body=b"{}")
    failed = transform_event("custom-sm-batch-0123456789abcdef-1")
    account.fail_payload(failed)
    account.sqs.send_message(QueueUrl=account.queue_url, MessageBody=json.dumps(failed))
    for _ in range(2):
        describe_job(
            account, "custom-sm-batch-0123456789abcdef-1", f"s3://{account.bucket}/{folder}output"
        )
        account.expect_invoke(failed, function=NAMES.transforms)

    report = account.run()

    assert [[str(ref) for ref in refs] for refs in report.resubmitted] == [
        [f"s3://{account.bucket}/{folder}request.json"]
    ] * 2
    assert account.queued() == 0


def test_a_state_change_of_a_job_not_staged_stays_in_the_queue(account: Account) -> None:
    account.fail_payload(transform_event("custom-sm-batch-fedcba9876543210-1"))
    describe_job(
        account,
        "custom-sm-batch-fedcba9876543210-1",
        f"s3://{account.bucket}/batch-transform/custom-sm-batch-fedcba9876543210-1/output",
    )

    report = account.run()

    assert report.resubmitted == []
    ((_, reason),) = report.left
    assert reason.startswith("every object is gone: s3://")
    assert account.queued() == 1
