"""The typed config: defaults from cdk.json, `-c` overrides, one failing case per rule."""

from __future__ import annotations

import json

import pytest

from app import build_app
from constructs_lib.training_job.settings import (
    LONGEST_TRAINING_WAIT_SECONDS,
    WAIT_CONDITION_LIMIT_SECONDS,
)
from stacks.config import (
    CONTEXT_KEY,
    STAGES_FILE,
    AppConfig,
    ConfigError,
    apply_overrides,
    staged,
)

from .cdk_synth import ROOT, context_with

SEED_METRIC = {"Name": "Validation Accuracy", "Regex": "val_accuracy: ([0-9\\.]+)"}


def parse(**overrides: object) -> AppConfig:
    """The config as `cdk synth -c config.a.b=value ...` would see it."""
    defaults = json.loads((ROOT / "cdk.json").read_text())["context"][CONTEXT_KEY]
    return AppConfig.parse(apply_overrides(defaults, overrides))


def test_defaults_follow_the_seed_where_it_is_valid():
    config = parse()
    assert config.training.instance_type == "ml.m4.xlarge"
    assert config.training.volume_size_gb == 5
    assert config.training.max_run_seconds == 1200
    assert config.training.use_spot is False
    assert config.training.max_wait_seconds is None
    assert SEED_METRIC in config.training.metric_definitions
    assert config.serving.instance_type.startswith("ml.")
    assert config.storage.dataset.is_bundled


def test_hyperparameters_are_the_exact_strings_sent_to_sagemaker():
    """cdk.json sets the common ones; each family's own take its defaults unless set."""
    assert parse().training.hyperparameters == {
        "early_stopping_rounds": "20",
        "learning_rate": "0.1",
        "num_iterations": "200",
        "seed": "42",
        "target": "label",
        "validation_fraction": "0.2",
    }
    family_own = {"config.training.hyperparameters.num_leaves": "63"}
    assert parse(**family_own).training.hyperparameters["num_leaves"] == "63"


def test_command_line_strings_are_typed():
    """`-c config.training.max_run_seconds=1800` arrives as a string."""
    config = parse(
        **{
            "config.training.max_run_seconds": "1800",
            "config.training.use_spot": "true",
            "config.training.max_wait_seconds": "2400",
            "config.training.hyperparameters.seed": 7,
            "config.serving.autoscaling.max_capacity": "4",
        }
    )
    assert config.training.max_run_seconds == 1800
    assert config.training.use_spot is True
    assert config.training.max_wait_seconds == 2400
    assert config.training.hyperparameters["seed"] == "7"
    assert config.serving.autoscaling.max_capacity == 4


def test_json_override_replaces_an_object():
    config = parse(**{"config.training.hyperparameters": '{"num_iterations": 50}'})
    assert config.training.hyperparameters == {"num_iterations": "50"}


def test_wait_budget_fits_the_wait_condition_limit():
    longest = parse(**{"config.training.max_run_seconds": LONGEST_TRAINING_WAIT_SECONDS})
    assert longest.training.wait_budget_seconds == WAIT_CONDITION_LIMIT_SECONDS == 12 * 3600


def test_ten_hours_of_training_fit_in_a_deploy():
    config = parse(**{"config.training.max_run_seconds": 10 * 3600})
    assert config.training.max_run_seconds == 36_000
    spot = parse(
        **{
            "config.training.use_spot": True,
            "config.training.max_run_seconds": 8 * 3600,
            "config.training.max_wait_seconds": 10 * 3600,
        }
    )
    assert spot.training.wait_budget_seconds == 36_600


def test_the_request_size_follows_the_serving_mode_unless_set():
    """Realtime endpoints take 6 MB per request, serverless ones 4 MB."""
    assert parse().client.max_request_bytes == 5 * 1024 * 1024
    serverless = parse(**{"config.serving.mode": "serverless"})
    assert serverless.serving.mode == "serverless"
    assert serverless.client.max_request_bytes == 3 * 1024 * 1024
    assert serverless.serving.serverless.memory_mb == 2048
    explicit = parse(**{"config.client.max_request_bytes": 6 * 1024 * 1024})
    assert explicit.client.max_request_bytes == 6 * 1024 * 1024


