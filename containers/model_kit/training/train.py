"""The ``train`` entry point: configuration, data, model, metrics — or a failure reason.

Exit codes: 0 trained; 1 bad input or configuration (the reason says what to
fix); 2 unexpected error (a bug: the reason carries the exception and a
traceback follows it); 143 stopped by SIGTERM, the shell's 128 + 15, so that
whoever reads the code sees which signal ended the run.
"""

from __future__ import annotations

import logging
import sys
import traceback

from model_kit import families
from model_kit.paths import MLPaths
from model_kit.training.errors import TrainingError, TrainingStopped
from model_kit.training.failure import report_failure
from model_kit.training.hyperparameters import read_hyperparameters
from model_kit.training.job_config import check_input_data_config, log_resource_config
from model_kit.training.prepare import prepare_data
from model_kit.training.stop_signal import StopRequest

log = logging.getLogger("model_kit.training")

EXIT_BAD_INPUT = 1
EXIT_UNEXPECTED = 2
EXIT_STOPPED = 128 + 15


def configure_logging() -> None:
    """Line-buffered output: SageMaker ships each line to CloudWatch as it is written."""
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(line_buffering=True)
    logging.basicConfig(
        stream=sys.stdout, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )


def train(paths: MLPaths, stop: StopRequest) -> None:
    """Configuration, then data, then model: each step fails with a reason of its own."""
    stop.phase = "reading the configuration"
    try:
        family = families.get(families.configured())
    except families.UnknownFamily as exc:
        raise TrainingError(f"{families.VARIABLE}: {exc}") from exc
    log.info("model family: %s", family.name)
    hp = read_hyperparameters(paths.hyperparameters_file, family.name)
    log.info("hyperparameters: %s", hp.as_dict())
    check_input_data_config(paths)
    log_resource_config(paths)
    stop.phase = "loading data"
    data = prepare_data(paths, hp)
    stop.phase = "starting to train, before the first iteration"
    log.info("data loaded; starting to train")
    # Imported only now: model libraries take about a second to import, which a run with
    # bad input need not wait for.
    from model_kit.training.modelling import train_and_save

    train_and_save(paths, hp, data, stop, family)


def main() -> int:
    """Run training; turn every way it can end into an exit code and, if failed, a reason."""
    configure_logging()
    paths = MLPaths.from_env()
    stop = StopRequest().install()
    try:
        train(paths, stop)
    except TrainingStopped as stopped:
        stop.finish()
        report_failure(paths, str(stopped))
        return EXIT_STOPPED
    except TrainingError as error:
        stop.finish()
        report_failure(paths, str(error))
        return EXIT_BAD_INPUT
    except Exception as error:
        stop.finish()
        report_failure(
            paths, f"unexpected error: {type(error).__name__}: {error}", traceback.format_exc()
        )
        return EXIT_UNEXPECTED
    return 0
