"""The training and inference images, built from the one `containers/` build context."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import CfnOutput, IgnoreMode, Stack
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ssm as ssm
from constructs import Construct
from model_kit import families

CONTAINERS_DIR = Path(__file__).resolve().parent.parent / "containers"
# Caches and virtualenvs must not change an image's hash (and so retrain a model); CDK also
# applies containers/.dockerignore.
BUILD_CONTEXT_EXCLUDE = [
    "**/__pycache__",
    "**/*.pyc",
    "**/*.so",
    "**/.pytest_cache",
    "**/.ruff_cache",
    "**/.mypy_cache",
    "**/.venv",
    "**/venv",
    "**/*.egg-info",
    "**/.DS_Store",
]
# Files only one image uses. Each image's context leaves out the other's, so a change to the
# model server rebuilds only the inference image and does not retrain the model (the training
# job is named after its image), and a training-only change does not touch the endpoint's
# container. A Dockerfile must therefore never COPY the other image's files.
TRAINING_ONLY = [
    "Dockerfile.training",
    "bin/train",
    "model_kit/training",
    "requirements-training.txt",
    "requirements-training-*.txt",
]
INFERENCE_ONLY = [
    "Dockerfile.inference",
    "bin/serve",
    "model_kit/serving",
    "requirements-inference.txt",
]


def other_families_files(model_family: str) -> list[str]:
    """The other families' code and requirements: an image holds its own family only, so a
    change to another family neither rebuilds it nor retrains its model."""
    return [
        path
        for name, module in sorted(families.MODULES.items())
        if name != model_family
        for path in (
            f"requirements-{name}.txt",
            f"requirements-training-{name}.txt",
            f"{module.replace('.', '/')}.py",
        )
    ]


class RegistryStack(Stack):
    """Builds both images, for one model family, as CDK assets (pushed by `cdk deploy`) and
    records their URIs.

    A stack of assets alone would be an empty template, which CloudFormation refuses to
    deploy; the SSM parameters give it real resources, and they tell operators (and
    `make demo`) which image the app currently runs.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name_prefix: str,
        model_family: str,
        containers_dir: Path = CONTAINERS_DIR,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.model_family = model_family
        self.name_prefix = name_prefix
        others = other_families_files(model_family)
        self.training_image = self._image("Training", containers_dir, [*INFERENCE_ONLY, *others])
        self.inference_image = self._image("Inference", containers_dir, [*TRAINING_ONLY, *others])

    def _image(
        self, role: str, containers_dir: Path, left_out: list[str]
    ) -> ecr_assets.DockerImageAsset:
        image = ecr_assets.DockerImageAsset(
            self,
            f"{role}Image",
            directory=str(containers_dir),
            file=f"Dockerfile.{role.lower()}",
            platform=ecr_assets.Platform.LINUX_AMD64,
            exclude=[*BUILD_CONTEXT_EXCLUDE, *left_out],
            build_args={families.VARIABLE: self.model_family},
            ignore_mode=IgnoreMode.DOCKER,
            display_name=f"{self.name_prefix} {role.lower()} image",
        )
        ssm.StringParameter(
            self,
            f"{role}ImageUri",
            parameter_name=f"/{self.name_prefix}/images/{role.lower()}",
            string_value=image.image_uri,
            description=f"The {role.lower()} image the app deploys.",
        )
        CfnOutput(self, f"{role}ImageUriOutput", value=image.image_uri)
        return image