def test_the_batch_threshold_follows_what_the_client_streams_in_half_its_timeout():
    """66 MiB/s per vCPU; Lambda gives 1,769 MB one vCPU, and more memory no more speed."""
    mib = 1024 * 1024
    assert parse().client.batch_transform.threshold_bytes == int(66 * mib * 512 / 1769 * 150)
    short = parse(**{"config.client.timeout_seconds": 60, "config.client.memory_mb": 3538})
    assert short.client.batch_transform.threshold_bytes == int(66 * mib * 30)
    # Asynchronous: what one asynchronous request takes.
    asynchronous = parse(**{"config.serving.mode": "async"})
    assert asynchronous.client.batch_transform.threshold_bytes == 100 * mib
    smaller = parse(**{"config.client.batch_transform.threshold_bytes": 200 * mib})
    assert smaller.client.batch_transform.threshold_bytes == 200 * mib


def test_an_asynchronous_endpoint_scales_to_zero_and_may_take_an_hour():
    config = parse(
        **{"config.serving.mode": "async", "config.serving.model_server_timeout_seconds": 3600}
    )
    assert config.serving.asynchronous.min_capacity == 0
    assert config.serving.model_server_timeout_seconds == 3600
    assert config.client.max_request_bytes == 100 * 1024 * 1024


def test_nothing_is_reserved_unless_configured():
    """New accounts (concurrency quota 10) cannot reserve any concurrency."""
    assert parse().client.reserved_concurrency is None
    assert parse(**{"config.client.reserved_concurrency": "5"}).client.reserved_concurrency == 5


def test_account_and_region_follow_the_credentials_unless_pinned():
    assert (parse().account, parse().region) == (None, None)
    pinned = parse(**{"config.account": "123456789012", "config.region": "eu-west-1"})
    assert (pinned.account, pinned.region) == ("123456789012", "eu-west-1")


def test_alarm_emails():
    assert parse().alarm_emails == ()
    emails = parse(**{"config.alarm_emails": '["ops@example.com", "ml@example.org"]'})
    assert emails.alarm_emails == ("ops@example.com", "ml@example.org")


def test_existing_dataset():
    config = parse(
        **{
            "config.storage.dataset.training_uri": "s3://my-data/churn/train",
            "config.storage.dataset.validation_uri": "s3://my-data/churn/validation/",
            "config.storage.dataset.version": "2026-01-15",
        }
    )
    assert not config.storage.dataset.is_bundled
    assert config.storage.dataset.version == "2026-01-15"


