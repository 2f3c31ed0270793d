"""The app's typed configuration: one context key, parsed and validated once in `app.py`.

Defaults live in `cdk.json` under the context key `config`. A stage (`-c stage=prod`) merges
its overrides from `stages.json` over them and names everything `<name_prefix>-<stage>`, so
stages live side by side in one account. Any leaf can then be overridden on the command line
with a dotted key, e.g. `npx cdk synth -c config.training.max_run_seconds=1800`.
Command-line values arrive as strings, so every field accepts the string form of its type.
A bad value raises `ConfigError` naming the key, the value and what is allowed, so synth fails
before anything reaches CloudFormation.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Protocol

# The programs' own rules for the values the stacks hand them (hyperparameters, environment
# variables), so a bad value fails synth in seconds rather than a job or an endpoint after a
# deployment.
from model_kit import families
from model_kit.serving import config as server_settings
from model_kit.training.errors import TrainingError
from model_kit.training.hyperparameters import parse_hyperparameters

from constructs_lib.training_job.settings import (
    LONGEST_TRAINING_WAIT_SECONDS,
    TRAINING_STARTUP_MARGIN_SECONDS,
    WAIT_CONDITION_LIMIT_SECONDS,
    TrainingJobSettings,
)
from lambda_fn import client_config as client_settings

CONTEXT_KEY = "config"
# `-c stage=NAME`: a stage of STAGES_FILE, beside cdk.json.
STAGE_KEY = "stage"
STAGES_FILE = Path(__file__).resolve().parent.parent / "stages.json"
STAGE_PATTERN = re.compile(r"^[a-z][a-z0-9]{0,9}$")

INSTANCE_TYPE_PATTERN = re.compile(r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
SAGEMAKER_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
NAME_PREFIX_PATTERN = re.compile(r"^[a-z][a-z0-9-]{1,19}$")
ACCOUNT_PATTERN = re.compile(r"^\d{12}$")
REGION_PATTERN = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
# Deliberately loose: SNS sends a confirmation mail, which is the real check.
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# Lambda keeps this many concurrent executions of the account's quota unreserved.
LAMBDA_UNRESERVED_MINIMUM = 100
LAMBDA_DEFAULT_CONCURRENCY_QUOTA = 1000
S3_URI_PATTERN = re.compile(r"^s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(.+?)/?$")

# The retention periods CloudWatch Logs accepts.
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827)


class Bounded(Protocol):
    """A program's integer setting: the bounds it accepts."""

    @property
    def low(self) -> int: ...

    @property
    def high(self) -> int: ...


class ConfigError(ValueError):
    """A configuration value that cannot be deployed; the message says which and why."""


