"""What the emulator skipped: resource types it does not create and properties it ignores.

A green rehearsal proves the order, the references, the custom resources and the updates;
it proves nothing about what moto does not model. This module says what that is, read from
moto's own source: for each resource type, the properties its CloudFormation model reads.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from moto.cloudformation.parsing import get_model_map

# Types moto ignores that the rehearsal plays itself (`deployer`, `events`).
EMULATED_HERE = {
    "AWS::CloudFormation::WaitCondition": "released by a SUCCESS signal to its handle, failed "
    "by a FAILURE one, timed out without one",
    "AWS::CloudFormation::WaitConditionHandle": "its URL is the rehearsal's, which records "
    "each signal",
}
NOT_MODELLED = (
    "IAM is not enforced: moto ignores every policy's resources and conditions, so a green "
    "rehearsal is no permission test (tests/deploy/test_iam_proof.py is: it evaluates every "
    "recorded call against the synthesized policies).",
    "Images are not built: their manifests are pushed, so SageMaker pulls nothing and trains "
    "nothing (moto completes every training job at once, with no model file).",
    "Timing is not modelled: SageMaker, S3 and Lambda act at once; quotas and limits are "
    "not checked.",
    "EventBridge delivers only SageMaker's training-job state-change events, sent by the "
    "rehearsal to the rules moto keeps, whose Lambda targets it runs; the targets' "
    "invoke permissions are not checked.",
)


@dataclass
class Gaps:
    """Per resource type: how many, and what was skipped."""

    resources: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    not_emulated: set[str] = field(default_factory=set)
    ignored_properties: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    passed_through: set[str] = field(default_factory=set)
    custom: dict[str, str] = field(default_factory=dict)

    def add_template(
        self, stack: str, template: dict[str, Any], custom_handling: dict[str, str]
    ) -> None:
        models = get_model_map()
        for logical_id, resource in template["Resources"].items():
            kind = resource["Type"]
            self.resources[kind].add(f"{stack}/{logical_id}")
            if kind.startswith("Custom::"):
                self.custom.setdefault(kind, custom_handling.get(logical_id, "handler run"))
                continue
            if kind in EMULATED_HERE:
                continue
            model = models.get(kind)
            if model is None:
                self.not_emulated.add(kind)
                continue
            read, whole = properties_read(model)
            if whole:
                self.passed_through.add(kind)
                continue
            self.ignored_properties[kind].update(set(resource.get("Properties", {})) - read)

    def merge(self, other: Gaps) -> None:
        for kind, names in other.resources.items():
            self.resources[kind] |= names
        self.not_emulated |= other.not_emulated
        for kind, names in other.ignored_properties.items():
            self.ignored_properties[kind] |= names
        self.passed_through |= other.passed_through
        self.custom = {**other.custom, **self.custom}

    def lines(self) -> list[str]:
        out = [
            "What the emulator skipped (read from moto's source; the rehearsal proves none of it):"
        ]
        for kind in sorted(self.not_emulated):
            out.append(
                f"  {kind} x{len(self.resources[kind])}: not emulated at all (moto creates nothing)"
            )
        for kind, how in sorted(self.custom.items()):
            out.append(f"  {kind} x{len(self.resources[kind])}: custom resource, {how}")
        for kind, how in sorted(EMULATED_HERE.items()):
            if kind in self.resources:
                out.append(f"  {kind} x{len(self.resources[kind])}: emulated here, {how}")
        for kind in sorted(self.ignored_properties):
            ignored = sorted(self.ignored_properties[kind])
            if ignored:
                out.append(f"  {kind}: properties ignored: {', '.join(ignored)}")
        for kind in sorted(self.passed_through):
            out.append(f"  {kind}: properties passed to moto's backend as they are (not itemized)")
        out.extend(f"  {line}" for line in NOT_MODELLED)
        return out


def properties_read(model: Any) -> tuple[set[str], bool]:
    """Property names that moto's `create_from_cloudformation_json` for this model reads, and
    whether it hands the properties on whole (then nothing can be itemized).

    Read: `properties["X"]`, `properties.get("X")`, `"X" in properties`, names listed in a
    tuple or list (moto loops over such lists), and the property that names the resource.
    Handed on whole: `**properties`, or `properties` passed as an argument.
    """
    source = textwrap.dedent(inspect.getsource(model.create_from_cloudformation_json))
    read: set[str] = set()
    name_property = model.cloudformation_name_type()
    if name_property:
        read.add(name_property)
    whole = False
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            read.add(str(node.slice.value))
        elif isinstance(node, ast.Compare) and isinstance(node.left, ast.Constant):
            read.add(str(node.left.value))
        elif isinstance(node, ast.Tuple | ast.List | ast.Set):
            read.update(str(e.value) for e in node.elts if isinstance(e, ast.Constant))
        elif isinstance(node, ast.Call):
            arguments = [*node.args, *(k.value for k in node.keywords)]
            if any(k.arg is None for k in node.keywords) or any(
                isinstance(a, ast.Name) and a.id == "properties" for a in arguments
            ):
                whole = True
            if (
                isinstance(node.func, ast.Attribute)
                and node.func.attr == "get"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                read.add(str(node.args[0].value))
    return read, whole
