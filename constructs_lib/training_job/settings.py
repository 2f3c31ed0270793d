"""What a `TrainingJob` needs to know about its job, and how long a deploy can wait for one.

The construct owns these rules; the app's config parses values into `TrainingJobSettings` and
refuses a run time the construct could not wait for.
"""

from __future__ import annotations

from dataclasses import dataclass

# A CloudFormation wait condition waits at most 12 hours for its signal (Timeout 43200 s).
WAIT_CONDITION_LIMIT_SECONDS = 43_200
# Instance provisioning, image download and model upload happen outside MaxRuntimeInSeconds.
TRAINING_STARTUP_MARGIN_SECONDS = 600
LONGEST_TRAINING_WAIT_SECONDS = WAIT_CONDITION_LIMIT_SECONDS - TRAINING_STARTUP_MARGIN_SECONDS


@dataclass(frozen=True)
class TrainingJobSettings:
    instance_type: str
    instance_count: int
    volume_size_gb: int
    max_run_seconds: int
    use_spot: bool
    max_wait_seconds: int | None
    hyperparameters: dict[str, str]
    metric_definitions: list[dict[str, str]]

    @property
    def wait_budget_seconds(self) -> int:
        """How long CloudFormation must be willing to wait for the job, start-up included."""
        job_seconds = self.max_wait_seconds if self.use_spot else self.max_run_seconds
        return int(job_seconds or 0) + TRAINING_STARTUP_MARGIN_SECONDS
