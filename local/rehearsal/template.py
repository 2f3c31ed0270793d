"""What CloudFormation does to a template before and while it deploys it, in pure functions.

moto's CloudFormation resolves `Ref`, `Fn::GetAtt`, `Fn::Sub` and `Fn::Join`, but knows
neither `Fn::GetStackOutput` (the app's weak cross-stack references) nor when a change
replaces a resource. These functions supply both: references between stacks are read from
the producer stack's real outputs, and replacement follows CloudFormation's resource schemas
(a change to a create-only property replaces the resource, and a new physical id changes
every resource that references it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from graphlib import TopologicalSorter
from typing import Any

from cfnlint.schema.manager import PROVIDER_SCHEMA_MANAGER

PSEUDO_PREFIX = "AWS::"
SUB_REFERENCE = re.compile(r"\$\{([^}!][^}]*)\}")


class TemplateError(ValueError):
    """What CloudFormation itself would refuse, with the stack, resource and reason."""


def walk(value: Any) -> Iterator[dict[str, Any]]:
    """Every object in a template value, depth first."""
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk(item)


def references(resource: dict[str, Any]) -> set[str]:
    """Logical ids a resource refers to (`Ref`, `Fn::GetAtt`, `Fn::Sub`) or depends on."""
    found: set[str] = set()
    for node in walk(resource.get("Properties", {})):
        if isinstance(node.get("Ref"), str):
            found.add(node["Ref"])
        if "Fn::GetAtt" in node:
            found.add(node["Fn::GetAtt"][0])
        if "Fn::Sub" in node:
            text = node["Fn::Sub"] if isinstance(node["Fn::Sub"], str) else node["Fn::Sub"][0]
            found.update(name.split(".")[0] for name in SUB_REFERENCE.findall(text))
    depends_on = resource.get("DependsOn", [])
    found.update([depends_on] if isinstance(depends_on, str) else depends_on)
    return {name for name in found if not name.startswith(PSEUDO_PREFIX)}


def creation_order(resources: dict[str, dict[str, Any]]) -> list[str]:
    """Logical ids, each after everything it refers to (CloudFormation's order)."""
    graph = {
        logical_id: references(resource) & set(resources)
        for logical_id, resource in resources.items()
    }
    return list(TopologicalSorter(graph).static_order())


def dependents(resources: dict[str, dict[str, Any]], roots: set[str]) -> set[str]:
    """`roots` and every resource that refers to one of them, transitively."""
    found = set(roots)
    for logical_id in creation_order(resources):
        if references(resources[logical_id]) & found:
            found.add(logical_id)
    return found


def replace_nodes(value: Any, replace: Callable[[dict[str, Any]], Any | None]) -> Any:
    """A copy of `value` in which each object for which `replace` returns a value becomes it."""
    if isinstance(value, dict):
        replaced = replace(value)
        if replaced is not None:
            return replaced
        return {key: replace_nodes(item, replace) for key, item in value.items()}
    if isinstance(value, list):
        return [replace_nodes(item, replace) for item in value]
    return value


def read_stack_outputs(
    template: Any, outputs: dict[str, dict[str, str]], region: str, stack: str
) -> Any:
    """Replaces every `Fn::GetStackOutput` with the producer's output, as deployed.

    A reference that names another region is refused: that is where the value would be read.
    """

    def resolve(node: dict[str, Any]) -> Any | None:
        if "Fn::GetStackOutput" not in node:
            return None
        spec = node["Fn::GetStackOutput"]
        named_region = spec.get("Region", {"Ref": "AWS::Region"})
        if named_region != {"Ref": "AWS::Region"} and named_region != region:
            raise TemplateError(
                f"{stack}: Fn::GetStackOutput reads {spec['StackName']}.{spec['OutputName']} "
                f"in region {named_region!r}, but the stack deploys to {region!r}"
            )
        producer = outputs.get(spec["StackName"])
        if producer is None:
            raise TemplateError(f"{stack}: stack {spec['StackName']} is not deployed")
        if spec["OutputName"] not in producer:
            raise TemplateError(
                f"{stack}: stack {spec['StackName']} has no output {spec['OutputName']}"
            )
        return producer[spec["OutputName"]]

    return replace_nodes(template, resolve)


def substitute_resources(template: Any, values: dict[str, dict[str, Any]]) -> Any:
    """Replaces `Ref` and `Fn::GetAtt` of the resources in `values` with their known values
    (`values[id]["Ref"]` and `values[id][attribute]`).
    """

    def resolve(node: dict[str, Any]) -> Any | None:
        if isinstance(node.get("Ref"), str) and node["Ref"] in values:
            return values[node["Ref"]]["Ref"]
        if "Fn::GetAtt" in node and node["Fn::GetAtt"][0] in values:
            logical_id, attribute = node["Fn::GetAtt"]
            known = values[logical_id]
            if attribute not in known:
                raise TemplateError(f"{logical_id} returned no attribute {attribute!r}")
            return known[attribute]
        return None

    return replace_nodes(template, resolve)


def create_only_paths(resource_type: str) -> list[list[str]]:
    """The property paths whose change replaces a resource of this type (its schema's
    createOnlyProperties); a type without a schema (a custom resource) has none.
    """
    try:
        schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema("us-east-1", resource_type)
    except Exception:  # cfn-lint raises its own ResourceNotFoundError
        return []
    return [
        path.removeprefix("/properties/").split("/")
        for path in schema.schema.get("createOnlyProperties", [])
    ]


def _at(properties: dict[str, Any], path: list[str]) -> Any:
    value: Any = properties
    for part in path:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def needs_replacement(resource_type: str, old: dict[str, Any], new: dict[str, Any]) -> bool:
    return any(_at(old, path) != _at(new, path) for path in create_only_paths(resource_type))


def fingerprint(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
