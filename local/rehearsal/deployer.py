"""Deploys a cloud assembly into moto's CloudFormation, stack by stack, as `cdk deploy --all`.

What the CDK CLI does: bootstrap resources (assets bucket, image repository, version
parameter), asset publishing, stacks in dependency order, and skipping a stack whose template
did not change. What CloudFormation does beyond moto: weak references read from the producer
stacks' real outputs (`template.read_stack_outputs`), custom resources sent to their handlers
(`custom_resources`), wait conditions released by a signal to their handle (sent through
SageMaker's events and the app's rules, `events`), and replacement decided by the resource
schemas, with each new physical id reaching every resource that refers to it. moto then
creates, updates and deletes.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from local.credentials import FAKE_CREDENTIALS
from local.rehearsal.assembly import FileAsset, StackArtifact
from local.rehearsal.custom_resources import (
    CustomResourceFailed,
    HandlerRunner,
    Outcome,
    ResponseCatcher,
    StackScope,
    new_request_id,
)
from local.rehearsal.events import matches, target_input, training_job_events
from local.rehearsal.resolver import Resolver
from local.rehearsal.template import (
    PSEUDO_PREFIX,
    TemplateError,
    creation_order,
    dependents,
    fingerprint,
    needs_replacement,
    read_stack_outputs,
    replace_nodes,
    substitute_resources,
    walk,
)

ACCOUNT = "123456789012"
BOOTSTRAP_QUALIFIER = "hnb659fds"
BOOTSTRAP_VERSION = 30
PLACEHOLDER_TYPE = "AWS::CloudFormation::WaitConditionHandle"
HANDLE_TYPE = "AWS::CloudFormation::WaitConditionHandle"
WAIT_CONDITION_TYPE = "AWS::CloudFormation::WaitCondition"
# A digest of each resource's inputs, in its Metadata: moto updates a resource only when its
# JSON changes, and a replaced resource must reach the resources that refer to it.
INPUTS_MARKER = "Rehearsal::Inputs"
CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]


def is_custom(resource: dict[str, Any]) -> bool:
    kind = resource["Type"]
    return kind.startswith("Custom::") or kind == "AWS::CloudFormation::CustomResource"


@dataclass
class CustomState:
    physical_id: str
    properties: dict[str, Any]
    data: dict[str, Any]


@dataclass
class StackState:
    template_text: str
    stack_id: str = ""
    submitted: str = ""
    inputs: dict[str, str] = field(default_factory=dict)
    generations: dict[str, int] = field(default_factory=dict)
    custom: dict[str, CustomState] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    # Resolves the deployed template's values (for IAM policies and handler properties).
    resolver: Resolver | None = None
    asset_paths: dict[str, Path] = field(default_factory=dict)


@dataclass
class StackResult:
    """What one stack's deployment did, in CloudFormation's words."""

    name: str
    skipped: bool = False
    added: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    custom_calls: list[str] = field(default_factory=list)
    custom_skipped: dict[str, str] = field(default_factory=dict)


class Rehearsal:
    """One account and region in moto, and what has been deployed into it so far."""

    def __init__(self, endpoint: str, region: str) -> None:
        self.endpoint = endpoint
        self.region = region
        self.catcher = ResponseCatcher()
        self.handlers = HandlerRunner(endpoint, region, self.catcher)
        self.stacks: dict[str, StackState] = {}
        # SageMaker sends one state-change event per change: (job name, status) sent so far.
        self.sent_events: set[tuple[str, str]] = set()
        self._bootstrapped = False

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=FAKE_CREDENTIALS["AWS_SESSION_TOKEN"],
        )

    def close(self) -> None:
        self.catcher.close()

    # -- the CDK CLI's part ------------------------------------------------------------------

    def bootstrap(self) -> None:
        """What `cdk bootstrap` leaves that a deploy reads: the assets bucket, the image
        repository and the version parameter (its roles are not modelled: moto does not
        enforce IAM).
        """
        bucket = self.placeholders(
            f"cdk-{BOOTSTRAP_QUALIFIER}-assets-${{AWS::AccountId}}-${{AWS::Region}}"
        )
        if self.region == "us-east-1":  # S3 refuses a location constraint for its first region
            self.client("s3").create_bucket(Bucket=bucket)
        else:
            self.client("s3").create_bucket(
                Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": self.region}
            )
        self.client("ecr").create_repository(
            repositoryName=self.placeholders(
                f"cdk-{BOOTSTRAP_QUALIFIER}-container-assets-${{AWS::AccountId}}-${{AWS::Region}}"
            )
        )
        self.client("ssm").put_parameter(
            Name=f"/cdk-bootstrap/{BOOTSTRAP_QUALIFIER}/version",
            Value=str(BOOTSTRAP_VERSION),
            Type="String",
        )
        self._bootstrapped = True

    def placeholders(self, text: str) -> str:
        return (
            text.replace("${AWS::AccountId}", ACCOUNT)
            .replace("${AWS::Region}", self.region)
            .replace("${AWS::Partition}", "aws")
        )

    def publish(self, stack: StackArtifact) -> None:
        """Uploads the stack's file assets and pushes a manifest for each image asset (the
        images themselves are not built: there is no Docker engine here). As the CLI does, an
        asset already published is left as it is.
        """
        s3 = self.client("s3")
        for asset in stack.files:
            bucket = self.placeholders(asset.bucket)
            if s3.list_objects_v2(Bucket=bucket, Prefix=asset.key).get("KeyCount"):
                continue
            s3.put_object(Bucket=bucket, Key=asset.key, Body=_asset_bytes(asset))
        ecr = self.client("ecr")
        for image in stack.images:
            repository = self.placeholders(image.repository)
            tags = {
                tag
                for found in ecr.describe_images(repositoryName=repository)["imageDetails"]
                for tag in found.get("imageTags", [])
            }
            if image.tag in tags:
                continue
            ecr.put_image(
                repositoryName=repository,
                imageTag=image.tag,
                imageManifest=json.dumps(
                    {
                        "schemaVersion": 2,
                        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                        "config": {
                            "mediaType": "application/vnd.docker.container.image.v1+json",
                            "size": 0,
                            "digest": f"sha256:{image.tag}",
                        },
                        "layers": [],
                    }
                ),
            )

    def deploy(self, stack: StackArtifact) -> StackResult:
        """`cdk deploy` of one stack: skipped when its template is unchanged, as the CLI does."""
        if stack.region not in (None, self.region):
            raise TemplateError(
                f"{stack.name} is bound to {stack.environment}: `cdk deploy` would put it in "
                f"{stack.region}, not in {self.region} where the credentials point"
            )
        if not self._bootstrapped:
            self.bootstrap()
        version = int(
            self.client("ssm").get_parameter(Name=f"/cdk-bootstrap/{BOOTSTRAP_QUALIFIER}/version")[
                "Parameter"
            ]["Value"]
        )
        if version < stack.required_bootstrap_version:
            raise TemplateError(
                f"{stack.name} needs bootstrap version {stack.required_bootstrap_version}"
            )
        previous = self.stacks.get(stack.name)
        if previous is not None and previous.template_text == stack.template_text:
            return StackResult(stack.name, skipped=True)
        self.publish(stack)
        return _StackDeployment(self, stack, previous).run()

    def all_outputs(self) -> dict[str, dict[str, str]]:
        return {name: state.outputs for name, state in self.stacks.items()}

    def destroy(self, stack: StackArtifact) -> StackResult:
        """`cdk destroy` of one stack. CloudFormation deletes a resource after everything that
        refers to it, so each custom resource hears Delete (in reverse order) while what it
        needs still exists; moto then deletes the rest, honouring DeletionPolicy.
        """
        result = StackResult(stack.name)
        state = self.stacks.get(stack.name)
        if state is None or state.resolver is None:
            result.skipped = True
            return result
        scope = self.scope(stack.name)
        for logical_id in reversed(creation_order(state.resolver.resources)):
            if logical_id in state.custom:
                custom = state.custom[logical_id]
                if delete_custom(self.handlers, scope, logical_id, custom):
                    result.custom_calls.append(f"Delete {logical_id} ({custom.physical_id})")
                else:
                    result.custom_skipped[logical_id] = "handler not run"
        self.client("cloudformation").delete_stack(StackName=stack.name)
        result.removed = sorted(state.inputs)
        del self.stacks[stack.name]
        return result

    def scope(self, stack: str) -> StackScope:
        """A deployed stack, as a handler run sees it."""
        state = self.stacks[stack]
        assert state.resolver is not None
        return stack_scope(stack, state.stack_id, state.resolver, state.asset_paths)


class _StackDeployment:
    """CloudFormation's work on one stack: create or update, custom resources, cleanup."""

    def __init__(self, rehearsal: Rehearsal, stack: StackArtifact, previous: StackState | None):
        self.rehearsal = rehearsal
        self.stack = stack
        self.previous = previous or StackState(template_text="")
        self.state = StackState(
            template_text=stack.template_text, custom=dict(self.previous.custom)
        )
        self.result = StackResult(stack.name)
        self.cfn = rehearsal.client("cloudformation")
        self.iam = rehearsal.client("iam")
        template = read_stack_outputs(
            stack.template, rehearsal.all_outputs(), rehearsal.region, stack.name
        )
        self.template = template
        self.resources: dict[str, dict[str, Any]] = template["Resources"]
        self.custom_ids = [
            key for key in creation_order(self.resources) if is_custom(self.resources[key])
        ]
        self.wait_ids = [
            key for key, r in self.resources.items() if r["Type"] == WAIT_CONDITION_TYPE
        ]
        self.physical_ids: dict[str, str] = {}

    def run(self) -> StackResult:
        # 1. Everything that does not wait for a custom resource of this deployment.
        waiting = dependents(
            self.resources, {key for key in self.custom_ids if key not in self.previous.custom}
        )
        self._submit(
            {key: r for key, r in self.resources.items() if key not in waiting or is_custom(r)}
        )
        # 2. The custom resources and new wait conditions, in order, now that what they need
        # exists (a wait condition that was deployed before waits for nothing).
        replaced: list[tuple[str, CustomState]] = []
        waits = {key for key in self.wait_ids if key not in self.previous.inputs}
        for logical_id in creation_order(self.resources):
            if logical_id in waits:
                self._wait(logical_id)
            if logical_id not in self.custom_ids:
                continue
            old = self.previous.custom.get(logical_id)
            new = self._custom_resource(logical_id, old)
            if old is not None and new.physical_id != old.physical_id:
                replaced.append((logical_id, old))
        # 3. The rest, with the custom resources' answers.
        self._submit(self.resources)
        # 4. Cleanup: old physical ids of replaced and removed custom resources are deleted.
        for logical_id, old in replaced:
            self._delete_custom(logical_id, old, self.previous_resources)
        for logical_id, old in self.previous.custom.items():
            if logical_id not in self.resources:
                self._delete_custom(logical_id, old, self.previous_resources)
                del self.state.custom[logical_id]
        self.state.outputs = self._outputs()
        self.state.resolver = self.resolver
        self.state.asset_paths = self.stack.asset_paths
        self.rehearsal.stacks[self.stack.name] = self.state
        return self.result

    @property
    def previous_resources(self) -> dict[str, dict[str, Any]]:
        return (
            json.loads(self.previous.template_text)["Resources"]
            if self.previous.template_text
            else {}
        )

    # -- ordinary resources ------------------------------------------------------------------

    def _submit(self, resources: dict[str, dict[str, Any]]) -> None:
        """Creates or updates the stack in moto with these resources; replacement and its
        reach through references are decided here and marked so that moto acts on them.
        """
        known = {key: self._custom_values(key) for key in self.state.custom if key in resources}
        body: dict[str, Any] = {}
        for logical_id in creation_order(resources):
            resource = resources[logical_id]
            if is_custom(resource):
                body[logical_id] = {"Type": PLACEHOLDER_TYPE}
                continue
            resolved = substitute_resources(resource, known)
            inputs = fingerprint(self._with_generations(resolved))
            old_inputs = self.previous.inputs.get(logical_id)
            generation = self.previous.generations.get(logical_id, 0)
            if old_inputs is None:
                self._note(self.result.added, logical_id)
            elif old_inputs != inputs:
                old_props = json.loads(old_inputs).get("Properties", {})
                new_props = json.loads(inputs).get("Properties", {})
                self._note(self.result.modified, logical_id)
                if needs_replacement(resource["Type"], old_props, new_props):
                    self._note(self.result.replaced, logical_id)
                    generation += 1
            self.state.inputs[logical_id] = inputs
            self.state.generations[logical_id] = generation
            marker = hashlib.sha256(inputs.encode()).hexdigest()[:16]
            metadata = {**resolved.get("Metadata", {}), INPUTS_MARKER: marker}
            body[logical_id] = self._named({**resolved, "Metadata": metadata}, logical_id)
        for logical_id in self.previous.inputs:
            if logical_id not in self.resources:
                self._note(self.result.removed, logical_id)
        template = {**self.template, "Resources": body}
        template["Outputs"] = {
            key: output
            for key, output in substitute_resources(self.template.get("Outputs", {}), known).items()
            if not _refers_to_missing(
                output, {key for key, r in body.items() if r["Type"] != PLACEHOLDER_TYPE}
            )
        }
        # In creation order: moto updates resources in the order the template lists them.
        text = json.dumps(template)
        if text == self.state.submitted:
            return
        if self.state.submitted or self.previous.submitted:
            try:
                self.cfn.update_stack(
                    StackName=self.stack.name, TemplateBody=text, Capabilities=CAPABILITIES
                )
            except self.cfn.exceptions.ClientError as error:
                if "No updates are to be performed" not in str(error):
                    raise
        else:
            self.cfn.create_stack(
                StackName=self.stack.name, TemplateBody=text, Capabilities=CAPABILITIES
            )
        self.state.submitted = text
        described = self.cfn.describe_stacks(StackName=self.stack.name)["Stacks"][0]
        self.state.stack_id = described["StackId"]
        status = described["StackStatus"]
        if not status.endswith("_COMPLETE") or "ROLLBACK" in status:
            raise TemplateError(f"{self.stack.name}: {status}")
        self.physical_ids = {
            item["LogicalResourceId"]: item["PhysicalResourceId"]
            for item in self.cfn.list_stack_resources(StackName=self.stack.name)[
                "StackResourceSummaries"
            ]
        }

    def _named(self, resource: dict[str, Any], logical_id: str) -> dict[str, Any]:
        """A deployed bucket with its generated name written in: moto's bucket update reads
        `BucketName` and fails without it (CloudFormation keeps the generated name)."""
        deployed = self.physical_ids.get(logical_id) or (
            self.previous.resolver.physical_ids.get(logical_id) if self.previous.resolver else None
        )
        properties = resource.get("Properties", {})
        if resource["Type"] != "AWS::S3::Bucket" or not deployed or "BucketName" in properties:
            return resource
        return {**resource, "Properties": {**properties, "BucketName": deployed}}

    def _with_generations(self, resource: dict[str, Any]) -> dict[str, Any]:
        """The resource with each reference to another resource tagged with that resource's
        generation, so that a replacement changes every resource that refers to it.
        """

        def tag(node: dict[str, Any]) -> Any | None:
            if isinstance(node.get("Ref"), str) and not node["Ref"].startswith(PSEUDO_PREFIX):
                return {**node, "Generation": self.state.generations.get(node["Ref"], 0)}
            if "Fn::GetAtt" in node:
                target = node["Fn::GetAtt"][0]
                return {**node, "Generation": self.state.generations.get(target, 0)}
            return None

        return {
            key: replace_nodes(value, tag) for key, value in resource.items() if key != "Metadata"
        }

    def _note(self, bucket: list[str], logical_id: str) -> None:
        if logical_id not in bucket:
            bucket.append(logical_id)

    # -- custom resources --------------------------------------------------------------------

    def _scope(self, resources: dict[str, dict[str, Any]]) -> StackScope:
        resolver = self.resolver
        resolver.resources = resources
        return stack_scope(self.stack.name, self.state.stack_id, resolver, self.stack.asset_paths)

    def _custom_values(self, logical_id: str) -> dict[str, Any]:
        state = self.state.custom[logical_id]
        return {"Ref": state.physical_id, **state.data}

    def _custom_resource(self, logical_id: str, old: CustomState | None) -> CustomState:
        known = {key: self._custom_values(key) for key in self.state.custom if key != logical_id}
        resource = substitute_resources(self.resources[logical_id], known)
        properties = as_strings(self.resolver(resource.get("Properties", {})))
        if old is not None and fingerprint(old.properties) == fingerprint(properties):
            return old
        event: dict[str, Any] = {
            "RequestType": "Create" if old is None else "Update",
            "ServiceToken": properties.get("ServiceToken"),
            "StackId": self.state.stack_id,
            "RequestId": new_request_id(),
            "LogicalResourceId": logical_id,
            "ResourceType": resource["Type"],
            "ResourceProperties": properties,
        }
        if old is not None:
            event["PhysicalResourceId"] = old.physical_id
            event["OldResourceProperties"] = old.properties
        outcome: Outcome = self.rehearsal.handlers.invoke(
            self._scope(self.resources), logical_id, event
        )
        if outcome.skipped:
            self.result.custom_skipped[logical_id] = outcome.skipped
        else:
            self.result.custom_calls.append(f"{event['RequestType']} {logical_id}")
        state = CustomState(outcome.physical_id, properties, outcome.data)
        if old is not None and outcome.physical_id != old.physical_id:
            self._note(self.result.replaced, logical_id)
            self.state.generations[logical_id] = self.previous.generations.get(logical_id, 0) + 1
        self.state.custom[logical_id] = state
        return state

    # -- wait conditions ---------------------------------------------------------------------

    def handle_urls(self) -> dict[str, str]:
        """Each wait condition handle's pre-signed URL: here, the catcher's."""
        base = f"{self.rehearsal.catcher.url}/wait-handles/{self.stack.name}"
        return {
            key: f"{base}/{key}" for key, r in self.resources.items() if r["Type"] == HANDLE_TYPE
        }

    def _wait(self, logical_id: str) -> None:
        """CloudFormation's wait: released by a SUCCESS signal on the handle, failed by a
        FAILURE one (with its reason, as the stack event says it), timed out without one.
        SageMaker's events are sent through the app's rules first, as they would arrive.
        """
        handle = self.resources[logical_id]["Properties"]["Handle"]["Ref"]
        key = self.handle_urls()[handle].removeprefix(f"{self.rehearsal.catcher.url}/")
        released_by = "a signal sent when the custom resource found the job ended"
        if key not in self.rehearsal.catcher.responses:
            released_by = "the job's state-change event"
            self._send_training_job_events()
        signal = self.rehearsal.catcher.responses.get(key)
        where = f"{self.stack.name}/{logical_id}"
        if signal is None:
            raise CustomResourceFailed(
                f"{where}: WaitCondition timed out. Received 0 conditions when expecting 1"
            )
        if signal["Status"] != "SUCCESS":
            raise CustomResourceFailed(
                f"{where}: WaitCondition received failed message: '{signal['Reason']}' for "
                f"uniqueId: {signal['UniqueId']}"
            )
        self.result.custom_calls.append(f"Wait {logical_id} (released by {released_by})")

    def _send_training_job_events(self) -> None:
        """Each new event to every matching rule of the stacks deployed so far and this one."""
        sagemaker = self.rehearsal.client("sagemaker")
        scopes = [self._scope(self.resources)] + [
            self.rehearsal.scope(name) for name in self.rehearsal.stacks if name != self.stack.name
        ]
        for event in training_job_events(
            sagemaker, ACCOUNT, self.rehearsal.region, self.rehearsal.sent_events
        ):
            for scope in scopes:
                for rule_id, rule in scope.resources.items():
                    if rule["Type"] != "AWS::Events::Rule" or not matches(
                        rule["Properties"], event
                    ):
                        continue
                    for target in scope.resolve(rule["Properties"]["Targets"]):
                        function_id = self._function_of(scope, rule_id, target["Arn"])
                        self.rehearsal.handlers.run(
                            scope,
                            function_id,
                            {**target_input(target, event), "LogicalResourceId": rule_id},
                        )

    @staticmethod
    def _function_of(scope: StackScope, rule_id: str, arn: str) -> str:
        """The logical id of the function a target's ARN names (the only targets here)."""
        for logical_id, resource in scope.resources.items():
            function = resource["Type"] == "AWS::Lambda::Function"
            if function and scope.resolve({"Fn::GetAtt": [logical_id, "Arn"]}) == arn:
                return logical_id
        raise TemplateError(f"{scope.name}/{rule_id}: the rehearsal runs Lambda targets only")

    def _delete_custom(
        self, logical_id: str, old: CustomState, resources: dict[str, dict[str, Any]]
    ) -> None:
        scope = self._scope({**resources, **self.resources})
        if delete_custom(self.rehearsal.handlers, scope, logical_id, old):
            self.result.custom_calls.append(f"Delete {logical_id} ({old.physical_id})")

    # -- reading the deployed stack ----------------------------------------------------------

    def _outputs(self) -> dict[str, str]:
        stack = self.cfn.describe_stacks(StackName=self.stack.name)["Stacks"][0]
        return {item["OutputKey"]: item["OutputValue"] for item in stack.get("Outputs", [])}

    @property
    def resolver(self) -> Resolver:
        iam = self.iam
        return Resolver(
            stack=self.stack.name,
            region=self.rehearsal.region,
            account=ACCOUNT,
            resources=self.resources,
            physical_ids={**self.physical_ids, **self.handle_urls()},
            custom={key: self._custom_values(key) for key in self.state.custom},
            role_arn=lambda name: iam.get_role(RoleName=name)["Role"]["Arn"],
        )


