"""What SageMaker does around our two containers, for the tools that run them outside AWS.

`make demo` runs the programs on the host and `make image-test` inside the images; both read
the job and the model's environment back from the synthesized templates (never a second
copy), lay out `/opt/ml` for a training job as SageMaker does, read the metrics from the log
with the job's definitions, and package the model as `model.tar.gz` for a read-only endpoint.
"""

from __future__ import annotations

import json
import re
import shutil
import stat
import subprocess
import tarfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / "data"
# What SageMaker writes into resourceconfig.json for a one-instance job.
RESOURCE_CONFIG = {"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0"}


class JobError(Exception):
    """What went wrong, said for the person running the tool."""


@dataclass(frozen=True)
class Templates:
    """The synthesized CloudFormation templates, by stack name."""

    by_stack: dict[str, dict[str, Any]]
    # The build arguments of the app's images (one set: both are built alike).
    image_build_args: dict[str, str]

    @classmethod
    def read(cls, cdk_out: Path) -> Templates:
        manifest = json.loads((cdk_out / "manifest.json").read_text())
        by_stack = {
            name: json.loads((cdk_out / artifact["properties"]["templateFile"]).read_text())
            for name, artifact in manifest["artifacts"].items()
            if artifact["type"] == "aws:cloudformation:stack"
        }
        build_args = {
            json.dumps(image["source"].get("dockerBuildArgs", {}), sort_keys=True)
            for assets in cdk_out.glob("*.assets.json")
            for image in json.loads(assets.read_text()).get("dockerImages", {}).values()
        }
        if len(build_args) != 1:
            raise JobError(f"expected the app's images built alike, found build args {build_args}")
        return cls(by_stack, json.loads(build_args.pop()))

    def resources(self, resource_type: str) -> list[dict[str, Any]]:
        return [
            resource
            for template in self.by_stack.values()
            for resource in template.get("Resources", {}).values()
            if resource["Type"] == resource_type
        ]

    def the(self, resource_type: str) -> dict[str, Any]:
        """The only resource of ``resource_type`` in the app."""
        found = self.resources(resource_type)
        if len(found) != 1:
            raise JobError(f"expected one {resource_type} in the app, found {len(found)}")
        return found[0]["Properties"]

    def client_function(self, handler: str = "lambda_function.lambda_handler") -> dict[str, Any]:
        """The client's Lambda of this handler (not one of the custom resources')."""
        for resource in self.resources("AWS::Lambda::Function"):
            if resource["Properties"].get("Handler") == handler:
                return resource["Properties"]
        raise JobError(f"no Lambda with handler {handler} in the app")

    def summary(self) -> list[str]:
        lines = []
        for name, template in self.by_stack.items():
            types = Counter(r["Type"] for r in template.get("Resources", {}).values())
            counts = ", ".join(f"{n} {t.split('::', 1)[1]}" for t, n in sorted(types.items()))
            lines.append(f"{name}: {sum(types.values())} resources ({counts})")
        return lines


def literal_values(mapping: dict[str, Any]) -> dict[str, str]:
    """The entries of a template mapping known at synth time (not CloudFormation tokens)."""
    return {key: value for key, value in mapping.items() if isinstance(value, str)}


def synthesize(cdk_out: Path, context: Sequence[str] = ()) -> Templates:
    """``cdk synth`` into ``cdk_out``, with ``-c KEY=VALUE`` for each of ``context``."""
    command = ["npx", "--no-install", "cdk", "synth", "--quiet", "--output", str(cdk_out)]
    command += [argument for item in context for argument in ("-c", item)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise JobError(f"`{' '.join(command)}` failed:\n{result.stdout}{result.stderr}")
    return Templates.read(cdk_out)


# --- training, as a SageMaker training job runs it ----------------------------------------


def fresh_dir(path: Path) -> Path:
    """An empty directory at ``path`` (an earlier run's read-only model tree included)."""
    if path.exists():
        for child in [path, *path.rglob("*")]:
            child.chmod(child.stat().st_mode | stat.S_IWUSR)
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def prepare_training_tree(ml_root: Path, job: dict[str, Any]) -> None:
    """``/opt/ml/input`` as SageMaker lays it out for the training job the stack starts."""
    config_dir = ml_root / "input" / "config"
    config_dir.mkdir(parents=True)
    (config_dir / "hyperparameters.json").write_text(json.dumps(job["HyperParameters"]))
    channels = [channel["ChannelName"] for channel in job["Channels"]]
    input_config = {
        name: {
            "TrainingInputMode": "File",
            "S3DistributionType": "FullyReplicated",
            "RecordWrapperType": "None",
        }
        for name in channels
    }
    (config_dir / "inputdataconfig.json").write_text(json.dumps(input_config))
    (config_dir / "resourceconfig.json").write_text(json.dumps(RESOURCE_CONFIG))
    for name in channels:
        # The storage stack deploys data/<channel>/ to s3://<data bucket>/<channel>/.
        shutil.copytree(DATA_DIR / name, ml_root / "input" / "data" / name)


def parse_metrics(log: str, definitions: list[dict[str, str]]) -> dict[str, float]:
    """Apply the job's metric definitions to its log, as SageMaker does (last match wins)."""
    metrics = {}
    for definition in definitions:
        matches = re.findall(definition["Regex"], log)
        if not matches:
            raise JobError(f"metric {definition['Name']!r} ({definition['Regex']}) not in the log")
        metrics[definition["Name"]] = float(matches[-1])
    return metrics


# --- packaging, as SageMaker uploads /opt/ml/model and hosting unpacks it -----------------


def package_model(model_dir: Path, archive: Path) -> None:
    """``model.tar.gz`` with the model directory's files at the archive's root."""
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(model_dir.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(model_dir)), recursive=False)


def unpack_model(archive: Path, serving_root: Path) -> Path:
    """Unpack into ``<serving_root>/model`` and make it read-only, as on an endpoint."""
    model_dir = serving_root / "model"
    model_dir.mkdir(parents=True)
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(model_dir, filter="data")
    for path in [*model_dir.rglob("*"), model_dir]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    return model_dir
