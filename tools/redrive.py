"""Re-submit the client's failed events once their cause is fixed, and say what was done.

Lambda sends an event it could not handle after its retries (or that grew too old) to the
client's failed-events queue, as an on-failure record holding the original event: an S3 event
of the client, an SNS notification of the completion handler (asynchronous endpoint), or a
batch transform job's state change of the transform handler. EventBridge sends a state change
it could not deliver there too, as the bare event. This command reads each message, checks
that the objects the event needs still exist (the exact versions an S3 event names; the result
or failure an asynchronous notification points to; the request the client staged beside a
transform job's output), invokes the function again with the original event, asynchronously
as S3, SNS or EventBridge did, and deletes the message once Lambda has accepted the event. A
message it cannot re-submit (none of these events, or every object it needs gone) stays in
the queue, with the reason printed.

    python -m tools.redrive [--stage prod | --name-prefix custom-sm] [--dry-run] [--max-messages N]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import boto3
from botocore.exceptions import ClientError

from stacks.client_stack import ClientNames
from stacks.config import STAGES_FILE, ConfigError, staged

ROOT = Path(__file__).resolve().parent.parent
# Long enough to re-submit one batch before another reader may see its messages again.
VISIBILITY_TIMEOUT_SECONDS = 120
BATCH = 10
TRANSFORM_EVENT = "SageMaker Transform Job State Change"


@dataclass(frozen=True)
class ObjectRef:
    bucket: str
    key: str
    version_id: str | None

    def __str__(self) -> str:
        version = f" (version {self.version_id})" if self.version_id else ""
        return f"s3://{self.bucket}/{self.key}{version}"


@dataclass
class Report:
    """What the run did, message by message."""

    resubmitted: list[list[ObjectRef]] = field(default_factory=list)
    left: list[tuple[str, str]] = field(default_factory=list)  # (message id, reason)
    dry_run: bool = False

    def lines(self) -> list[str]:
        verb = "would re-submit" if self.dry_run else "re-submitted"
        objects = sum(len(refs) for refs in self.resubmitted)
        out = [f"{verb} {len(self.resubmitted)} event(s), {objects} object(s)"]
        out += [f"  {ref}" for refs in self.resubmitted for ref in refs]
        if self.left:
            out.append(f"left {len(self.left)} message(s) in the queue:")
            out += [f"  {message_id}: {reason}" for message_id, reason in self.left]
        return out


def _records(payload: Any) -> list[Any]:
    """An event's records (S3's and SNS's events both hold a list of them)."""
    if not isinstance(payload, dict) or not isinstance(payload.get("Records"), list):
        return []
    return payload["Records"]


def s3_objects(payload: Any) -> list[ObjectRef]:
    """The objects an S3 event names; empty when the payload is not one."""
    refs = []
    for record in _records(payload):
        s3 = record.get("s3", {}) if isinstance(record, dict) else {}
        bucket, obj = s3.get("bucket", {}).get("name"), s3.get("object", {})
        if bucket and obj.get("key"):
            refs.append(ObjectRef(bucket, unquote_plus(obj["key"]), obj.get("versionId")))
    return refs


def notification_objects(payload: Any) -> list[ObjectRef]:
    """The result or failure each asynchronous notification of an SNS event points to."""
    refs = []
    for record in _records(payload):
        try:
            message = json.loads(record["Sns"]["Message"])
        except (KeyError, TypeError, json.JSONDecodeError):
            continue
        response = message.get("responseParameters", {}) if isinstance(message, dict) else {}
        location = response.get("outputLocation") or response.get("failureLocation")
        if isinstance(location, str) and location.startswith("s3://"):
            bucket, _, key = location.removeprefix("s3://").partition("/")
            refs.append(ObjectRef(bucket, key, None))
    return refs


def transform_objects(payload: Any, sagemaker: Any) -> list[ObjectRef]:
    """The request a transform job's state-change event needs: the one the client staged
    beside the job's output (`lambda_fn/batch_transform.py`); empty for another event."""
    if not isinstance(payload, dict) or payload.get("detail-type") != TRANSFORM_EVENT:
        return []
    name = payload.get("detail", {}).get("TransformJobName")
    if not isinstance(name, str) or not name:
        return []
    try:
        job = sagemaker.describe_transform_job(TransformJobName=name)
    except ClientError as error:
        if error.response["Error"]["Code"] == "ValidationException":  # no such job
            return []
        raise
    output = job["TransformOutput"]["S3OutputPath"].rstrip("/")
    bucket, _, key = output.removeprefix("s3://").removesuffix("output").partition("/")
    return [ObjectRef(bucket, f"{key}request.json", None)]