def stack_scope(
    name: str, stack_id: str, resolver: Resolver, asset_paths: dict[str, Path]
) -> StackScope:
    return StackScope(
        name=name,
        stack_id=stack_id,
        resources=resolver.resources,
        asset_paths=asset_paths,
        resolve=resolver,
        physical_id=resolver.ref,
    )


def _asset_bytes(asset: FileAsset) -> bytes:
    """A file asset as the CLI uploads it: the file, or the folder zipped."""
    if asset.packaging != "zip":
        return asset.source.read_bytes()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(asset.source.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(asset.source))
    return buffer.getvalue()


def delete_custom(
    handlers: HandlerRunner, scope: StackScope, logical_id: str, state: CustomState
) -> bool:
    """Sends Delete for a custom resource's physical id; False if its handler was not run."""
    event = {
        "RequestType": "Delete",
        "StackId": scope.stack_id,
        "RequestId": new_request_id(),
        "LogicalResourceId": logical_id,
        "ResourceType": scope.resources[logical_id]["Type"],
        "PhysicalResourceId": state.physical_id,
        "ResourceProperties": state.properties,
    }
    return not handlers.invoke(scope, logical_id, event).skipped


def as_strings(value: Any) -> Any:
    """CloudFormation hands custom resources every scalar as a string ("true", "5")."""
    if isinstance(value, dict):
        return {key: as_strings(item) for key, item in value.items()}
    if isinstance(value, list):
        return [as_strings(item) for item in value]
    if isinstance(value, bool):
        return str(value).lower()
    return value if value is None else str(value)


def _refers_to_missing(value: Any, resources: set[str]) -> bool:
    for node in walk(value):
        target = node.get("Ref") if isinstance(node.get("Ref"), str) else None
        if "Fn::GetAtt" in node:
            target = node["Fn::GetAtt"][0]
        if target and not target.startswith(PSEUDO_PREFIX) and target not in resources:
            return True
    return False
