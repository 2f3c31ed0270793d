"""Synthesizes the app in process, with the same context `cdk.json` gives the CLI."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
NODE_BIN = ROOT / "node_modules" / ".bin"
# jsii starts its Node process on first import of aws_cdk: use the pinned Node 22 when
# `make setup` installed it, as `npx cdk` does, so no end-of-life banner is printed.
if (NODE_BIN / "node").exists():
    os.environ["PATH"] = f"{NODE_BIN}{os.pathsep}{os.environ['PATH']}"
# Templates must not depend on the developer's AWS account (the CLI sets these with credentials).
for _variable in ("CDK_DEFAULT_ACCOUNT", "CDK_DEFAULT_REGION"):
    os.environ.pop(_variable, None)


def cdk_json_context() -> dict[str, Any]:
    return json.loads((ROOT / "cdk.json").read_text())["context"]


def context_with(**overrides: Any) -> dict[str, Any]:
    """cdk.json's context plus `-c`-style overrides: `context_with(**{"config.a.b": "1"})`."""
    return {**cdk_json_context(), **overrides}


@dataclass
class Synthesized:
    outdir: Path
    templates: dict[str, dict[str, Any]]
    manifest: dict[str, Any]

    def template(self, suffix: str) -> dict[str, Any]:
        """The template of the stack named `<prefix>-<suffix>`."""
        return self.templates[f"custom-sm-{suffix}"]

    def resources(self, suffix: str, resource_type: str) -> dict[str, dict[str, Any]]:
        return {
            logical_id: resource
            for logical_id, resource in self.template(suffix)["Resources"].items()
            if resource["Type"] == resource_type
        }


def synthesize(outdir: Path, context: dict[str, Any] | None = None) -> Synthesized:
    from app import build_app

    build_app(context=context or cdk_json_context(), outdir=str(outdir)).synth()
    manifest = json.loads((outdir / "manifest.json").read_text())
    templates = {
        path.name.removesuffix(".template.json"): json.loads(path.read_text())
        for path in outdir.glob("*.template.json")
    }
    return Synthesized(outdir, templates, manifest)
