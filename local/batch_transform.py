"""SageMaker batch transform, in front of a real model container, for local runs.

A stand-in for the four SageMaker API calls the client and its transform handler make
(``DescribeEndpoint``, ``DescribeEndpointConfig``, ``CreateTransformJob``,
``DescribeTransformJob``; point boto3's ``sagemaker`` client here with
``AWS_ENDPOINT_URL_SAGEMAKER``), and a worker that runs each job as SageMaker documents it:

- the input is each key a ``ManifestFile`` lists (the one input type played here), read
  from an S3-compatible server;
- ``GET /execution-parameters`` of the container gives ``MaxConcurrentTransforms``,
  ``BatchStrategy`` and ``MaxPayloadInMB`` where the job sets none;
- ``SplitType=Line`` with ``MultiRecord``: whole lines, newline included, are packed into
  mini-batches of at most ``MaxPayloadInMB`` and POSTed to ``/invocations`` with the job's
  ``ContentType`` and ``Accept``, ``MaxConcurrentTransforms`` at a time, each retried
  ``InvocationsMaxRetries`` times;
- ``AssembleWith=Line``: the answers, in input order, each followed by a newline, become
  ``<S3OutputPath>/<key relative to the manifest's prefix>.out``;
- a 4xx answer fails the job with ``ClientError: See job logs for more information``, a 5xx
  or no answer after the retries with ``AlgorithmError``, a missing input with
  ``ClientError``; the container's message goes to the job's log (``logs``);
- when a job ends, SageMaker's "SageMaker Transform Job State Change" event is kept for
  whoever plays EventBridge (``drain`` returns them): deliver late, twice, or not at all.

``fail_next(n, reason)`` makes the next n jobs fail as SageMaker itself might (no capacity,
an internal error) without running; ``fail_invocations(n, status)`` answers the next n
mini-batches with ``status`` instead of the container; ``throttle(n)`` answers the next n API
calls with 400 ``ThrottlingException``. All emulate the AWS side.
"""

from __future__ import annotations

import http.client
import json
import queue
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from local.services import Stoppable

ACCOUNT, REGION = "123456789012", "us-east-1"
DETAIL_TYPE = "SageMaker Transform Job State Change"
CONTAINER_TIMEOUT_SECONDS = 600.0
READ_CHUNK_BYTES = 8 * 1024 * 1024
MB = 1024 * 1024