def _describe(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else repr(value)


class _Section:
    """Reads typed values out of one mapping and names the full key in every error."""

    def __init__(self, raw: Any, path: str, allowed: set[str]) -> None:
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{path}: expected an object, got {_describe(raw)}")
        unknown = sorted(set(raw) - allowed)
        if unknown:
            raise ConfigError(
                f"{path}.{unknown[0]}: unknown key; allowed keys: {', '.join(sorted(allowed))}"
            )
        self.raw = raw
        self.path = path

    def key(self, name: str) -> str:
        return f"{self.path}.{name}"

    def fail(self, name: str, value: Any, allowed: str) -> ConfigError:
        return ConfigError(f"{self.key(name)}: got {_describe(value)}; allowed: {allowed}")

    def get(self, name: str, default: Any = None) -> Any:
        return self.raw.get(name, default)

    def string(self, name: str, pattern: re.Pattern[str], allowed: str) -> str:
        value = self.raw.get(name)
        if not isinstance(value, str) or not pattern.match(value):
            raise self.fail(name, value, allowed)
        return value

    def optional_string(self, name: str, pattern: re.Pattern[str], allowed: str) -> str | None:
        return None if self.raw.get(name) is None else self.string(name, pattern, allowed)

    def integer(self, name: str, low: int, high: int) -> int:
        value = self.raw.get(name)
        allowed = f"an integer from {low} to {high}"
        if isinstance(value, bool):
            raise self.fail(name, value, allowed)
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
            number = int(value)
        elif isinstance(value, int):
            number = value
        else:
            raise self.fail(name, value, allowed)
        if not low <= number <= high:
            raise self.fail(name, value, allowed)
        return number

    def setting(self, name: str, setting: Bounded) -> int:
        """An integer the stacks pass to a program as ``setting``: within its bounds."""
        return self.integer(name, setting.low, setting.high)

    def integer_in(self, name: str, choices: tuple[int, ...]) -> int:
        number = self.integer(name, min(choices), max(choices))
        if number not in choices:
            raise self.fail(name, self.raw.get(name), f"one of {', '.join(map(str, choices))}")
        return number

    def boolean(self, name: str) -> bool:
        value = self.raw.get(name)
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise self.fail(name, value, "true or false")

    def choice(self, name: str, choices: tuple[str, ...]) -> str:
        value = self.raw.get(name)
        if value not in choices:
            raise self.fail(name, value, " or ".join(choices))
        return value

    def instance_type(self, name: str) -> str:
        return self.string(
            name,
            INSTANCE_TYPE_PATTERN,
            "a SageMaker instance type starting with 'ml.', e.g. 'ml.m5.large'",
        )


@dataclass(frozen=True)
class DatasetConfig:
    """Where training reads its channels; None means the bundled sample dataset."""

    training_uri: str | None
    validation_uri: str | None
    version: str | None

    @property
    def is_bundled(self) -> bool:
        return self.training_uri is None


@dataclass(frozen=True)
class StorageConfig:
    removal_policy: str
    noncurrent_version_expiration_days: int
    scored_object_expiration_days: int
    access_log_expiration_days: int
    dataset: DatasetConfig


@dataclass(frozen=True)
class AutoscalingConfig:
    enabled: bool
    min_capacity: int
    max_capacity: int
    target_invocations_per_instance: int


# SageMaker serverless endpoints: memory in steps of 1 GB, and per-endpoint concurrency.
SERVERLESS_MEMORY_SIZES_MB = (1024, 2048, 3072, 4096, 5120, 6144)
SERVERLESS_MAX_CONCURRENCY = 200


@dataclass(frozen=True)
class ServerlessConfig:
    memory_mb: int
    max_concurrency: int


@dataclass(frozen=True)
class AsynchronousConfig:
    """An asynchronous endpoint's instances scale on the requests waiting for them, down to
    `min_capacity` (0: none while nothing waits)."""

    min_capacity: int
    max_capacity: int
    target_backlog_per_instance: int
    max_concurrent_invocations_per_instance: int


@dataclass(frozen=True)
class ServingConfig:
    # How the endpoint is hosted: `realtime` (instances), `serverless` or `async`.
    mode: str
    endpoint_name: str
    instance_type: str
    initial_instance_count: int
    model_server_workers: int
    model_server_timeout_seconds: int
    # Predict with the model's compiled trees when they match it and the instance (the
    # server's MODEL_COMPILED_PREDICTOR); false: always with the model's library.
    compiled_predictor: bool
    data_capture: bool
    data_capture_sampling_percentage: int
    autoscaling: AutoscalingConfig
    alarm_5xx_errors_threshold: int
    alarm_model_latency_p99_ms: int
    blue_green_wait_seconds: int
    serverless: ServerlessConfig
    asynchronous: AsynchronousConfig


@dataclass(frozen=True)
class BatchTransformConfig:
    """Files above `threshold_bytes` are scored by a SageMaker batch transform job."""

    enabled: bool
    # The default (null in the config): what the client streams in half its timeout, or in
    # `async` mode the largest object an asynchronous request takes.
    threshold_bytes: int
    instance_type: str
    instance_count: int
    max_payload_mb: int


@dataclass(frozen=True)
class ClientConfig:
    reserved_concurrency: int | None
    memory_mb: int
    timeout_seconds: int
    retry_attempts: int
    max_event_age_seconds: int
    max_request_bytes: int
    request_concurrency: int
    alarm_errors_threshold: int
    alarm_dead_letters_threshold: int
    batch_transform: BatchTransformConfig


GITHUB_REPOSITORY_PATTERN = re.compile(r"^[A-Za-z0-9-]{1,39}/[A-Za-z0-9._-]{1,100}$")
BOOTSTRAP_QUALIFIER_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,10}$")
GIT_BRANCH_PATTERN = re.compile(r"^[A-Za-z0-9._/-]{1,200}$")
OIDC_PROVIDER_ARN_PATTERN = re.compile(
    r"^arn:aws[a-z-]*:iam::\d{12}:oidc-provider/token\.actions\.githubusercontent\.com$"
)


