"""The server's settings, read once from the environment SageMaker sets.

Standard library only: ``serve`` reads this and binds its socket before it
imports numpy and LightGBM, so SageMaker can connect within 250 ms of start.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from model_kit.rules import available_cpus

MIB = 1024 * 1024
REALTIME_MAX_PAYLOAD_MB = 6
BATCH_MAX_PAYLOAD_MB = 100
BATCH_STRATEGIES = ("MULTI_RECORD", "SINGLE_RECORD")
# MaxPayloadInMB 0 is batch transform's "send each input whole, chunked, of any size".
UNBOUNDED_PAYLOAD = (
    "SAGEMAKER_MAX_PAYLOAD_IN_MB=0 asks this container to take each input file whole, as one "
    "chunked request of any size; it answers each request from one batch held in memory, so "
    f"it needs a bound: set MaxPayloadInMB from 1 to {BATCH_MAX_PAYLOAD_MB} in the transform "
    "job, with SplitType Line so that SageMaker packs whole records into each request"
)
# Seconds a stopping worker may spend on in-flight requests: SageMaker sends
# SIGKILL 30 s after SIGTERM, so leave room for the master to exit first.
GRACEFUL_TIMEOUT_S = 25


class ConfigError(ValueError):
    """An environment variable holds a value the server cannot use."""


@dataclass(frozen=True)
class IntSetting:
    """An integer environment variable and its bounds, the one statement of them (the CDK
    app checks the config's values against the same bounds at synth)."""

    variable: str
    low: int
    high: int
    unit: str = ""

    def read(self, env: Mapping[str, str], default: int) -> int:
        raw = env.get(self.variable, "").strip()
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            value = None
        if value is None or not self.low <= value <= self.high:
            raise ConfigError(
                f"{self.variable}={raw!r} is not allowed: expected a whole number{self.unit} "
                f"from {self.low} to {self.high} (default {default})"
            )
        return value


WORKERS = IntSetting("SAGEMAKER_MODEL_SERVER_WORKERS", 1, 256)
TIMEOUT = IntSetting("SAGEMAKER_MODEL_SERVER_TIMEOUT", 1, 3600, " of seconds")
PORT = IntSetting("SAGEMAKER_BIND_TO_PORT", 1, 65535)
MAX_PAYLOAD_MB = IntSetting("SAGEMAKER_MAX_PAYLOAD_IN_MB", 1, BATCH_MAX_PAYLOAD_MB, " of MB")
MAX_CONCURRENT_TRANSFORMS = IntSetting("SAGEMAKER_MAX_CONCURRENT_TRANSFORMS", 1, 1024)
# Predict with the model's compiled trees when they match it and this machine (true, the
# default), or always with the model's library (false): a way back without retraining.
COMPILED_PREDICTOR = "MODEL_COMPILED_PREDICTOR"
# A real-time endpoint's container must answer an invocation within 60 s.
REALTIME_TIMEOUT_SECONDS = 60


def _bool_var(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    raise ConfigError(f"{name}={raw!r} is not allowed: expected 'true' or 'false'")


def _choice_var(env: Mapping[str, str], name: str, default: str, allowed: tuple[str, ...]) -> str:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if raw.upper() in allowed:
        return raw.upper()
    raise ConfigError(f"{name}={raw!r} is not allowed: expected one of {', '.join(allowed)}")


@dataclass(frozen=True)
class ServerConfig:
    """Everything the server needs to know before it starts."""

    port: int
    workers: int
    timeout_s: int
    batch: bool
    max_payload_mb: int
    batch_strategy: str
    max_concurrent_transforms: int
    compiled_predictor: bool = True

    @property
    def max_payload_bytes(self) -> int:
        return self.max_payload_mb * MIB

    @property
    def predict_threads(self) -> int:
        """OpenMP threads per prediction: one per worker when workers share the CPUs.

        Several workers each running one OpenMP team per core oversubscribe
        the CPUs: measured on 2 CPUs with 2 workers, 1-record requests fell from
        2,600 to 34 per second.
        """
        return available_cpus() if self.workers == 1 else 1

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServerConfig:
        env = os.environ if env is None else env
        workers = WORKERS.read(env, available_cpus())
        batch = _bool_var(env, "SAGEMAKER_BATCH", False)
        if batch and env.get(MAX_PAYLOAD_MB.variable, "").strip() == "0":
            raise ConfigError(UNBOUNDED_PAYLOAD)
        # Batch transform sets it; the serving stack sets it for an asynchronous endpoint,
        # whose requests may be larger than a real-time one's 6 MB.
        max_payload_mb = MAX_PAYLOAD_MB.read(env, REALTIME_MAX_PAYLOAD_MB)
        return cls(
            port=PORT.read(env, 8080),
            workers=workers,
            timeout_s=TIMEOUT.read(env, REALTIME_TIMEOUT_SECONDS),
            batch=batch,
            max_payload_mb=max_payload_mb,
            batch_strategy=_choice_var(
                env, "SAGEMAKER_BATCH_STRATEGY", "MULTI_RECORD", BATCH_STRATEGIES
            ),
            max_concurrent_transforms=MAX_CONCURRENT_TRANSFORMS.read(env, workers),
            compiled_predictor=_bool_var(env, COMPILED_PREDICTOR, True),
        )
