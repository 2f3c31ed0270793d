"""The parts of a synthesized cloud assembly that `cdk deploy` reads: stacks, order, assets."""

from __future__ import annotations

import json
from dataclasses import dataclass
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class FileAsset:
    """A file or folder (zipped) that the CLI uploads to the bootstrap bucket."""

    source: Path
    packaging: str
    bucket: str
    key: str


@dataclass(frozen=True)
class ImageAsset:
    """A Docker build context whose image the CLI pushes to the bootstrap repository."""

    directory: Path
    dockerfile: str
    platform: str | None
    repository: str
    tag: str
    build_args: dict[str, str]


@dataclass(frozen=True)
class StackArtifact:
    name: str
    # aws://ACCOUNT/REGION, with unknown-account / unknown-region for "the credentials' own".
    environment: str
    template_text: str
    dependencies: tuple[str, ...]
    required_bootstrap_version: int
    files: tuple[FileAsset, ...]
    images: tuple[ImageAsset, ...]
    # Asset hash -> its folder or file in the assembly (to find a function's code).
    asset_paths: dict[str, Path]

    @property
    def template(self) -> dict[str, Any]:
        return json.loads(self.template_text)

    @property
    def region(self) -> str | None:
        """The region the stack is bound to, or None when it deploys where the CLI points."""
        region = self.environment.rsplit("/", 1)[-1]
        return None if region == "unknown-region" else region


def read_assembly(outdir: Path) -> list[StackArtifact]:
    """The assembly's stacks in the order `cdk deploy --all` deploys them."""
    manifest = json.loads((outdir / "manifest.json").read_text())
    artifacts = manifest["artifacts"]
    stacks = {
        name: artifact
        for name, artifact in artifacts.items()
        if artifact["type"] == "aws:cloudformation:stack"
    }
    order = TopologicalSorter(
        {
            name: [d for d in stack.get("dependencies", []) if d in stacks]
            for name, stack in stacks.items()
        }
    ).static_order()
    return [_stack(outdir, name, stacks[name], artifacts) for name in order]


def _stack(
    outdir: Path, name: str, stack: dict[str, Any], artifacts: dict[str, Any]
) -> StackArtifact:
    properties = stack["properties"]
    files: list[FileAsset] = []
    images: list[ImageAsset] = []
    asset_paths: dict[str, Path] = {}
    for dependency in stack.get("dependencies", []):
        artifact = artifacts.get(dependency, {})
        if artifact.get("type") != "cdk:asset-manifest":
            continue
        assets = json.loads((outdir / artifact["properties"]["file"]).read_text())
        for asset_hash, asset in assets.get("files", {}).items():
            source = outdir / asset["source"]["path"]
            asset_paths[asset_hash] = source
            for destination in asset["destinations"].values():
                files.append(
                    FileAsset(
                        source,
                        asset["source"].get("packaging", "file"),
                        destination["bucketName"],
                        destination["objectKey"],
                    )
                )
        for asset in assets.get("dockerImages", {}).values():
            for destination in asset["destinations"].values():
                images.append(
                    ImageAsset(
                        outdir / asset["source"]["directory"],
                        asset["source"].get("dockerFile", "Dockerfile"),
                        asset["source"].get("platform"),
                        destination["repositoryName"],
                        destination["imageTag"],
                        asset["source"].get("dockerBuildArgs", {}),
                    )
                )
    return StackArtifact(
        name=name,
        environment=stack["environment"],
        template_text=(outdir / properties["templateFile"]).read_text(),
        dependencies=tuple(
            d for d in stack.get("dependencies", []) if artifacts[d]["type"] == stack["type"]
        ),
        required_bootstrap_version=int(properties.get("requiresBootstrapStackVersion", 0)),
        files=tuple(files),
        images=tuple(images),
        asset_paths=asset_paths,
    )