def exists(s3: Any, ref: ObjectRef) -> bool:
    extra = {"VersionId": ref.version_id} if ref.version_id else {}
    try:
        s3.head_object(Bucket=ref.bucket, Key=ref.key, **extra)
    except ClientError as error:
        # A HEAD answer has no body to name the error: S3 answers 404 for a missing key or
        # version, and 400 for a version id that is no version of it.
        if error.response["Error"]["Code"] in ("404", "400", "NoSuchKey", "NoSuchVersion"):
            return False
        raise
    return True


def messages(sqs: Any, queue_url: str, limit: int) -> Iterator[dict[str, Any]]:
    """Up to `limit` messages, each hidden from other readers while this run handles it."""
    received = 0
    while received < limit:
        batch = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=min(BATCH, limit - received),
            VisibilityTimeout=VISIBILITY_TIMEOUT_SECONDS,
            WaitTimeSeconds=1,
        ).get("Messages", [])
        if not batch:
            return
        received += len(batch)
        yield from batch


def redrive(
    *,
    sqs: Any,
    lambda_: Any,
    s3: Any,
    sagemaker: Any,
    queue_url: str,
    names: ClientNames,
    limit: int,
    dry_run: bool,
) -> Report:
    report = Report(dry_run=dry_run)
    seen: list[dict[str, Any]] = []
    for message in messages(sqs, queue_url, limit):
        seen.append(message)
        try:
            record = json.loads(message["Body"])
        except json.JSONDecodeError:
            record = None
        # Lambda's on-failure record holds the event; EventBridge's dead letter is the event.
        payload = record.get("requestPayload", record) if isinstance(record, dict) else None
        function, refs = names.function, s3_objects(payload)
        if not refs:
            function, refs = names.completions, notification_objects(payload)
        if not refs:
            function, refs = names.transforms, transform_objects(payload, sagemaker)
        if not refs:
            report.left.append(
                (
                    message["MessageId"],
                    "not an S3 event, an asynchronous notification or a state change of one "
                    "of this app's transform jobs",
                )
            )
            continue
        present = [ref for ref in refs if exists(s3, ref)]
        if not present:
            gone = ", ".join(map(str, refs))
            report.left.append((message["MessageId"], f"every object is gone: {gone}"))
            continue
        if not dry_run:
            lambda_.invoke(
                FunctionName=function, InvocationType="Event", Payload=json.dumps(payload)
            )
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        report.resubmitted.append(present)
    # What stays in the queue becomes visible again at once, for the next run or a person.
    left = {message_id for message_id, _ in report.left}
    for message in seen:
        if dry_run or message["MessageId"] in left:
            sqs.change_message_visibility(
                QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
            )
    return report


def name_prefix_of(stage: str | None) -> str:
    """The app's `name_prefix` as `cdk deploy` (with `-c stage=STAGE`) names it."""
    config = json.loads((ROOT / "cdk.json").read_text())["context"]["config"]
    if stage is not None:
        config = staged(config, stage, json.loads(STAGES_FILE.read_text()))
    return config["name_prefix"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--stage", help="the deployment's stage (`-c stage=...`), e.g. prod; default: none"
    )
    parser.add_argument(
        "--name-prefix", help="the app's config.name_prefix (default: cdk.json's, or the stage's)"
    )
    parser.add_argument("--dry-run", action="store_true", help="list, re-submit nothing")
    parser.add_argument("--max-messages", type=int, default=1000, help="stop after this many")
    args = parser.parse_args(argv)
    try:
        name_prefix = args.name_prefix or name_prefix_of(args.stage)
    except ConfigError as error:
        parser.error(str(error))
    names = ClientNames.for_prefix(name_prefix)
    sqs, lambda_, s3, sagemaker = (
        boto3.client(service) for service in ("sqs", "lambda", "s3", "sagemaker")
    )
    try:
        queue_url = sqs.get_queue_url(QueueName=names.failure_queue)["QueueUrl"]
    except ClientError as error:
        print(f"no queue {names.failure_queue}: {error}", file=sys.stderr)
        return 1
    report = redrive(
        sqs=sqs,
        lambda_=lambda_,
        s3=s3,
        sagemaker=sagemaker,
        queue_url=queue_url,
        names=names,
        limit=args.max_messages,
        dry_run=args.dry_run,
    )
    print("\n".join(report.lines()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