@dataclass(frozen=True)
class CiConfig:
    """The optional `ci` stack: a role GitHub Actions of one repository may assume to run
    `cdk diff` (see README "Pull-request review")."""

    enabled: bool
    # owner/name; required when enabled.
    github_repository: str | None
    # None: the stack creates the account's GitHub OIDC provider (one per account).
    oidc_provider_arn: str | None
    # `cdk bootstrap --qualifier`: the lookup role the CI role may assume is named after it.
    bootstrap_qualifier: str
    # Pushes to this branch may assume the role too (pull requests always may).
    main_branch: str


@dataclass(frozen=True)
class AppConfig:
    name_prefix: str
    # The model library both images are built for (containers/model_kit/families).
    model_family: str
    # None: the account and region of the credentials `cdk deploy` runs with.
    account: str | None
    region: str | None
    log_retention_days: int
    alarm_emails: tuple[str, ...]
    storage: StorageConfig
    training: TrainingJobSettings
    serving: ServingConfig
    client: ClientConfig
    ci: CiConfig

    @classmethod
    def from_context(cls, node: Any) -> AppConfig:
        """Reads `config`, the stage's overrides if `stage` is set, and every dotted
        `config.a.b=value` override from the CDK context."""
        base = node.try_get_context(CONTEXT_KEY) or {}
        stage = node.try_get_context(STAGE_KEY)
        if stage is not None:
            base = staged(base, stage, json.loads(STAGES_FILE.read_text()))
        overrides = {
            key: node.try_get_context(key)
            for key in _context_keys(node)
            if key.startswith(f"{CONTEXT_KEY}.")
        }
        return cls.parse(apply_overrides(base, overrides))

    @classmethod
    def parse(cls, raw: Any) -> AppConfig:
        root = _Section(raw, CONTEXT_KEY, _ROOT)
        model_family = root.choice("model_family", tuple(sorted(families.MODULES)))
        name_prefix = root.string(
            "name_prefix",
            NAME_PREFIX_PATTERN,
            "2-20 lowercase letters, digits or hyphens, starting with a letter",
        )
        serving = _parse_serving(
            _Section(root.get("serving", {}), root.key("serving"), _SERVING), name_prefix
        )
        return cls(
            name_prefix=name_prefix,
            model_family=model_family,
            account=root.optional_string(
                "account", ACCOUNT_PATTERN, "null (the deploying credentials' account) or 12 digits"
            ),
            region=root.optional_string(
                "region",
                REGION_PATTERN,
                "null (the deploying credentials' region) or a region name such as 'eu-west-1'",
            ),
            log_retention_days=root.integer_in("log_retention_days", LOG_RETENTION_DAYS),
            alarm_emails=_parse_alarm_emails(root),
            storage=_parse_storage(
                _Section(root.get("storage", {}), root.key("storage"), _STORAGE)
            ),
            training=_parse_training(
                _Section(root.get("training", {}), root.key("training"), _TRAINING), model_family
            ),
            serving=serving,
            client=_parse_client(
                _Section(root.get("client", {}), root.key("client"), _CLIENT), serving
            ),
            ci=_parse_ci(_Section(root.get("ci", {}), root.key("ci"), _CI)),
        )