BAD_VALUES = [
    pytest.param(
        {"config.training.instance_type": "m4.xlarge"},
        "config.training.instance_type: got 'm4.xlarge'; allowed: a SageMaker instance type "
        "starting with 'ml.'",
        id="instance-type-without-ml",
    ),
    pytest.param(
        {"config.serving.instance_type": "ml.eia1.large.x"},
        "config.serving.instance_type: got 'ml.eia1.large.x'",
        id="malformed-serving-instance-type",
    ),
    pytest.param(
        {"config.serving.accelerator_type": "ml.eia1.large"},
        "config.serving.accelerator_type: got 'ml.eia1.large'; allowed: null only: Amazon "
        "Elastic Inference ended in April 2024",
        id="elastic-inference",
    ),
    pytest.param(
        {
            "config.training.use_spot": True,
            "config.training.max_run_seconds": 1200,
            "config.training.max_wait_seconds": 600,
        },
        "config.training.max_wait_seconds: got 600; allowed: at least max_run_seconds (1200)",
        id="spot-wait-shorter-than-run",
    ),
    pytest.param(
        {"config.training.max_wait_seconds": 3600},
        "config.training.max_wait_seconds: got 3600; allowed: null unless use_spot is true",
        id="wait-without-spot",
    ),
    pytest.param(
        {"config.training.max_run_seconds": 13 * 3600},
        "config.training.max_run_seconds: got 46800; allowed: at most 42600 s: a deploy waits "
        "for the training job at most 43200 s (12 h, CloudFormation's limit for a wait "
        "condition), and 600 s of that are kept for instance start-up and model upload",
        id="run-time-beyond-wait-condition-limit",
    ),
    pytest.param(
        {
            "config.training.use_spot": True,
            "config.training.max_run_seconds": 3600,
            "config.training.max_wait_seconds": 42_601,
        },
        "config.training.max_wait_seconds: got 42601; allowed: at most 42600 s",
        id="spot-wait-beyond-wait-condition-limit",
    ),
    pytest.param(
        {"config.training.hyperparameters.learning_rate": "fast"},
        "hyperparameter 'learning_rate' in config.training.hyperparameters is 'fast'; "
        "allowed: a number > 0",
        id="hyperparameter-not-a-number",
    ),
    pytest.param(
        {"config.training.hyperparameters.num_iterations": "2.5"},
        "hyperparameter 'num_iterations' in config.training.hyperparameters is '2.5'; "
        "allowed: a whole number >= 1",
        id="hyperparameter-not-an-integer",
    ),
    pytest.param(
        {"config.training.hyperparameters.feature_fraction": "1.5"},
        "hyperparameter 'feature_fraction' in config.training.hyperparameters is '1.5'; "
        "allowed: a number in (0, 1]",
        id="hyperparameter-out-of-range",
    ),
    pytest.param(
        {"config.training.hyperparameters.eta": "0.3"},
        "unknown hyperparameter 'eta' in config.training.hyperparameters; allowed "
        "hyperparameters (model family lightgbm) are: target, learning_rate,",
        id="unknown-hyperparameter",
    ),
    pytest.param(
        {
            "config.model_family": "xgboost",
            "config.training.hyperparameters": '{"num_leaves": "31"}',
        },
        "unknown hyperparameter 'num_leaves' in config.training.hyperparameters; allowed "
        "hyperparameters (model family xgboost) are:",
        id="hyperparameter-of-another-family",
    ),
    pytest.param(
        {"config.model_family": "catboost"},
        "config.model_family: got 'catboost'; allowed: lightgbm or xgboost",
        id="unknown-model-family",
    ),
    pytest.param(
        {"config.training.metric_definitions": '[{"Name": "acc", "Regex": "acc: [0-9.]+"}]'},
        "config.training.metric_definitions[0].Regex: got 'acc: [0-9.]+'; allowed: a regular "
        "expression with exactly one group",
        id="metric-regex-without-group",
    ),
    pytest.param(
        {"config.training.volume_size_gb": "five"},
        "config.training.volume_size_gb: got 'five'; allowed: an integer from 1 to 16384",
        id="volume-not-a-number",
    ),
    pytest.param(
        {"config.serving.endpoint_name": "my_endpoint"},
        "config.serving.endpoint_name: got 'my_endpoint'; allowed: null "
        "(`<name_prefix>-model-endpoint`) or 1-63 letters",
        id="endpoint-name",
    ),
    pytest.param(
        {"config.serving.autoscaling.min_capacity": 3},
        "config.serving.autoscaling.max_capacity: got 2; allowed: at least min_capacity (3)",
        id="autoscaling-bounds",
    ),
    pytest.param(
        {"config.serving.initial_instance_count": 5},
        "config.serving.initial_instance_count: got 5; allowed: between autoscaling.min_capacity",
        id="initial-count-outside-autoscaling",
    ),
    pytest.param(
        {"config.storage.dataset.validation_uri": "s3://bucket/validation"},
        "config.storage.dataset.training_uri: got null; allowed: an s3://bucket/prefix URI "
        "whenever validation_uri is set",
        id="validation-without-training",
    ),
    pytest.param(
        {"config.storage.dataset.training_uri": "s3://bucket/training"},
        "config.storage.dataset.version: got null; allowed: a non-empty string",
        id="dataset-without-version",
    ),
    pytest.param(
        {
            "config.storage.dataset.training_uri": "bucket/training",
            "config.storage.dataset.version": "1",
        },
        "config.storage.dataset.training_uri: got 'bucket/training'; allowed: null (the bundled "
        "dataset) or s3://bucket/prefix",
        id="dataset-uri-without-s3",
    ),
    pytest.param(
        {"config.serving.mode": "batch"},
        "config.serving.mode: got 'batch'; allowed: realtime or serverless or async",
        id="serving-mode",
    ),
    pytest.param(
        {"config.serving.mode": "serverless", "config.serving.serverless.memory_mb": 1536},
        "config.serving.serverless.memory_mb: got 1536; allowed: one of 1024, 2048, 3072, 4096, "
        "5120, 6144",
        id="serverless-memory",
    ),
    pytest.param(
        {"config.serving.mode": "serverless", "config.serving.serverless.max_concurrency": 201},
        "config.serving.serverless.max_concurrency: got 201; allowed: an integer from 1 to 200",
        id="serverless-concurrency",
    ),
    pytest.param(
        {"config.serving.mode": "serverless", "config.serving.data_capture": True},
        "config.serving.data_capture: got true; allowed: false with mode serverless",
        id="serverless-data-capture",
    ),
    pytest.param(
        {"config.serving.mode": "serverless", "config.client.max_request_bytes": 5 * 1024 * 1024},
        "config.client.max_request_bytes: got 5242880; allowed: an integer from 1024 to 4194304",
        id="serverless-request-size",
    ),
    pytest.param(
        {"config.serving.mode": "serverless", "config.serving.serverless.max_concurrency": 2},
        "config.client.request_concurrency: got 4; allowed: at most "
        "serving.serverless.max_concurrency (2)",
        id="serverless-client-concurrency",
    ),
    pytest.param(
        {"config.serving.mode": "async", "config.serving.initial_instance_count": 3},
        "config.serving.initial_instance_count: got 3; allowed: between "
        "asynchronous.min_capacity (0, at least 1) and max_capacity (2)",
        id="async-initial-count",
    ),
    pytest.param(
        {"config.serving.mode": "async", "config.serving.asynchronous.max_capacity": 0},
        "config.serving.asynchronous.max_capacity: got 0; allowed: an integer from 1 to 100",
        id="async-max-capacity",
    ),
    pytest.param(
        {"config.serving.model_server_timeout_seconds": 61},
        "config.serving.model_server_timeout_seconds: got 61; allowed: an integer from 1 to 60",
        id="realtime-server-timeout",
    ),
    pytest.param(
        {"config.serving.mode": "async", "config.client.max_request_bytes": 100 * 1024 * 1024 + 1},
        "config.client.max_request_bytes: got 104857601; allowed: an integer from 1024 to "
        "104857600",
        id="async-object-size",
    ),
    pytest.param(
        {"config.storage.removal_policy": "delete"},
        "config.storage.removal_policy: got 'delete'; allowed: retain or destroy",
        id="removal-policy",
    ),
    pytest.param(
        {"config.client.reserved_concurrency": 0},
        "config.client.reserved_concurrency: got 0; allowed: null (no reservation, the default) "
        "or an integer from 1 to 900: Lambda keeps 100 concurrent executions of the account's "
        "quota unreserved, so reserving N needs a quota of at least N + 100",
        id="lambda-concurrency",
    ),
    pytest.param(
        {"config.client.reserved_concurrency": 950},
        "config.client.reserved_concurrency: got 950; allowed: null (no reservation, the "
        "default) or an integer from 1 to 900: Lambda keeps 100",
        id="lambda-concurrency-beyond-the-default-quota",
    ),
    pytest.param(
        {"config.region": "Ireland"},
        "config.region: got 'Ireland'; allowed: null (the deploying credentials' region) or a "
        "region name such as 'eu-west-1'",
        id="region",
    ),
    pytest.param(
        {"config.account": "1234"},
        "config.account: got '1234'; allowed: null (the deploying credentials' account) or 12 "
        "digits",
        id="account",
    ),
    pytest.param(
        {"config.alarm_emails": '["ops@example.com", "not an address"]'},
        "config.alarm_emails[1]: got 'not an address'; allowed: a list of e-mail addresses",
        id="alarm-email",
    ),
    pytest.param(
        {"config.alarm_emails": "ops@example.com"},
        "config.alarm_emails: got 'ops@example.com'; allowed: a list of e-mail addresses",
        id="alarm-emails-not-a-list",
    ),
    pytest.param(
        {"config.training.instance_count": 2},
        "config.training.instance_count: got 2; allowed: 1 (the training program is single-node)",
        id="distributed-training",
    ),
    pytest.param(
        {"config.client.retry_attempts": 3},
        "config.client.retry_attempts: got 3; allowed: an integer from 0 to 2",
        id="lambda-retries",
    ),
    pytest.param(
        {"config.log_retention_days": 10},
        "config.log_retention_days: got 10; allowed: one of 1, 3, 5, 7, 14, 30",
        id="log-retention",
    ),
    pytest.param(
        {"config.name_prefix": "Custom_SM"},
        "config.name_prefix: got 'Custom_SM'; allowed: 2-20 lowercase letters",
        id="name-prefix",
    ),
    pytest.param(
        {"config.serving.alarm_5xx_errors_threshold": True},
        "config.serving.alarm_5xx_errors_threshold: got true; allowed: an integer",
        id="boolean-is-not-a-number",
    ),
    pytest.param(
        {"config.client.batch_transform.threshold_bytes": 10 * 1024**3},
        "config.client.batch_transform.threshold_bytes: got 10737418240; allowed: from 1048576 "
        "(1 MiB) to 3004534781: at most what the client streams in half its timeout",
        id="batch-threshold-above-what-streams",
    ),
    pytest.param(
        {
            "config.serving.mode": "async",
            "config.client.batch_transform.threshold_bytes": 200 * 1024**2,
        },
        "threshold_bytes: got 209715200; allowed: from 1048576 (1 MiB) to 104857600: at most "
        "client.max_request_bytes, the largest object an asynchronous request takes",
        id="batch-threshold-above-an-async-request",
    ),
    pytest.param(
        {"config.client.batch_transform.max_payload_mb": 101},
        "config.client.batch_transform.max_payload_mb: got 101; allowed: an integer from 1 to 100",
        id="batch-payload-above-the-server",
    ),
    pytest.param(
        {"config.serving.data_capture": "yes"},
        "config.serving.data_capture: got 'yes'; allowed: true or false",
        id="boolean",
    ),
]


