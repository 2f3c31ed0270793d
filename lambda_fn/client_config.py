"""Configuration of the client Lambda, read from environment variables only.

Parsed once per cold start; every problem is reported together, naming the
variable, the value found and what is allowed, so a bad deployment explains
itself in the first log line instead of failing somewhere deep in a request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

MIB = 1024 * 1024
# SageMaker real-time endpoints reject request payloads above 6 MB, serverless ones above 4 MB.
ENDPOINT_PAYLOAD_LIMIT = 6 * MIB
SERVERLESS_PAYLOAD_LIMIT = 4 * MIB
# An asynchronous request may carry 1 GB, but the model server answers it from memory and takes
# at most 100 MB (its SAGEMAKER_MAX_PAYLOAD_IN_MB bound).
ASYNC_PAYLOAD_LIMIT = 100 * MIB
# S3 multipart parts must be at least 5 MiB (except the last).
MIN_PART_BYTES = 5 * MIB
RETRY_MODES = ("standard", "adaptive")
# Set by the client stack: where results go, and the endpoint to call.
OUTPUT_BUCKET_VARIABLE = "INFERENCE_OUTPUT_BUCKET"
ENDPOINT_VARIABLE = "MODEL_ENDPOINT"
# How the endpoint is hosted (the serving stack's `serving.mode`); it sets the defaults below.
SERVING_MODE_VARIABLE = "SERVING_MODE"
# The completion handler's: notifications for inputs elsewhere are not this app's.
INPUT_BUCKET_VARIABLE = "INFERENCE_INPUT_BUCKET"
# Set when big files go to batch transform (see ``TransformSettings``); absent: they stream.
BATCH_THRESHOLD_VARIABLE = "BATCH_THRESHOLD_BYTES"
TRANSFORM_STAGING_VARIABLE = "TRANSFORM_STAGING"
TRANSFORM_JOB_PREFIX_VARIABLE = "TRANSFORM_JOB_PREFIX"


def transform_job_names(job_prefix: str) -> str:
    """How every batch transform job's name starts: the IAM policies and the event rule
    match it (standard library only, so the CDK app imports it too)."""
    return f"{job_prefix}-batch-"


TRANSFORM_INSTANCE_TYPE_VARIABLE = "TRANSFORM_INSTANCE_TYPE"
# The client streams this much per second per vCPU, cold start included, measured under
# Lambda's CPU share for 512 MB (`benchmarks/RESULTS.md`, "How big a file the client
# streams"); Lambda gives a function one vCPU at 1,769 MB, a share below.
STREAM_BYTES_PER_VCPU_SECOND = 66 * MIB
LAMBDA_MB_PER_VCPU = 1769
# A file goes to batch transform when streaming it would take more than this share of the
# function's timeout: the endpoint, S3 and a cold start may each be slower than measured.
STREAM_TIMEOUT_SHARE = 0.5


class ConfigError(Exception):
    """The function's environment variables are missing or invalid."""


@dataclass(frozen=True)
class IntSetting:
    """An integer environment variable: its default and bounds, the one statement of them
    (the CDK app checks the config's values against the same bounds at synth)."""

    variable: str
    default: int
    low: int
    high: int

    def read(self, env: Mapping[str, str], problems: list[str]) -> int:
        raw = env.get(self.variable, "").strip()
        if not raw:
            return self.default
        allowed = f"allowed: {self.low}..{self.high}"
        try:
            value = int(raw)
        except ValueError:
            problems.append(f"{self.variable}={raw!r} is not an integer ({allowed})")
            return self.default
        if not self.low <= value <= self.high:
            problems.append(f"{self.variable}={value} is out of range ({allowed})")
        return value


REQUEST_CONCURRENCY = IntSetting("REQUEST_CONCURRENCY", 4, 1, 16)
OUTPUT_PART_BYTES = IntSetting("OUTPUT_PART_BYTES", 8 * MIB, MIN_PART_BYTES, 100 * MIB)
# A batch transform job's instances and the largest mini-batch it sends the model server
# (SageMaker's MaxPayloadInMB; the server takes at most 100 MB in one request).
TRANSFORM_INSTANCE_COUNT = IntSetting("TRANSFORM_INSTANCE_COUNT", 1, 1, 100)
TRANSFORM_MAX_PAYLOAD_MB = IntSetting("TRANSFORM_MAX_PAYLOAD_MB", 6, 1, 100)


def streaming_limit_bytes(memory_mb: int, timeout_seconds: int) -> int:
    """The largest file the client streams by default: what it reads in half its timeout at
    the measured rate, for the CPU share Lambda gives ``memory_mb`` (at most one vCPU counts:
    the client's parsing runs on one thread)."""
    vcpus = min(memory_mb, LAMBDA_MB_PER_VCPU) / LAMBDA_MB_PER_VCPU
    return int(STREAM_BYTES_PER_VCPU_SECOND * vcpus * timeout_seconds * STREAM_TIMEOUT_SHARE)


@dataclass(frozen=True)
class ModeDefaults:
    """What calling an endpoint of one hosting mode takes: the largest request it accepts
    (with the default kept below it), and how hard to retry."""

    max_request_bytes: IntSetting
    max_attempts: IntSetting
    retry_mode: str