def staged(base: Mapping[str, Any], stage: Any, stages: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with the stage's overrides merged in, named `<name_prefix>-<stage>` unless the
    stage names itself. A stage must be declared in stages.json: a typo would otherwise
    deploy a new copy of the app beside the real one."""
    if not isinstance(stage, str) or not STAGE_PATTERN.match(stage):
        raise ConfigError(
            f"{STAGE_KEY}: got {_describe(stage)}; allowed: 1-10 lowercase letters or digits, "
            "starting with a letter"
        )
    if stage not in stages:
        raise ConfigError(
            f"{STAGE_KEY}: got {stage!r}; allowed: a stage of {STAGES_FILE.name} "
            f"({', '.join(sorted(stages)) or 'none declared'})"
        )
    overrides = stages[stage]
    if not isinstance(overrides, Mapping):
        raise ConfigError(f"{STAGES_FILE.name}: {stage}: expected an object of config overrides")
    merged = _merged(base, overrides)
    if "name_prefix" not in overrides:
        merged["name_prefix"] = f"{base.get('name_prefix')}-{stage}"
    return merged


def _merged(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of `base`, each object of `overrides` merged key by key, other values set."""
    merged: dict[str, Any] = json.loads(json.dumps(base))
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = json.loads(json.dumps(value))
    return merged


def _context_keys(node: Any) -> list[str]:
    """Context keys given with `-c`; the CLI hands them to the app in CDK_CONTEXT_JSON."""
    return [key for key in node.get_all_context() if isinstance(key, str)]


def apply_overrides(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Returns a deep copy of `base` with each `config.a.b` override set at path a.b.

    A value that is valid JSON (a number, a list, an object) is decoded, so
    `-c config.training.hyperparameters='{"seed": "7"}'` works as well as scalars.
    """
    merged: dict[str, Any] = json.loads(json.dumps(base))
    for dotted, value in sorted(overrides.items()):
        parts = dotted.split(".")[1:]
        target = merged
        for part in parts[:-1]:
            child = target.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{dotted}: {part} is not an object, cannot set a key inside it")
            target = child
        target[parts[-1]] = _decode(value)
    return merged


def _decode(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except json.JSONDecodeError as error:
            raise ConfigError(f"value {value!r} looks like JSON but is not: {error}") from error
    return value


def _keys(config_class: type) -> set[str]:
    """The keys a config section allows: its dataclass's fields, so a knob is declared once."""
    return {field.name for field in fields(config_class)}


_ROOT = _keys(AppConfig)
_STORAGE = _keys(StorageConfig)
_DATASET = _keys(DatasetConfig)
_TRAINING = _keys(TrainingJobSettings)
# accelerator_type is no field: it is accepted only to be refused with a reason.
_SERVING = _keys(ServingConfig) | {"accelerator_type"}
_SERVERLESS = _keys(ServerlessConfig)
_ASYNCHRONOUS = _keys(AsynchronousConfig)
_AUTOSCALING = _keys(AutoscalingConfig)
_CLIENT = _keys(ClientConfig)
_BATCH_TRANSFORM = _keys(BatchTransformConfig)
_CI = _keys(CiConfig)


def _parse_alarm_emails(section: _Section) -> tuple[str, ...]:
    """Addresses subscribed to the alarm topic; each must confirm SNS's subscription mail."""
    raw = section.get("alarm_emails", [])
    allowed = 'a list of e-mail addresses, e.g. ["ops@example.com"] (may be empty)'
    if not isinstance(raw, list):
        raise section.fail("alarm_emails", raw, allowed)
    for index, address in enumerate(raw):
        if not isinstance(address, str) or not EMAIL_PATTERN.match(address):
            raise ConfigError(
                f"{section.key('alarm_emails')}[{index}]: got {_describe(address)}; "
                f"allowed: {allowed}"
            )
    if len(set(raw)) != len(raw):
        raise section.fail("alarm_emails", raw, "each address once")
    return tuple(raw)


def _parse_storage(section: _Section) -> StorageConfig:
    return StorageConfig(
        removal_policy=section.choice("removal_policy", ("retain", "destroy")),
        noncurrent_version_expiration_days=section.integer(
            "noncurrent_version_expiration_days", 1, 3650
        ),
        scored_object_expiration_days=section.integer("scored_object_expiration_days", 1, 3650),
        access_log_expiration_days=section.integer("access_log_expiration_days", 1, 3650),
        dataset=_parse_dataset(
            _Section(section.get("dataset", {}), section.key("dataset"), _DATASET)
        ),
    )


def _parse_dataset(section: _Section) -> DatasetConfig:
    uris = {}
    for name in ("training_uri", "validation_uri"):
        value = section.get(name)
        if value is not None:
            uris[name] = section.string(
                name, S3_URI_PATTERN, "null (the bundled dataset) or s3://bucket/prefix"
            )
    version = section.get("version")
    if uris and "training_uri" not in uris:
        raise section.fail(
            "training_uri", None, "an s3://bucket/prefix URI whenever validation_uri is set"
        )
    if uris and (not isinstance(version, str) or not version.strip()):
        raise section.fail(
            "version",
            version,
            "a non-empty string that you change whenever the data under the URIs changes "
            "(it is part of the training job's name, so a new version trains a new model)",
        )
    return DatasetConfig(
        training_uri=uris.get("training_uri"),
        validation_uri=uris.get("validation_uri"),
        version=version if uris else None,
    )


def _parse_training(section: _Section, model_family: str) -> TrainingJobSettings:
    max_run = section.integer("max_run_seconds", 60, 28 * 24 * 3600)
    if max_run > LONGEST_TRAINING_WAIT_SECONDS:
        raise _too_long(section, "max_run_seconds", max_run)
    use_spot = section.boolean("use_spot")
    max_wait = None
    if use_spot:
        max_wait = section.integer("max_wait_seconds", 1, 10**6)
        if max_wait < max_run:
            raise section.fail(
                "max_wait_seconds",
                section.get("max_wait_seconds"),
                f"at least max_run_seconds ({max_run}): spot waiting time includes the run time",
            )
        if max_wait > LONGEST_TRAINING_WAIT_SECONDS:
            raise _too_long(section, "max_wait_seconds", max_wait)
    elif section.get("max_wait_seconds") is not None:
        raise section.fail(
            "max_wait_seconds",
            section.get("max_wait_seconds"),
            "null unless use_spot is true (SageMaker rejects a wait time without managed spot)",
        )
    return TrainingJobSettings(
        instance_type=section.instance_type("instance_type"),
        instance_count=_single_instance(section),
        volume_size_gb=section.integer("volume_size_gb", 1, 16384),
        max_run_seconds=max_run,
        use_spot=use_spot,
        max_wait_seconds=max_wait,
        hyperparameters=_parse_hyperparameters(section, model_family),
        metric_definitions=_parse_metric_definitions(section),
    )


def _single_instance(section: _Section) -> int:
    if section.integer("instance_count", 1, 100) != 1:
        raise section.fail(
            "instance_count",
            section.get("instance_count"),
            "1 (the training program is single-node)",
        )
    return 1


def _too_long(section: _Section, name: str, value: int) -> ConfigError:
    return section.fail(
        name,
        value,
        f"at most {LONGEST_TRAINING_WAIT_SECONDS} s: a deploy waits for the training job at "
        f"most {WAIT_CONDITION_LIMIT_SECONDS} s (12 h, CloudFormation's limit for a wait "
        f"condition), and {TRAINING_STARTUP_MARGIN_SECONDS} s of that are kept for instance "
        "start-up and model upload; the README's 'How long training may take' says what to "
        "do for longer training",
    )


def _parse_hyperparameters(section: _Section, model_family: str) -> dict[str, str]:
    """Checked by the training program's own parser, for the family; sent as strings."""
    raw = section.get("hyperparameters", {})
    key = section.key("hyperparameters")
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{key}: got {_describe(raw)}; allowed: an object of name: value")
    try:
        parse_hyperparameters(raw, source=key, family=model_family)
    except TrainingError as error:
        raise ConfigError(str(error)) from error
    return {name: str(value).strip() for name, value in sorted(raw.items())}


def _parse_metric_definitions(section: _Section) -> list[dict[str, str]]:
    raw = section.get("metric_definitions")
    key = section.key("metric_definitions")
    if not isinstance(raw, list) or not raw:
        raise section.fail("metric_definitions", raw, "a non-empty list of {Name, Regex}")
    result = []
    for index, item in enumerate(raw):
        entry = _Section(item, f"{key}[{index}]", {"Name", "Regex"})
        name, regex = entry.get("Name"), entry.get("Regex")
        if not isinstance(name, str) or not re.fullmatch(r"[^:]{1,255}", name):
            raise entry.fail("Name", name, "1-255 characters without ':'")
        try:
            groups = re.compile(regex).groups if isinstance(regex, str) else 0
        except re.error:
            groups = 0
        if groups != 1:
            raise entry.fail("Regex", regex, "a regular expression with exactly one group")
        result.append({"Name": name, "Regex": regex})
    return result


def _parse_serving(section: _Section, name_prefix: str) -> ServingConfig:
    if section.get("accelerator_type") is not None:
        raise section.fail(
            "accelerator_type",
            section.get("accelerator_type"),
            "null only: Amazon Elastic Inference ended in April 2024; choose a larger or a GPU "
            "instance_type instead",
        )
    autoscaling = _Section(section.get("autoscaling", {}), section.key("autoscaling"), _AUTOSCALING)
    min_capacity = autoscaling.integer("min_capacity", 1, 100)
    max_capacity = autoscaling.integer("max_capacity", 1, 100)
    if max_capacity < min_capacity:
        raise autoscaling.fail(
            "max_capacity", max_capacity, f"at least min_capacity ({min_capacity})"
        )
    mode = section.choice("mode", tuple(client_settings.MODES))
    serverless = _Section(section.get("serverless", {}), section.key("serverless"), _SERVERLESS)
    data_capture = section.boolean("data_capture")
    if mode == "serverless" and data_capture:
        raise section.fail(
            "data_capture", data_capture, "false with mode serverless: it captures no data"
        )
    asynchronous = _parse_asynchronous(
        _Section(section.get("asynchronous", {}), section.key("asynchronous"), _ASYNCHRONOUS)
    )
    initial = section.integer("initial_instance_count", 1, 100)
    scaling = "autoscaling"
    if mode == "async":
        scaling = "asynchronous"
        min_capacity, max_capacity = asynchronous.min_capacity, asynchronous.max_capacity
    if not max(min_capacity, 1) <= initial <= max_capacity:
        raise section.fail(
            "initial_instance_count",
            initial,
            f"between {scaling}.min_capacity ({min_capacity}, at least 1) and max_capacity "
            f"({max_capacity})",
        )
    return ServingConfig(
        mode=mode,
        # null: named after the app (and its stage), as every other named resource is.
        endpoint_name=(
            f"{name_prefix}-model-endpoint"
            if section.get("endpoint_name") is None
            else section.string(
                "endpoint_name",
                SAGEMAKER_NAME_PATTERN,
                "null (`<name_prefix>-model-endpoint`) or 1-63 letters, digits or hyphens, "
                "starting and ending with a letter or digit",
            )
        ),
        instance_type=section.instance_type("instance_type"),
        initial_instance_count=initial,
        model_server_workers=section.setting("model_server_workers", server_settings.WORKERS),
        # An asynchronous invocation may take an hour; a real-time or serverless one 60 s.
        model_server_timeout_seconds=section.integer(
            "model_server_timeout_seconds",
            server_settings.TIMEOUT.low,
            server_settings.TIMEOUT.high
            if mode == "async"
            else server_settings.REALTIME_TIMEOUT_SECONDS,
        ),
        compiled_predictor=section.boolean("compiled_predictor"),
        data_capture=data_capture,
        data_capture_sampling_percentage=section.integer(
            "data_capture_sampling_percentage", 1, 100
        ),
        autoscaling=AutoscalingConfig(
            enabled=autoscaling.boolean("enabled"),
            min_capacity=min_capacity,
            max_capacity=max_capacity,
            target_invocations_per_instance=autoscaling.integer(
                "target_invocations_per_instance", 1, 10**6
            ),
        ),
        alarm_5xx_errors_threshold=section.integer("alarm_5xx_errors_threshold", 1, 10**6),
        alarm_model_latency_p99_ms=section.integer("alarm_model_latency_p99_ms", 1, 60_000),
        blue_green_wait_seconds=section.integer("blue_green_wait_seconds", 0, 3600),
        serverless=ServerlessConfig(
            memory_mb=serverless.integer_in("memory_mb", SERVERLESS_MEMORY_SIZES_MB),
            max_concurrency=serverless.integer("max_concurrency", 1, SERVERLESS_MAX_CONCURRENCY),
        ),
        asynchronous=asynchronous,
    )


def _parse_asynchronous(section: _Section) -> AsynchronousConfig:
    min_capacity = section.integer("min_capacity", 0, 100)
    max_capacity = section.integer("max_capacity", 1, 100)
    if max_capacity < min_capacity:
        raise section.fail("max_capacity", max_capacity, f"at least min_capacity ({min_capacity})")
    return AsynchronousConfig(
        min_capacity=min_capacity,
        max_capacity=max_capacity,
        target_backlog_per_instance=section.integer("target_backlog_per_instance", 1, 10**6),
        max_concurrent_invocations_per_instance=section.integer(
            "max_concurrent_invocations_per_instance", 1, 1000
        ),
    )


def _parse_client(section: _Section, serving: ServingConfig) -> ClientConfig:
    mode = client_settings.MODES[serving.mode]
    request_concurrency = section.setting(
        "request_concurrency", client_settings.REQUEST_CONCURRENCY
    )
    if serving.mode == "serverless" and request_concurrency > serving.serverless.max_concurrency:
        raise section.fail(
            "request_concurrency",
            request_concurrency,
            f"at most serving.serverless.max_concurrency ({serving.serverless.max_concurrency}): "
            "one file's requests alone would be throttled",
        )
    memory_mb = section.integer("memory_mb", 128, 10240)
    timeout_seconds = section.integer("timeout_seconds", 1, 900)
    max_request_bytes = (
        mode.max_request_bytes.default
        if section.get("max_request_bytes") is None
        else section.setting("max_request_bytes", mode.max_request_bytes)
    )
    batch = _Section(
        section.get("batch_transform", {}), section.key("batch_transform"), _BATCH_TRANSFORM
    )
    return ClientConfig(
        reserved_concurrency=_parse_reserved_concurrency(section),
        memory_mb=memory_mb,
        timeout_seconds=timeout_seconds,
        retry_attempts=section.integer("retry_attempts", 0, 2),
        max_event_age_seconds=section.integer("max_event_age_seconds", 60, 21600),
        max_request_bytes=max_request_bytes,
        request_concurrency=request_concurrency,
        alarm_errors_threshold=section.integer("alarm_errors_threshold", 1, 10**6),
        alarm_dead_letters_threshold=section.integer("alarm_dead_letters_threshold", 1, 10**6),
        batch_transform=_parse_batch_transform(
            batch,
            streaming_limit=(
                max_request_bytes
                if serving.mode == "async"
                else client_settings.streaming_limit_bytes(memory_mb, timeout_seconds)
            ),
            asynchronous=serving.mode == "async",
        ),
    )


def _parse_batch_transform(
    section: _Section, streaming_limit: int, asynchronous: bool
) -> BatchTransformConfig:
    """The threshold defaults to `streaming_limit`; a larger one would leave files that no
    other path scores in time (in `async` mode: that no asynchronous request takes)."""
    threshold = streaming_limit
    if section.get("threshold_bytes") is not None:
        explain = (
            "client.max_request_bytes, the largest object an asynchronous request takes"
            if asynchronous
            else "what the client streams in half its timeout at the measured rate "
            "(client.memory_mb and client.timeout_seconds set it; README 'Big files')"
        )
        threshold = section.integer("threshold_bytes", client_settings.MIB, 5 * 1024**4)
        if threshold > streaming_limit:
            raise section.fail(
                "threshold_bytes",
                threshold,
                f"from {client_settings.MIB} (1 MiB) to {streaming_limit}: at most {explain}",
            )
    return BatchTransformConfig(
        enabled=section.boolean("enabled"),
        threshold_bytes=threshold,
        instance_type=section.instance_type("instance_type"),
        instance_count=section.setting("instance_count", client_settings.TRANSFORM_INSTANCE_COUNT),
        max_payload_mb=section.setting("max_payload_mb", client_settings.TRANSFORM_MAX_PAYLOAD_MB),
    )


def _parse_reserved_concurrency(section: _Section) -> int | None:
    """None (the default) reserves nothing, which every account accepts.

    Lambda refuses a reservation that leaves fewer than 100 executions of the account's
    quota unreserved, so reserving N needs a quota of at least N + 100: new accounts, whose
    quota is often 10, cannot reserve anything, and the default quota of 1,000 allows 900.
    """
    value = section.get("reserved_concurrency")
    if value is None:
        return None
    highest = LAMBDA_DEFAULT_CONCURRENCY_QUOTA - LAMBDA_UNRESERVED_MINIMUM
    try:
        return section.integer("reserved_concurrency", 1, highest)
    except ConfigError:
        raise section.fail(
            "reserved_concurrency",
            value,
            f"null (no reservation, the default) or an integer from 1 to {highest}: Lambda "
            f"keeps {LAMBDA_UNRESERVED_MINIMUM} concurrent executions of the account's quota "
            f"unreserved, so reserving N needs a quota of at least N + "
            f"{LAMBDA_UNRESERVED_MINIMUM} (the default quota is "
            f"{LAMBDA_DEFAULT_CONCURRENCY_QUOTA:,}; new accounts often have 10 and can reserve "
            "nothing). Check yours with `aws lambda get-account-settings`",
        ) from None


def _parse_ci(section: _Section) -> CiConfig:
    enabled = section.boolean("enabled")
    repository = section.optional_string(
        "github_repository",
        GITHUB_REPOSITORY_PATTERN,
        "null or 'owner/name' of a GitHub repository",
    )
    if enabled and repository is None:
        raise section.fail(
            "github_repository",
            None,
            "'owner/name' of the GitHub repository whose workflows may assume the role, when "
            "ci.enabled is true",
        )
    return CiConfig(
        enabled=enabled,
        github_repository=repository,
        oidc_provider_arn=section.optional_string(
            "oidc_provider_arn",
            OIDC_PROVIDER_ARN_PATTERN,
            "null (the stack creates the provider) or the ARN of the account's "
            "token.actions.githubusercontent.com OIDC provider",
        ),
        bootstrap_qualifier=section.string(
            "bootstrap_qualifier",
            BOOTSTRAP_QUALIFIER_PATTERN,
            "`cdk bootstrap`'s qualifier, 1-10 letters, digits, '-' or '_' (default hnb659fds)",
        ),
        main_branch=section.string("main_branch", GIT_BRANCH_PATTERN, "a branch name, e.g. main"),
    )