@pytest.mark.parametrize(("overrides", "message"), BAD_VALUES)
def test_bad_value_fails_synth_naming_key_value_and_rule(overrides, message):
    with pytest.raises(ConfigError) as failure:
        build_app(context=context_with(**overrides))
    assert message in str(failure.value)


def staged_config(stage: str, **overrides: object) -> AppConfig:
    """The config as `cdk synth -c stage=STAGE -c config.a.b=value ...` would see it."""
    defaults = json.loads((ROOT / "cdk.json").read_text())["context"][CONTEXT_KEY]
    stages = json.loads(STAGES_FILE.read_text())
    return AppConfig.parse(apply_overrides(staged(defaults, stage, stages), overrides))


def test_a_stage_names_everything_after_itself_and_applies_its_overrides():
    dev, prod = staged_config("dev"), staged_config("prod")
    assert (dev.name_prefix, prod.name_prefix) == ("custom-sm-dev", "custom-sm-prod")
    assert dev.serving.endpoint_name == "custom-sm-dev-model-endpoint"
    assert (dev.storage.removal_policy, prod.storage.removal_policy) == ("destroy", "retain")
    assert (dev.log_retention_days, prod.log_retention_days) == (7, 90)
    assert prod.serving.autoscaling.max_capacity == 4
    # Merged key by key: what the stage leaves alone is cdk.json's.
    assert prod.serving.autoscaling.min_capacity == parse().serving.autoscaling.min_capacity
    # The command line still wins.
    assert staged_config("prod", **{"config.log_retention_days": 30}).log_retention_days == 30
    # No stage: the names are cdk.json's, as before stages existed.
    assert (parse().name_prefix, parse().serving.endpoint_name) == (
        "custom-sm",
        "custom-sm-model-endpoint",
    )


@pytest.mark.parametrize(
    ("stage", "message"),
    [
        ("prdo", "stage: got 'prdo'; allowed: a stage of stages.json (dev, prod)"),
        ("Prod", "stage: got 'Prod'; allowed: 1-10 lowercase letters or digits"),
    ],
)
def test_an_undeclared_or_malformed_stage_fails_synth(stage, message):
    with pytest.raises(ConfigError) as failure:
        build_app(context=context_with(stage=stage))
    assert message in str(failure.value)


def test_the_compiled_predictor_is_on_unless_switched_off():
    assert parse().serving.compiled_predictor is True
    off = parse(**{"config.serving.compiled_predictor": "false"})
    assert off.serving.compiled_predictor is False
