"""Configuration of the client Lambda, read from environment variables only.

Parsed once per cold start; every problem is reported together, naming the
variable, the value found and what is allowed, so a bad deployment explains
itself in the first log line instead of failing somewhere deep in a request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

MIB = 1024 * 1024
# SageMaker real-time endpoints reject request payloads above 6 MB.
ENDPOINT_PAYLOAD_LIMIT = 6 * MIB
# S3 multipart parts must be at least 5 MiB (except the last).
MIN_PART_BYTES = 5 * MIB
RETRY_MODES = ("standard", "adaptive")


class ConfigError(Exception):
    """The function's environment variables are missing or invalid."""


@dataclass(frozen=True)
class ClientConfig:
    """Everything the handler needs to know about its deployment."""

    output_bucket: str
    endpoint_name: str
    max_request_bytes: int = 5 * MIB
    request_concurrency: int = 4
    max_attempts: int = 5
    retry_mode: str = "standard"
    output_part_bytes: int = 8 * MIB


def _int_var(
    env: Mapping[str, str], name: str, default: int, low: int, high: int, problems: list[str]
) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        problems.append(f"{name}={raw!r} is not an integer (allowed: {low}..{high})")
        return default
    if not low <= value <= high:
        problems.append(f"{name}={value} is out of range (allowed: {low}..{high})")
    return value


def load_config(env: Mapping[str, str]) -> ClientConfig:
    """Build the configuration from ``env`` or raise ``ConfigError`` listing every problem."""
    problems: list[str] = []
    required = {}
    for name in ("INFERENCE_OUTPUT_BUCKET", "MODEL_ENDPOINT"):
        required[name] = env.get(name, "").strip()
        if not required[name]:
            problems.append(f"{name} is not set (required)")
    retry_mode = env.get("RETRY_MODE", "").strip() or "standard"
    if retry_mode not in RETRY_MODES:
        problems.append(f"RETRY_MODE={retry_mode!r} is not one of {', '.join(RETRY_MODES)}")
    config = ClientConfig(
        output_bucket=required["INFERENCE_OUTPUT_BUCKET"],
        endpoint_name=required["MODEL_ENDPOINT"],
        max_request_bytes=_int_var(
            env, "MAX_REQUEST_BYTES", 5 * MIB, 1024, ENDPOINT_PAYLOAD_LIMIT, problems
        ),
        request_concurrency=_int_var(env, "REQUEST_CONCURRENCY", 4, 1, 16, problems),
        max_attempts=_int_var(env, "MAX_ATTEMPTS", 5, 1, 20, problems),
        retry_mode=retry_mode,
        output_part_bytes=_int_var(
            env, "OUTPUT_PART_BYTES", 8 * MIB, MIN_PART_BYTES, 100 * MIB, problems
        ),
    )
    if problems:
        raise ConfigError("invalid Lambda configuration: " + "; ".join(problems))
    return config
