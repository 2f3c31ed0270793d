"""What a `TrainingJob` needs to know about its job, and how long it can wait for one.

The construct owns these rules; the app's config parses values into `TrainingJobSettings` and
refuses a run time the construct could not wait for.
"""

from __future__ import annotations

from dataclasses import dataclass

# CloudFormation gives a custom resource at most one hour (ServiceTimeout 1-3600 s).
CUSTOM_RESOURCE_LIMIT_SECONDS = 3600
# Instance provisioning, image download and model upload happen outside MaxRuntimeInSeconds.
TRAINING_STARTUP_MARGIN_SECONDS = 600
# CloudFormation's ServiceTimeout must exceed the Provider's own total timeout.
PROVIDER_MARGIN_SECONDS = 120
LONGEST_TRAINING_WAIT_SECONDS = (
    CUSTOM_RESOURCE_LIMIT_SECONDS - TRAINING_STARTUP_MARGIN_SECONDS - PROVIDER_MARGIN_SECONDS
)


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
        """How long CloudFormation must be willing to wait for the job, margins included."""
        job_seconds = self.max_wait_seconds if self.use_spot else self.max_run_seconds
        return int(job_seconds or 0) + TRAINING_STARTUP_MARGIN_SECONDS
