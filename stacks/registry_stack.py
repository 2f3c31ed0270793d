"""The training and inference images, built from the one `containers/` build context."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import CfnOutput, IgnoreMode, Stack
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ssm as ssm
from constructs import Construct

CONTAINERS_DIR = Path(__file__).resolve().parent.parent / "containers"
# Caches and virtualenvs must not change the image hash (and so retrain a model).
BUILD_CONTEXT_EXCLUDE = [
    "**/__pycache__",
    "**/*.pyc",
    "**/.pytest_cache",
    "**/.ruff_cache",
    "**/.mypy_cache",
    "**/.venv",
    "**/venv",
    "**/*.egg-info",
    "**/.DS_Store",
]


class RegistryStack(Stack):
    """Builds both images as CDK assets (pushed by `cdk deploy`) and records their URIs.

    A stack of assets alone would be an empty template, which CloudFormation refuses to
    deploy; the SSM parameters give it real resources, and they tell operators (and
    `make demo`) which image the app currently runs.
    """

    def __init__(self, scope: Construct, construct_id: str, *, name_prefix: str, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.training_image = self._image("Training", "Dockerfile.training", name_prefix)
        self.inference_image = self._image("Inference", "Dockerfile.inference", name_prefix)

    def _image(self, role: str, dockerfile: str, name_prefix: str) -> ecr_assets.DockerImageAsset:
        image = ecr_assets.DockerImageAsset(
            self,
            f"{role}Image",
            directory=str(CONTAINERS_DIR),
            file=dockerfile,
            platform=ecr_assets.Platform.LINUX_AMD64,
            exclude=BUILD_CONTEXT_EXCLUDE,
            ignore_mode=IgnoreMode.GLOB,
            display_name=f"{name_prefix} {role.lower()} image",
        )
        ssm.StringParameter(
            self,
            f"{role}ImageUri",
            parameter_name=f"/{name_prefix}/images/{role.lower()}",
            string_value=image.image_uri,
            description=f"The {role.lower()} image the app deploys.",
        )
        CfnOutput(self, f"{role}ImageUriOutput", value=image.image_uri)
        return image
