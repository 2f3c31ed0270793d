"""What SageMaker says about the job: its input channels and the host it runs on.

Both files are optional so that the program also runs outside SageMaker; when
present they are logged (they explain a job's behaviour in CloudWatch) and the
channel list is checked against what this algorithm needs.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from model_kit.paths import MLPaths
from model_kit.training.errors import TrainingError, describe_items

log = logging.getLogger(__name__)

TRAINING_CHANNEL = "training"
VALIDATION_CHANNEL = "validation"
KNOWN_CHANNELS = (TRAINING_CHANNEL, VALIDATION_CHANNEL)


def _read_json_object(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TrainingError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(content, dict):
        raise TrainingError(f"{path} must hold a JSON object, not {type(content).__name__}")
    return content


def check_input_data_config(paths: MLPaths) -> None:
    """Log the declared channels; refuse a job without ``training`` or in Pipe mode.

    Pipe mode streams a channel through a FIFO instead of files; this program
    reads files (File and FastFile modes), so it says so instead of hanging.
    """
    config = _read_json_object(paths.input_data_config_file)
    if config is None:
        log.info("no %s: reading the channel folders as they are", paths.input_data_config_file)
        return
    for name, channel in sorted(config.items()):
        settings = channel if isinstance(channel, dict) else {}
        log.info(
            "channel %s: content type %s, input mode %s, distribution %s",
            name,
            settings.get("ContentType", "unspecified"),
            settings.get("TrainingInputMode", "unspecified"),
            settings.get("S3DistributionType", "unspecified"),
        )
        if settings.get("TrainingInputMode") == "Pipe":
            raise TrainingError(
                f"channel {name!r} uses TrainingInputMode 'Pipe'; this algorithm reads files: "
                "use 'File' or 'FastFile'"
            )
        if name not in KNOWN_CHANNELS:
            log.warning("channel %s is not used by this algorithm and is ignored", name)
    if TRAINING_CHANNEL not in config:
        raise TrainingError(
            f"{paths.input_data_config_file.name} declares the channels "
            f"{describe_items(sorted(config))} but not {TRAINING_CHANNEL!r}, which is required "
            f"(optional: {VALIDATION_CHANNEL!r})"
        )


def log_resource_config(paths: MLPaths) -> None:
    """Log the host; warn that extra hosts would only repeat the same single-node work."""
    config = _read_json_object(paths.resource_config_file)
    if config is None:
        log.info("no %s: not running on a SageMaker host", paths.resource_config_file)
        return
    hosts = config.get("hosts") or []
    log.info(
        "host %s (%s) of hosts %s",
        config.get("current_host", "unknown"),
        config.get("current_instance_type", "unknown instance type"),
        hosts,
    )
    if isinstance(hosts, list) and len(hosts) > 1:
        log.warning(
            "this algorithm trains on one host; the %d other hosts repeat the same work: "
            "use InstanceCount 1",
            len(hosts) - 1,
        )
