"""Environment variables: required ones named when missing, knobs validated with their range."""

from __future__ import annotations

import re

import pytest
from client_config import MIB, ClientConfig, ConfigError, load_config

REQUIRED = {"INFERENCE_OUTPUT_BUCKET": "out-bucket", "MODEL_ENDPOINT": "endpoint"}


def test_defaults() -> None:
    assert load_config(REQUIRED) == ClientConfig(
        output_bucket="out-bucket",
        endpoint_name="endpoint",
        max_request_bytes=5 * MIB,
        request_concurrency=4,
        max_attempts=5,
        retry_mode="standard",
        output_part_bytes=8 * MIB,
    )


def test_missing_required_variables_are_all_named() -> None:
    with pytest.raises(ConfigError) as raised:
        load_config({"MODEL_ENDPOINT": "  "})
    assert "INFERENCE_OUTPUT_BUCKET is not set (required)" in str(raised.value)
    assert "MODEL_ENDPOINT is not set (required)" in str(raised.value)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("MAX_REQUEST_BYTES", str(6 * MIB + 1), "MAX_REQUEST_BYTES=6291457 is out of range"),
        ("MAX_REQUEST_BYTES", "5MB", "MAX_REQUEST_BYTES='5MB' is not an integer (allowed: 1024.."),
        ("REQUEST_CONCURRENCY", "0", "REQUEST_CONCURRENCY=0 is out of range (allowed: 1..16)"),
        ("MAX_ATTEMPTS", "99", "MAX_ATTEMPTS=99 is out of range (allowed: 1..20)"),
        ("RETRY_MODE", "legacy", "RETRY_MODE='legacy' is not one of standard, adaptive"),
        ("OUTPUT_PART_BYTES", "1048576", "OUTPUT_PART_BYTES=1048576 is out of range"),
    ],
)
def test_invalid_knob_names_variable_value_and_allowed_range(
    name: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config({**REQUIRED, name: value})


def test_the_6_mb_endpoint_limit_itself_is_allowed() -> None:
    assert load_config({**REQUIRED, "MAX_REQUEST_BYTES": str(6 * MIB)}).max_request_bytes == 6 * MIB


def test_a_serverless_endpoint_gets_smaller_requests_and_longer_adaptive_retries() -> None:
    """It takes 4 MB per request, starts cold after idling and throttles past its maximum
    concurrency."""
    serverless = {**REQUIRED, "SERVING_MODE": "serverless"}
    config = load_config(serverless)
    assert (config.max_request_bytes, config.max_attempts, config.retry_mode) == (
        3 * MIB,
        8,
        "adaptive",
    )
    assert load_config({**serverless, "MAX_REQUEST_BYTES": str(4 * MIB)}).max_request_bytes == (
        4 * MIB
    )
    with pytest.raises(ConfigError, match=re.escape("MAX_REQUEST_BYTES=4194305 is out of range")):
        load_config({**serverless, "MAX_REQUEST_BYTES": str(4 * MIB + 1)})
    explicit = load_config({**serverless, "RETRY_MODE": "standard", "MAX_ATTEMPTS": "3"})
    assert (explicit.retry_mode, explicit.max_attempts) == ("standard", 3)


def test_an_unknown_serving_mode_is_named() -> None:
    with pytest.raises(ConfigError, match=re.escape("SERVING_MODE='batch' is not one of realtime")):
        load_config({**REQUIRED, "SERVING_MODE": "batch"})


def test_handler_reports_a_missing_variable_at_invocation_not_import(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import lambda_function

    monkeypatch.delenv("MODEL_ENDPOINT", raising=False)
    monkeypatch.setenv("INFERENCE_OUTPUT_BUCKET", "out-bucket")
    lambda_function._processor.cache_clear()
    try:
        with pytest.raises(ConfigError, match="MODEL_ENDPOINT is not set"):
            lambda_function.lambda_handler({"Records": []}, None)
    finally:
        lambda_function._processor.cache_clear()


def test_the_request_limit_is_the_endpoint_limit_the_model_server_enforces() -> None:
    """Two programs deployed apart each state SageMaker's real-time payload limit: the same."""
    from model_kit.serving.config import REALTIME_MAX_PAYLOAD_MB

    from lambda_fn.client_config import ENDPOINT_PAYLOAD_LIMIT

    assert ENDPOINT_PAYLOAD_LIMIT == REALTIME_MAX_PAYLOAD_MB * MIB
