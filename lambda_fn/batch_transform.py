"""Score a file too large to stream with a SageMaker batch transform job.

The client stages two small objects under the job's own prefix, then starts the job on the
model the endpoint serves now:

- ``manifest.json`` names exactly the input key (an ``S3Prefix`` input would also read every
  key that merely starts with it);
- ``request.json`` says which input version the job scores and in which format, and the
  attempt: all the completion handler needs, so a state-change event that arrives twice,
  or before the client logged the start, is handled alike.

SageMaker splits the file into lines (``SplitType=Line``), sends the model server mini-batches
of at most ``MaxPayloadInMB`` (``MultiRecord``), and writes the answers, one line each
(``AssembleWith=Line``), under ``output/``. A CSV header is the first line of the first
mini-batch, where the server accepts it, as it does atop every streamed request.

A job's name is derived from the input version and the attempt, and SageMaker refuses a name
it has seen: the same event delivered twice starts one job.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from botocore.exceptions import ClientError
from client_config import TransformSettings, transform_job_names
from s3_lookup import s3_location
from source_reader import Source

# Each mini-batch may be retried this often by SageMaker before the job fails.
INVOCATION_RETRIES = 2
INVOCATION_TIMEOUT_SECONDS = 600
REQUEST_FILE = "request.json"
MANIFEST_FILE = "manifest.json"
OUTPUT_FOLDER = "output/"


@dataclass(frozen=True)
class TransformRequest:
    """One attempt at scoring one input version by batch transform."""

    source: Source
    content_type: str
    attempt: int

    def job_name(self, job_prefix: str) -> str:
        """``<prefix>-batch-<digest>-<attempt>``: at most 46 characters (SageMaker takes 63)."""
        identity = f"{self.source.bucket}/{self.source.key}/{self.source.version_id}"
        digest = hashlib.sha256(f"{identity}/{self.source.etag}".encode()).hexdigest()[:16]
        return f"{transform_job_names(job_prefix)}{digest}-{self.attempt}"

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False).encode()

    @classmethod
    def from_json(cls, body: bytes) -> TransformRequest:
        raw = json.loads(body)
        return cls(Source(**raw["source"]), raw["content_type"], int(raw["attempt"]))


def job_folder(settings: TransformSettings, job_name: str) -> str:
    """``s3://<staging>/<job name>/``: the request, the manifest and the output."""
    return f"{settings.staging}{job_name}/"


def served_model(sagemaker: Any, endpoint_name: str) -> str:
    """The model the endpoint serves now: a job scores exactly what streaming would have."""
    endpoint = sagemaker.describe_endpoint(EndpointName=endpoint_name)
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    return config["ProductionVariants"][0]["ModelName"]


def start_transform(
    settings: TransformSettings,
    s3: Any,
    sagemaker: Any,
    endpoint_name: str,
    request: TransformRequest,
) -> tuple[str, bool]:
    """Stage the request and start its job; the job's name, and False if it already existed
    (the same event delivered again)."""
    name = request.job_name(settings.job_prefix)
    folder = job_folder(settings, name)
    bucket, prefix = s3_location(folder)
    manifest = [{"prefix": f"s3://{request.source.bucket}/"}, request.source.key]
    for file_name, body in (
        (MANIFEST_FILE, json.dumps(manifest, ensure_ascii=False).encode()),
        (REQUEST_FILE, request.to_json()),
    ):
        s3.put_object(
            Bucket=bucket, Key=prefix + file_name, Body=body, ContentType="application/json"
        )
    try:
        sagemaker.create_transform_job(
            TransformJobName=name,
            ModelName=served_model(sagemaker, endpoint_name),
            BatchStrategy="MultiRecord",
            MaxPayloadInMB=settings.max_payload_mb,
            ModelClientConfig={
                "InvocationsTimeoutInSeconds": INVOCATION_TIMEOUT_SECONDS,
                "InvocationsMaxRetries": INVOCATION_RETRIES,
            },
            TransformInput={
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "ManifestFile",
                        "S3Uri": folder + MANIFEST_FILE,
                    }
                },
                "ContentType": request.content_type,
                "CompressionType": "None",
                "SplitType": "Line",
            },
            TransformOutput={
                "S3OutputPath": folder + OUTPUT_FOLDER.rstrip("/"),
                "Accept": request.content_type,
                "AssembleWith": "Line",
            },
            TransformResources={
                "InstanceType": settings.instance_type,
                "InstanceCount": settings.instance_count,
            },
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceInUse":
            return name, False
        raise
    return name, True
