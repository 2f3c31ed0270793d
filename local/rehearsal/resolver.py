"""Template values as CloudFormation hands them to a handler or to IAM, for a deployed stack.

moto resolves references inside its own CloudFormation, but not always as AWS does (a log
group's `Arn` comes back without AWS's trailing `:*`, which would turn a correct log grant
into a wrong one). Custom-resource properties and IAM policies are therefore resolved here,
from the stack's physical ids, with AWS's attribute formats.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from local.rehearsal.template import SUB_REFERENCE, TemplateError

PARTITION = "aws"
URL_SUFFIX = "amazonaws.com"


@dataclass
class Resolver:
    stack: str
    region: str
    account: str
    resources: dict[str, dict[str, Any]]
    physical_ids: dict[str, str]
    # Custom resources' answers: logical id -> {"Ref": physical id, attribute: value}.
    custom: dict[str, dict[str, Any]]
    role_arn: Callable[[str], str]

    def __call__(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self(item) for item in value]
        if not isinstance(value, dict):
            return value
        if "Ref" in value:
            return self.ref(value["Ref"])
        if "Fn::GetAtt" in value:
            return self.attribute(*value["Fn::GetAtt"])
        if "Fn::Join" in value:
            delimiter, items = value["Fn::Join"]
            return delimiter.join(str(self(item)) for item in items)
        if "Fn::Sub" in value:
            return self._sub(value["Fn::Sub"])
        if "Fn::Select" in value:
            index, items = value["Fn::Select"]
            return self(items)[int(index)]
        if any(key.startswith("Fn::") for key in value):
            raise TemplateError(f"{self.stack}: the rehearsal cannot resolve {value}")
        return {key: self(item) for key, item in value.items()}

    def _sub(self, spec: str | list[Any]) -> str:
        text, variables = (spec, {}) if isinstance(spec, str) else spec
        for name, item in variables.items():
            text = text.replace(f"${{{name}}}", str(self(item)))

        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if "." in name:
                return str(self.attribute(*name.split(".", 1)))
            return str(self.ref(name))

        return SUB_REFERENCE.sub(one, text)

    def ref(self, name: str) -> str:
        pseudo = {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account,
            "AWS::Partition": PARTITION,
            "AWS::URLSuffix": URL_SUFFIX,
            "AWS::StackName": self.stack,
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.custom:
            return self.custom[name]["Ref"]
        if name not in self.physical_ids:
            raise TemplateError(f"{self.stack}: {name} is not deployed")
        return self.physical_ids[name]

    def attribute(self, logical_id: str, attribute: str) -> Any:
        if logical_id in self.custom:
            known = self.custom[logical_id]
            if attribute not in known:
                raise TemplateError(f"{self.stack}: {logical_id} returned no {attribute!r}")
            return known[attribute]
        kind = self.resources[logical_id]["Type"]
        physical = self.ref(logical_id)
        arns = {
            "AWS::Lambda::Function": f"arn:{PARTITION}:lambda:{self.region}:{self.account}:"
            f"function:{physical}",
            "AWS::S3::Bucket": f"arn:{PARTITION}:s3:::{physical}",
            # AWS's Arn attribute of a log group ends in ":*" (all its streams).
            "AWS::Logs::LogGroup": f"arn:{PARTITION}:logs:{self.region}:{self.account}:"
            f"log-group:{physical}:*",
            "AWS::SQS::Queue": f"arn:{PARTITION}:sqs:{self.region}:{self.account}:"
            f"{physical.rsplit('/', 1)[-1]}",
        }
        if attribute == "Arn" and kind in arns:
            return arns[kind]
        if (kind, attribute) == ("AWS::IAM::Role", "Arn"):
            return self.role_arn(physical)
        if (kind, attribute) == ("AWS::S3::Bucket", "DomainName"):
            return f"{physical}.s3.{URL_SUFFIX}"
        raise TemplateError(f"{self.stack}: the rehearsal cannot read {kind}.{attribute}")