class ApiError(Exception):
    """An error answer of the SageMaker API: its code and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class JobEvent:
    """One state-change event, as EventBridge hands it to a target Lambda."""

    event: dict[str, Any]

    @property
    def job_name(self) -> str:
        return self.event["detail"]["TransformJobName"]


@dataclass
class BatchTransform(Stoppable):
    """One account's transform jobs on one endpoint's model."""

    s3: Any
    container_url: str
    endpoint_name: str
    model_name: str = "local-model"
    logs: dict[str, list[str]] = field(default_factory=dict)
    # Mini-batches sent to the container, as (job name, bytes), in the order they were sent.
    invocations: list[tuple[str, int]] = field(default_factory=list)
    _jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    _queue: queue.Queue[str | threading.Event | None] = field(default_factory=queue.Queue)
    _events: list[JobEvent] = field(default_factory=list)
    _job_faults: list[str] = field(default_factory=list)
    _invocation_faults: list[int] = field(default_factory=list)
    _throttled: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: _Api | None = None
    _threads: list[threading.Thread] = field(default_factory=list)

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self, port: int = 0) -> BatchTransform:
        self._server = _Api(("127.0.0.1", port), _Handler)
        self._server.service = self
        for target, name in ((self._server.serve_forever, "api"), (self._run, "jobs")):
            thread = threading.Thread(target=target, name=f"batch-transform-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._queue.put(None)
        if self._server:
            self._server.shutdown()
            self._server.server_close()
        for thread in self._threads:
            thread.join()

    def fail_next(self, count: int, reason: str) -> None:
        with self._lock:
            self._job_faults.extend([reason] * count)

    def fail_invocations(self, count: int, status: int = 500) -> None:
        with self._lock:
            self._invocation_faults.extend([status] * count)

    def throttle(self, count: int) -> None:
        with self._lock:
            self._throttled += count

    def throttled(self) -> bool:
        """Whether this API call is one of those `throttle` asked for."""
        with self._lock:
            if self._throttled:
                self._throttled -= 1
                return True
            return False

    def drain(self, timeout: float = 600.0) -> list[JobEvent]:
        """Wait until every job started so far has ended; the events not yet drained."""
        done = threading.Event()
        self._queue.put(done)
        if not done.wait(timeout):
            raise TimeoutError(f"transform jobs still running after {timeout} s")
        with self._lock:
            events, self._events = self._events, []
        return events

    def job(self, name: str) -> dict[str, Any]:
        with self._lock:
            if name not in self._jobs:
                raise ApiError(
                    "ValidationException", f"Could not find requested job with name {name}"
                )
            return json.loads(json.dumps(self._jobs[name]))

    # The API calls, by name.

    def DescribeEndpoint(self, request: dict[str, Any]) -> dict[str, Any]:
        name = request["EndpointName"]
        if name != self.endpoint_name:
            raise ApiError("ValidationException", f'Could not find endpoint "{name}".')
        return {
            "EndpointName": name,
            "EndpointArn": _arn("endpoint", name),
            "EndpointConfigName": f"{name}-config",
            "EndpointStatus": "InService",
            "CreationTime": _epoch(),
            "LastModifiedTime": _epoch(),
        }

    def DescribeEndpointConfig(self, request: dict[str, Any]) -> dict[str, Any]:
        name = request["EndpointConfigName"]
        if name != f"{self.endpoint_name}-config":
            raise ApiError(
                "ValidationException", f'Could not find endpoint configuration "{name}".'
            )
        return {
            "EndpointConfigName": name,
            "EndpointConfigArn": _arn("endpoint-config", name),
            "ProductionVariants": [{"VariantName": "AllTraffic", "ModelName": self.model_name}],
            "CreationTime": _epoch(),
        }

    def CreateTransformJob(self, request: dict[str, Any]) -> dict[str, Any]:
        name = request["TransformJobName"]
        if request["ModelName"] != self.model_name:
            raise ApiError("ValidationException", f'Could not find model "{request["ModelName"]}".')
        with self._lock:
            if name in self._jobs:
                raise ApiError(
                    "ResourceInUse", "Job name must be unique within an AWS account and region."
                )
            self._jobs[name] = {
                **request,
                "TransformJobArn": _arn("transform-job", name),
                "TransformJobStatus": "InProgress",
                "CreationTime": _epoch(),
            }
        self._queue.put(name)
        return {"TransformJobArn": _arn("transform-job", name)}

    def DescribeTransformJob(self, request: dict[str, Any]) -> dict[str, Any]:
        return self.job(request["TransformJobName"])

    # The worker.

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if isinstance(item, threading.Event):
                item.set()
                continue
            job = self.job(item)
            with self._lock:
                fault = self._job_faults.pop(0) if self._job_faults else None
            status, reason = ("Failed", fault) if fault else self.run_job(job)
            with self._lock:
                ended = self._jobs[item]
                ended.update(TransformJobStatus=status, TransformEndTime=_epoch())
                if reason:
                    ended["FailureReason"] = reason
                detail = json.loads(json.dumps(ended))
                self._events.append(JobEvent(_event(detail)))

    def run_job(self, job: dict[str, Any]) -> tuple[str, str | None]:
        """Run one job as `DescribeTransformJob` shows it (also one another SageMaker stand-in
        holds); its final status and failure reason."""
        name = job["TransformJobName"]
        log = self.logs.setdefault(name, [])
        try:
            parameters = {**self._execution_parameters(), **_job_parameters(job)}
        except OSError as error:
            log.append(f"the container did not answer GET /execution-parameters: {error}")
            return "Failed", "AlgorithmError: See job logs for more information"
        try:
            prefix, keys = self._inputs(job["TransformInput"]["DataSource"]["S3DataSource"])
        except Exception as error:  # SageMaker reports any failure to read its input
            log.append(f"could not read the input: {error}")
            return "Failed", "ClientError: See job logs for more information"
        output = job["TransformOutput"]
        for key in keys:
            bucket, _, key_name = key.partition("/")
            try:
                body = self.s3.get_object(Bucket=bucket, Key=key_name)["Body"]
            except Exception as error:
                log.append(f"could not read s3://{key}: {error}")
                return "Failed", "ClientError: See job logs for more information"
            batches = _mini_batches(
                body.iter_chunks(READ_CHUNK_BYTES), parameters["MaxPayloadInMB"]
            )
            answers, failure = self._invoke_all(name, job, parameters, batches, log)
            if failure:
                return "Failed", failure
            out_bucket, _, out_prefix = output["S3OutputPath"].removeprefix("s3://").partition("/")
            relative = key[len(prefix) :]
            self.s3.put_object(
                Bucket=out_bucket,
                Key=f"{out_prefix.rstrip('/')}/{relative}.out",
                # "Line" adds a newline after each answer, also one that ends with its own.
                Body=b"".join(answer + b"\n" for answer in answers),
            )
        return "Completed", None

    def _inputs(self, source: dict[str, Any]) -> tuple[str, list[str]]:
        """The manifest's prefix and its keys, as `bucket/key`."""
        if source["S3DataType"] != "ManifestFile":
            raise ValueError(f"S3DataType {source['S3DataType']} is not played here")
        bucket, _, key = source["S3Uri"].removeprefix("s3://").partition("/")
        manifest = json.loads(self.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        prefix = manifest[0]["prefix"].removeprefix("s3://")
        return prefix, [prefix + entry for entry in manifest[1:]]

    def _invoke_all(
        self,
        name: str,
        job: dict[str, Any],
        parameters: dict[str, Any],
        batches: Iterator[bytes],
        log: list[str],
    ) -> tuple[list[bytes], str | None]:
        """Every mini-batch's answer, in order, or the job's failure reason."""
        content_type = job["TransformInput"].get("ContentType", "")
        accept = job["TransformOutput"].get("Accept", "")
        retries = job.get("ModelClientConfig", {}).get("InvocationsMaxRetries", 0)
        answers: list[bytes] = []
        with ThreadPoolExecutor(parameters["MaxConcurrentTransforms"]) as pool:
            window: queue.Queue[Any] = queue.Queue()
            pending = 0
            for batch in batches:
                window.put(pool.submit(self._invoke, name, batch, content_type, accept, retries))
                pending += 1
                if pending >= parameters["MaxConcurrentTransforms"] * 2:
                    failure = _collect(window.get().result(), answers, log)
                    pending -= 1
                    if failure:
                        return answers, failure
            while pending:
                failure = _collect(window.get().result(), answers, log)
                pending -= 1
                if failure:
                    return answers, failure
        return answers, None

    def _invoke(
        self, name: str, batch: bytes, content_type: str, accept: str, retries: int
    ) -> tuple[int, bytes]:
        with self._lock:
            self.invocations.append((name, len(batch)))
        for _ in range(retries + 1):
            with self._lock:
                injected = self._invocation_faults.pop(0) if self._invocation_faults else None
            if injected is not None:
                status, body = injected, b"injected failure"
            else:
                try:
                    status, body = self._post(batch, content_type, accept)
                except OSError as error:
                    status, body = 0, str(error).encode()
            if 200 <= status < 300 or 400 <= status < 500:
                break
        return status, body

    def _post(self, body: bytes, content_type: str, accept: str) -> tuple[int, bytes]:
        container = urlsplit(self.container_url)
        connection = http.client.HTTPConnection(
            container.hostname, container.port, timeout=CONTAINER_TIMEOUT_SECONDS
        )
        try:
            connection.request(
                "POST",
                "/invocations",
                body=body,
                headers={"Content-Type": content_type, "Accept": accept},
            )
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def _execution_parameters(self) -> dict[str, Any]:
        container = urlsplit(self.container_url)
        connection = http.client.HTTPConnection(container.hostname, container.port, timeout=10)
        try:
            connection.request("GET", "/execution-parameters")
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        found = json.loads(body) if response.status == 200 else {}
        return {
            "MaxConcurrentTransforms": found.get("MaxConcurrentTransforms", 1),
            "BatchStrategy": found.get("BatchStrategy", "MultiRecord"),
            "MaxPayloadInMB": found.get("MaxPayloadInMB", 6),
        }


def container_environment(max_payload_mb: int | str) -> dict[str, str]:
    """What SageMaker adds to a model's container environment when a transform job runs it
    with ``BatchStrategy=MultiRecord``."""
    return {
        "SAGEMAKER_BATCH": "true",
        "SAGEMAKER_BATCH_STRATEGY": "MULTI_RECORD",
        "SAGEMAKER_MAX_PAYLOAD_IN_MB": str(max_payload_mb),
    }


def _job_parameters(job: dict[str, Any]) -> dict[str, Any]:
    return {
        name: job[name]
        for name in ("MaxConcurrentTransforms", "BatchStrategy", "MaxPayloadInMB")
        if job.get(name)
    }


def _collect(result: tuple[int, bytes], answers: list[bytes], log: list[str]) -> str | None:
    status, body = result
    if 200 <= status < 300:
        answers.append(body)
        return None
    log.append(
        f"Bad HTTP status received from algorithm: {status}: {body.decode('utf-8', 'replace')}"
    )
    kind = "ClientError" if 400 <= status < 500 else "AlgorithmError"
    return f"{kind}: See job logs for more information"


def _mini_batches(chunks: Iterator[bytes], max_payload_mb: int) -> Iterator[bytes]:
    """Whole lines, newline included, packed up to the payload bound (a longer line alone)."""
    limit, batch, pending = max_payload_mb * MB, bytearray(), b""
    for chunk in chunks:
        data = pending + chunk
        end = data.rfind(b"\n") + 1  # the complete lines end here
        pending, start = data[end:], 0
        while start < end:
            stop = data.rfind(b"\n", start, min(end, start + limit - len(batch))) + 1
            if stop > start:  # the lines that fit
                batch += data[start:stop]
                start = stop
                if start == end:
                    break
            elif not batch:  # one line longer than the bound goes alone
                stop = data.find(b"\n", start) + 1
                batch += data[start:stop]
                start = stop
            yield bytes(batch)
            batch.clear()
    if batch and len(batch) + len(pending) > limit:
        yield bytes(batch)
        batch.clear()
    batch += pending
    if batch.strip():
        yield bytes(batch)


def _event(detail: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": DETAIL_TYPE,
        "source": "aws.sagemaker",
        "account": ACCOUNT,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [detail["TransformJobArn"]],
        "detail": detail,
    }


def _arn(kind: str, name: str) -> str:
    return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:{kind}/{name.lower()}"


def _epoch() -> float:
    return datetime.now(UTC).timestamp()


class _Api(ThreadingHTTPServer):
    daemon_threads = True
    service: BatchTransform


class _Handler(BaseHTTPRequestHandler):
    """SageMaker's JSON protocol: `X-Amz-Target: SageMaker.<Action>`, a JSON body."""

    server: _Api
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: a test's output is its own."""

    def do_POST(self) -> None:
        action = self.headers.get("X-Amz-Target", "").removeprefix("SageMaker.")
        request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        method = getattr(self.server.service, action, None) if action[:1].isupper() else None
        try:
            if method is None:
                raise ApiError("UnknownOperationException", f"{action} is not played here")
            if self.server.service.throttled():
                raise ApiError("ThrottlingException", "Rate exceeded")
            status, answer = 200, method(request)
        except ApiError as error:
            status, answer = 400, {"__type": error.code, "message": str(error)}
        body = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
