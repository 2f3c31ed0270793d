"""SageMaker's asynchronous inference, in front of a real model container, for local runs.

`InvokeEndpointAsync` names an S3 object; SageMaker answers 202 at once, and later reads the
object, calls the container's `/invocations` with it, writes the answer to the endpoint
config's S3 output path (`<inference id>.out`) or the container's error body to its failure
path (`<inference id>-error.out`), and publishes a notification to the success or the error
topic. Here a worker thread does the same against an S3-compatible server, and keeps each
notification for whoever plays SNS (`drain` returns them), so a test or the demo delivers
them to the completion handler when it chooses: late, twice, or not at all.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# (status, content type, body) of the container's answer; raises OSError when unreachable.
Forward = Callable[[bytes, str, str], tuple[int, str, bytes]]


@dataclass(frozen=True)
class Notification:
    """One SNS notification: the topic ("success" or "error") and SageMaker's message."""

    topic: str
    message: dict[str, Any]

    def sns_event(self) -> dict[str, Any]:
        """The event SNS invokes a subscribed Lambda with."""
        return {
            "Records": [
                {
                    "EventSource": "aws:sns",
                    "EventVersion": "1.0",
                    "Sns": {
                        "Type": "Notification",
                        "TopicArn": f"arn:aws:sns:us-east-1:123456789012:async-{self.topic}",
                        "Message": json.dumps(self.message),
                    },
                }
            ]
        }


@dataclass(frozen=True)
class _Job:
    inference_id: str
    input_location: str
    content_type: str
    accept: str
    output_location: str
    failure_location: str
    received: str


@dataclass(frozen=True)
class _Marker:
    """Queued behind the invocations `drain` waits for."""

    done: threading.Event


@dataclass
class AsyncInference:
    """The queue of one asynchronous endpoint: S3 in, the container, S3 out, notifications."""

    s3: Any
    output_path: str  # s3://bucket/prefix/
    failure_path: str
    endpoint_name: str = ""
    _jobs: queue.Queue[_Job | _Marker | None] = field(default_factory=queue.Queue)
    _notifications: list[Notification] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _worker: threading.Thread | None = None

    def start(self, forward: Forward) -> AsyncInference:
        self._worker = threading.Thread(
            target=self._run, args=(forward,), name="async-inference", daemon=True
        )
        self._worker.start()
        return self

    def stop(self) -> None:
        self._jobs.put(None)
        if self._worker:
            self._worker.join()

    def submit(
        self, inference_id: str, input_location: str, content_type: str, accept: str
    ) -> tuple[str, str]:
        """Queue one invocation; its output and failure locations, as SageMaker answers."""
        output = f"{self.output_path.rstrip('/')}/{inference_id}.out"
        failure = f"{self.failure_path.rstrip('/')}/{inference_id}-error.out"
        received = _now()
        self._jobs.put(
            _Job(inference_id, input_location, content_type, accept, output, failure, received)
        )
        return output, failure

    def drain(self, timeout: float = 60.0) -> list[Notification]:
        """Wait until every queued invocation has ended; the notifications not yet drained."""
        done = threading.Event()
        self._jobs.put(_Marker(done))
        if not done.wait(timeout):
            raise TimeoutError(f"asynchronous invocations still running after {timeout} s")
        with self._lock:
            notifications, self._notifications = self._notifications, []
        return notifications

    def _run(self, forward: Forward) -> None:
        while (job := self._jobs.get()) is not None:
            if isinstance(job, _Marker):
                job.done.set()
                continue
            notification = self._invoke(job, forward)
            with self._lock:
                self._notifications.append(notification)

    def _invoke(self, job: _Job, forward: Forward) -> Notification:
        request = {
            "contentType": job.content_type,
            "endpointName": self.endpoint_name,
            "inputLocation": job.input_location,
        }
        base = {
            "awsRegion": "us-east-1",
            "receivedTime": job.received,
            "requestParameters": request,
            "inferenceId": job.inference_id,
            "eventVersion": "1.0",
            "eventSource": "aws:sagemaker",
            "eventName": "InferenceResult",
        }
        bucket, key = _location(job.input_location)
        try:
            body = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as error:  # SageMaker reports any failure to read the input
            return self._failed(job, base, f"ClientError: could not read the input: {error}", b"")
        try:
            status, reply_type, reply = forward(body, job.content_type, job.accept)
        except OSError as error:
            reason = f"ModelError: the model did not answer: {error}"
            return self._failed(job, base, reason, str(error).encode())
        if not 200 <= status < 300:
            side = ("ClientError", "client") if 400 <= status < 500 else ("ModelError", "server")
            reason = (
                f"{side[0]}: Received {side[1]} error ({status}) from model. See the SageMaker "
                "Endpoint logs in your account for more information."
            )
            return self._failed(job, base, reason, reply)
        out_bucket, out_key = _location(job.output_location)
        self.s3.put_object(Bucket=out_bucket, Key=out_key, Body=reply, ContentType=reply_type)
        message = {
            **base,
            "eventTime": _now(),
            "invocationStatus": "Completed",
            "responseParameters": {
                "contentType": reply_type,
                "outputLocation": job.output_location,
            },
        }
        return Notification("success", message)

    def _failed(self, job: _Job, base: dict[str, Any], reason: str, body: bytes) -> Notification:
        bucket, key = _location(job.failure_location)
        self.s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="text/plain")
        message = {
            **base,
            "eventTime": _now(),
            "invocationStatus": "Failed",
            "failureReason": reason,
            "responseParameters": {
                "contentType": "text/plain; charset=utf-8",
                "failureLocation": job.failure_location,
            },
        }
        return Notification("error", message)


def _location(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