MODES = {
    "realtime": ModeDefaults(
        IntSetting("MAX_REQUEST_BYTES", 5 * MIB, 1024, ENDPOINT_PAYLOAD_LIMIT),
        IntSetting("MAX_ATTEMPTS", 5, 1, 20),
        "standard",
    ),
    # A serverless endpoint starts cold after idling and throttles beyond its maximum
    # concurrency: more attempts, and adaptive retries that slow this client down on throttling.
    "serverless": ModeDefaults(
        IntSetting("MAX_REQUEST_BYTES", 3 * MIB, 1024, SERVERLESS_PAYLOAD_LIMIT),
        IntSetting("MAX_ATTEMPTS", 8, 1, 20),
        "adaptive",
    ),
    # The whole object is one request, read by SageMaker from S3: the limit is on the object.
    "async": ModeDefaults(
        IntSetting("MAX_REQUEST_BYTES", ASYNC_PAYLOAD_LIMIT, 1024, ASYNC_PAYLOAD_LIMIT),
        IntSetting("MAX_ATTEMPTS", 5, 1, 20),
        "standard",
    ),
}


@dataclass(frozen=True)
class TransformSettings:
    """Files above ``threshold_bytes`` are scored by a batch transform job: its instances, its
    mini-batch bound, where its inputs and outputs are staged and what its jobs are named."""

    threshold_bytes: int
    staging: str  # s3://bucket/prefix/
    job_prefix: str
    instance_type: str = "ml.m5.large"
    instance_count: int = TRANSFORM_INSTANCE_COUNT.default
    max_payload_mb: int = TRANSFORM_MAX_PAYLOAD_MB.default


@dataclass(frozen=True)
class ClientConfig:
    """Everything the handler needs to know about its deployment."""

    output_bucket: str
    endpoint_name: str
    serving_mode: str = "realtime"
    max_request_bytes: int = MODES["realtime"].max_request_bytes.default
    request_concurrency: int = REQUEST_CONCURRENCY.default
    max_attempts: int = MODES["realtime"].max_attempts.default
    retry_mode: str = "standard"
    output_part_bytes: int = OUTPUT_PART_BYTES.default
    # None: every file is scored by the endpoint, whatever its size.
    transform: TransformSettings | None = None


def load_config(env: Mapping[str, str]) -> ClientConfig:
    """Build the configuration from ``env`` or raise ``ConfigError`` listing every problem."""
    problems: list[str] = []
    required = {}
    for name in (OUTPUT_BUCKET_VARIABLE, ENDPOINT_VARIABLE):
        required[name] = env.get(name, "").strip()
        if not required[name]:
            problems.append(f"{name} is not set (required)")
    mode = env.get(SERVING_MODE_VARIABLE, "").strip() or "realtime"
    if mode not in MODES:
        problems.append(f"{SERVING_MODE_VARIABLE}={mode!r} is not one of {', '.join(MODES)}")
        mode = "realtime"
    defaults = MODES[mode]
    retry_mode = env.get("RETRY_MODE", "").strip() or defaults.retry_mode
    if retry_mode not in RETRY_MODES:
        problems.append(f"RETRY_MODE={retry_mode!r} is not one of {', '.join(RETRY_MODES)}")
    config = ClientConfig(
        output_bucket=required[OUTPUT_BUCKET_VARIABLE],
        endpoint_name=required[ENDPOINT_VARIABLE],
        serving_mode=mode,
        max_request_bytes=defaults.max_request_bytes.read(env, problems),
        request_concurrency=REQUEST_CONCURRENCY.read(env, problems),
        max_attempts=defaults.max_attempts.read(env, problems),
        retry_mode=retry_mode,
        output_part_bytes=OUTPUT_PART_BYTES.read(env, problems),
        transform=_transform_settings(env, problems),
    )
    if problems:
        raise ConfigError("invalid Lambda configuration: " + "; ".join(problems))
    return config


def _transform_settings(env: Mapping[str, str], problems: list[str]) -> TransformSettings | None:
    raw = env.get(BATCH_THRESHOLD_VARIABLE, "").strip()
    if not raw:
        return None
    threshold = IntSetting(BATCH_THRESHOLD_VARIABLE, 0, 1, 5 * 1024**4).read(env, problems)
    found = {
        name: env.get(name, "").strip()
        for name in (
            TRANSFORM_STAGING_VARIABLE,
            TRANSFORM_JOB_PREFIX_VARIABLE,
            TRANSFORM_INSTANCE_TYPE_VARIABLE,
        )
    }
    for name, value in found.items():
        if not value:
            problems.append(f"{name} is not set (required with {BATCH_THRESHOLD_VARIABLE})")
    staging = found[TRANSFORM_STAGING_VARIABLE]
    if staging and not (staging.startswith("s3://") and staging.endswith("/")):
        problems.append(f"{TRANSFORM_STAGING_VARIABLE}={staging!r} is not an s3://bucket/prefix/")
    return TransformSettings(
        threshold_bytes=threshold,
        staging=staging,
        job_prefix=found[TRANSFORM_JOB_PREFIX_VARIABLE],
        instance_type=found[TRANSFORM_INSTANCE_TYPE_VARIABLE],
        instance_count=TRANSFORM_INSTANCE_COUNT.read(env, problems),
        max_payload_mb=TRANSFORM_MAX_PAYLOAD_MB.read(env, problems),
    )
