"""Regenerate `tests/tools/diffs/*.txt`: what `npx cdk diff --all` prints for this app.

The pull-request workflow runs `npx cdk diff --all` against the deployed stacks and keeps
stdout and stderr; `tools.diff_comment` parses that text. These recordings are the real CLI's
output, made without AWS: the CLI synthesizes the app (with `-c` overrides: the pull request's
side) and talks to a stand-in for STS, SSM, S3 and CloudFormation on a loopback port
(`AWS_ENDPOINT_URL`), whose "deployed" stacks are the app synthesized with other overrides
(the main branch's side), sometimes hand-edited. The stand-in answers change sets too, as the
workflow's default `--method auto` asks for them: each changed property is listed with
CloudFormation's replacement rule for it, read from the CLI's own resource database
(`node_modules/aws-cdk/db.json.gz`), and a property that refers to a replaced resource is a
dynamic change, which CloudFormation reports as a conditional replacement ("may be replaced").

    .venv/bin/python -m tests.tools.record_diffs [--only NAME ...]
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import os
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parents[2]
DIFFS = Path(__file__).resolve().parent / "diffs"
ACCOUNT = "123456789012"
REGION = "us-east-1"
CFN_NS = "http://cloudformation.amazonaws.com/doc/2010-05-15/"
STS_NS = "https://sts.amazonaws.com/doc/2011-06-15/"
Template = dict[str, Any]
Edit = Callable[[dict[str, Template]], None]


@dataclass(frozen=True)
class Scenario:
    """Each side: `-c` overrides, then an optional edit of its templates; and diff options."""

    name: str
    deployed: tuple[str, ...] = ()
    proposed: tuple[str, ...] = ()
    edit_deployed: Edit | None = None
    edit_proposed: Edit | None = None
    options: tuple[str, ...] = ()


def _resource(template: Template, prefix: str, resource_type: str) -> dict[str, Any]:
    return next(
        resource
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == resource_type and logical_id.startswith(prefix)
    )


def _bucket_removed_and_renamed(stacks: dict[str, Template]) -> None:
    """Deployed storage had one more bucket, and a fixed name on the output bucket."""
    storage = stacks["custom-sm-storage"]
    output = _resource(storage, "InferenceOutput", "AWS::S3::Bucket")
    output["Properties"]["BucketName"] = f"custom-sm-inference-output-{ACCOUNT}"
    archive = copy.deepcopy(output)
    archive["Properties"].pop("BucketName")
    archive["DeletionPolicy"] = archive["UpdateReplacePolicy"] = "Delete"
    archive["Metadata"]["aws:cdk:path"] = "custom-sm-storage/Archive/Resource"
    storage["Resources"]["Archive0B33E3F4"] = archive


def _iam_opened(stacks: dict[str, Template]) -> None:
    """A change that opens things up: a managed policy, "*", a new trusted account, no SSL rule."""
    iam = stacks["custom-sm-iam"]
    role = _resource(iam, "ClientRole", "AWS::IAM::Role")["Properties"]
    role["ManagedPolicyArns"] = [
        {
            "Fn::Join": [
                "",
                ["arn:", {"Ref": "AWS::Partition"}, ":iam::aws:policy/AmazonSageMakerFullAccess"],
            ]
        }
    ]
    role["AssumeRolePolicyDocument"]["Statement"].append(
        {
            "Action": "sts:AssumeRole",
            "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
        }
    )
    policy = _resource(iam, "ClientRoleDefaultPolicy", "AWS::IAM::Policy")["Properties"]
    policy["PolicyDocument"]["Statement"].append(
        {"Action": "s3:GetObject", "Effect": "Allow", "Resource": "*"}
    )
    data_policy = _resource(stacks["custom-sm-storage"], "DataPolicy", "AWS::S3::BucketPolicy")
    statements = data_policy["Properties"]["PolicyDocument"]["Statement"]
    statements[:] = [statement for statement in statements if statement["Effect"] != "Deny"]


SCENARIOS = (
    Scenario("no-changes"),
    # A new endpoint name replaces the endpoint and its named log group; colours kept.
    Scenario(
        "endpoint-renamed",
        proposed=("config.serving.endpoint_name=other-endpoint",),
        options=("--color",),
    ),
    Scenario("bucket-removed", edit_deployed=_bucket_removed_and_renamed),
    # Batch transform switched on: the client's role may start transform jobs, a new role.
    Scenario("iam-widened", deployed=("config.client.batch_transform.enabled=false",)),
    Scenario("iam-opened", edit_proposed=_iam_opened),
    # Back from an asynchronous endpoint: its topics, key and completion handler go.
    Scenario("async-to-realtime", deployed=("config.serving.mode=async",)),
    # A retrain: new model, endpoint config and wait condition; nothing stateful.
    Scenario("retrain", proposed=("config.training.hyperparameters.num_leaves=63",)),
    # The endpoint renamed again, compared on templates alone, without a change set.
    Scenario(
        "template-only",
        proposed=("config.serving.endpoint_name=other-endpoint",),
        options=("--method", "template"),
    ),
)


def replacement_rules() -> dict[str, dict[str, str]]:
    """Resource type -> property -> "yes"/"maybe"/"no", from the CLI's resource database."""
    with gzip.open(ROOT / "node_modules" / "aws-cdk" / "db.json.gz") as db_file:
        entities = json.load(db_file)["schema"]["resource"]["entities"]
    records = entities.values() if isinstance(entities, dict) else entities
    return {
        record["cloudFormationType"]: {
            name: prop.get("causesReplacement", "no")
            for name, prop in record.get("properties", {}).items()
        }
        for record in records
    }


def _references(value: Any) -> Iterator[tuple[str, str]]:
    """(logical id, "Ref" or "GetAtt") for each reference inside a property value."""
    if isinstance(value, dict):
        if isinstance(value.get("Ref"), str):
            yield value["Ref"], "Ref"
        if isinstance(value.get("Fn::GetAtt"), list):
            yield value["Fn::GetAtt"][0], "GetAtt"
        for item in value.values():
            yield from _references(item)
    elif isinstance(value, list):
        for item in value:
            yield from _references(item)


def change_set(old: Template, new: Template, rules: dict[str, dict[str, str]]) -> list[dict]:
    """The resource changes CloudFormation would list for `old` -> `new` (a model of it)."""
    old_resources, new_resources = old.get("Resources", {}), new.get("Resources", {})
    changes: dict[str, dict] = {}
    for logical_id, resource in new_resources.items():
        before = old_resources.get(logical_id)
        if before is None or before["Type"] != resource["Type"]:
            changes[logical_id] = {"Action": "Add", "Type": resource["Type"], "Details": []}
            continue
        old_props, new_props = before.get("Properties", {}), resource.get("Properties", {})
        details = [
            {
                "Name": name,
                "RequiresRecreation": _recreation(rules, resource["Type"], name),
                "Evaluation": "Static",
                "ChangeSource": "DirectModification",
            }
            for name in sorted(set(old_props) | set(new_props))
            if old_props.get(name) != new_props.get(name)
        ]
        if details:
            changes[logical_id] = {"Action": "Modify", "Type": resource["Type"], "Details": details}
    for logical_id, resource in old_resources.items():
        if logical_id not in new_resources:
            changes[logical_id] = {"Action": "Remove", "Type": resource["Type"], "Details": []}
    replaced = {
        logical_id
        for logical_id, change in changes.items()
        if any(detail["RequiresRecreation"] == "Always" for detail in change["Details"])
    }
    for logical_id, resource in new_resources.items():
        if changes.get(logical_id, {}).get("Action") == "Add":
            continue
        for name, value in resource.get("Properties", {}).items():
            for target, kind in _references(value):
                if target in replaced and target != logical_id:
                    change = changes.setdefault(
                        logical_id, {"Action": "Modify", "Type": resource["Type"], "Details": []}
                    )
                    change["Details"].append(
                        {
                            "Name": name,
                            "RequiresRecreation": _recreation(rules, resource["Type"], name),
                            "Evaluation": "Dynamic",
                            "ChangeSource": "ResourceReference"
                            if kind == "Ref"
                            else "ResourceAttribute",
                            "CausingEntity": target,
                        }
                    )
    for change in changes.values():
        recreations = {detail["RequiresRecreation"] for detail in change["Details"]}
        static = {
            detail["RequiresRecreation"]
            for detail in change["Details"]
            if detail["Evaluation"] == "Static"
        }
        change["Replacement"] = (
            "True"
            if "Always" in static
            else "Conditional"
            if recreations & {"Always", "Conditionally"}
            else "False"
        )
    return [{"LogicalResourceId": logical_id, **change} for logical_id, change in changes.items()]


def _recreation(rules: dict[str, dict[str, str]], resource_type: str, name: str) -> str:
    rule = rules.get(resource_type, {}).get(name, "no")
    return {"yes": "Always", "maybe": "Conditionally"}.get(rule, "Never")


def _change_xml(change: dict) -> str:
    details = "".join(
        "<member><Target><Attribute>Properties</Attribute>"
        f"<Name>{detail['Name']}</Name>"
        f"<RequiresRecreation>{detail['RequiresRecreation']}</RequiresRecreation></Target>"
        f"<Evaluation>{detail['Evaluation']}</Evaluation>"
        f"<ChangeSource>{detail['ChangeSource']}</ChangeSource>"
        + (
            f"<CausingEntity>{detail['CausingEntity']}</CausingEntity>"
            if "CausingEntity" in detail
            else ""
        )
        + "</member>"
        for detail in change["Details"]
    )
    replacement = (
        f"<Replacement>{change['Replacement']}</Replacement>"
        if change["Action"] == "Modify"
        else ""
    )
    return (
        "<member><Type>Resource</Type><ResourceChange>"
        f"<Action>{change['Action']}</Action>"
        f"<LogicalResourceId>{change['LogicalResourceId']}</LogicalResourceId>"
        f"<ResourceType>{change['Type']}</ResourceType>{replacement}"
        f"<Scope>{'<member>Properties</member>' if details else ''}</Scope>"
        f"<Details>{details}</Details></ResourceChange></member>"
    )


class FakeAws(ThreadingHTTPServer):
    """STS, SSM, S3 and CloudFormation, just enough for `cdk diff`."""

    def __init__(self, deployed: dict[str, Template]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.deployed = deployed
        self.objects: dict[str, bytes] = {}
        self.change_sets: dict[str, list[dict]] = {}
        self.rules = replacement_rules()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FakeAws

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the recording is the CLI's output."""

    def _send(self, status: int, body: bytes, content_type: str = "text/xml") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def do_PUT(self) -> None:
        self.server.objects[urlsplit(self.path).path] = self._body()
        self._send(200, b"")

    def do_GET(self) -> None:
        query = urlsplit(self.path).query
        if query.startswith("location"):
            self._send(200, b"<LocationConstraint/>")
        elif "list-type=2" in query:  # "is the template uploaded yet?": never
            self._send(200, b"<ListBucketResult><KeyCount>0</KeyCount></ListBucketResult>")
        else:
            self._send(404, b"<Error><Code>NoSuchKey</Code><Message>none</Message></Error>")

    do_HEAD = do_GET

    def do_POST(self) -> None:
        body = self._body()
        if self.headers.get("X-Amz-Target") == "AmazonSSM.GetParameter":
            parameter = {"Name": json.loads(body)["Name"], "Type": "String", "Value": "30"}
            self._send(200, json.dumps({"Parameter": parameter}).encode(), "application/json")
            return
        query = dict(parse_qsl(body.decode()))
        action = query.get("Action", "")
        answer = getattr(self, f"_{action}", None)
        if answer is None:
            self._send(400, _error(f"{action or self.path} is not part of the fake"))
            return
        result = answer(query)
        if isinstance(result, bytes):
            self._send(400, result)
            return
        namespace = STS_NS if action in ("GetCallerIdentity", "AssumeRole") else CFN_NS
        self._send(
            200,
            f'<{action}Response xmlns="{namespace}"><{action}Result>{result}</{action}Result>'
            f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
            f"</{action}Response>".encode(),
        )

    def _GetCallerIdentity(self, query: dict[str, str]) -> str:
        return (
            f"<Arn>arn:aws:iam::{ACCOUNT}:user/ci</Arn><UserId>AIDAFAKE</UserId>"
            f"<Account>{ACCOUNT}</Account>"
        )

    def _AssumeRole(self, query: dict[str, str]) -> str:
        role = query["RoleArn"].split("/")[-1]
        return (
            "<Credentials><AccessKeyId>ASIAFAKE</AccessKeyId><SecretAccessKey>x</SecretAccessKey>"
            "<SessionToken>x</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration>"
            f"</Credentials><AssumedRoleUser><Arn>arn:aws:sts::{ACCOUNT}:assumed-role/{role}/cli"
            "</Arn><AssumedRoleId>AROAFAKE:cli</AssumedRoleId></AssumedRoleUser>"
        )

    def _DescribeStacks(self, query: dict[str, str]) -> str | bytes:
        name = query["StackName"]
        if name not in self.server.deployed:
            return _error(f"Stack with id {name} does not exist", "ValidationError")
        return (
            f"<Stacks><member><StackName>{name}</StackName>"
            f"<StackId>arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{name}/1</StackId>"
            "<StackStatus>UPDATE_COMPLETE</StackStatus>"
            "<CreationTime>2026-01-01T00:00:00Z</CreationTime></member></Stacks>"
        )

    def _GetTemplate(self, query: dict[str, str]) -> str:
        template = json.dumps(self.server.deployed[query["StackName"]], indent=1)
        return f"<TemplateBody>{escape(template)}</TemplateBody>"

    def _CreateChangeSet(self, query: dict[str, str]) -> str:
        if "TemplateBody" in query:
            proposed = json.loads(query["TemplateBody"])
        else:
            key = urlsplit(query["TemplateURL"]).path
            proposed = json.loads(
                next(body for path, body in self.server.objects.items() if key.endswith(path))
            )
        stack = query["StackName"]
        change_set_id = (
            f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:changeSet/{query['ChangeSetName']}/1"
        )
        self.server.change_sets[change_set_id] = self.server.change_sets[query["ChangeSetName"]] = (
            change_set(self.server.deployed.get(stack, {}), proposed, self.server.rules)
        )
        return f"<Id>{change_set_id}</Id><StackId>{stack}</StackId>"

    def _DescribeChangeSet(self, query: dict[str, str]) -> str:
        changes = self.server.change_sets[query["ChangeSetName"]]
        status = (
            "<Status>CREATE_COMPLETE</Status><ExecutionStatus>AVAILABLE</ExecutionStatus>"
            if changes
            else "<Status>FAILED</Status><ExecutionStatus>UNAVAILABLE</ExecutionStatus>"
            "<StatusReason>The submitted information didn't contain changes. Submit different"
            " information to create a change set.</StatusReason>"
        )
        return (
            f"<ChangeSetName>{query['ChangeSetName']}</ChangeSetName>"
            f"<StackName>{query.get('StackName', '')}</StackName>{status}"
            f"<Changes>{''.join(_change_xml(change) for change in changes)}</Changes>"
        )

    def _DeleteChangeSet(self, query: dict[str, str]) -> str:
        return ""


def _error(message: str, code: str = "AccessDenied") -> bytes:
    return (
        f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code>"
        f"<Message>{escape(message)}</Message></Error></ErrorResponse>"
    ).encode()


def _context(overrides: tuple[str, ...]) -> list[str]:
    return [arg for override in overrides for arg in ("-c", override)]


def synthesize(outdir: Path, overrides: tuple[str, ...]) -> dict[str, Template]:
    result = subprocess.run(
        ["npx", "cdk", "synth", "-o", str(outdir), "-q", *_context(overrides)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode:
        raise SystemExit(f"cdk synth {' '.join(overrides)} failed:\n{result.stderr}")
    return {
        path.name.removesuffix(".template.json"): json.loads(path.read_text())
        for path in outdir.glob("*.template.json")
    }


def _proposed_app(scenario: Scenario, workdir: Path) -> list[str]:
    """Arguments that give `cdk diff` the pull request's side, as the workflow does."""
    outdir = workdir / "proposed"
    if scenario.edit_proposed is None:  # the CLI synthesizes the app itself
        return ["-o", str(outdir), *_context(scenario.proposed)]
    templates = synthesize(outdir, scenario.proposed)
    scenario.edit_proposed(templates)
    for name, template in templates.items():
        (outdir / f"{name}.template.json").write_text(json.dumps(template, indent=1))
    return ["--app", str(outdir)]


def record(scenario: Scenario, workdir: Path) -> str:
    """Run `npx cdk diff --all` as the workflow does (stdout and stderr together)."""
    deployed = synthesize(workdir / "deployed", scenario.deployed)
    if scenario.edit_deployed:
        scenario.edit_deployed(deployed)
    app = _proposed_app(scenario, workdir)
    server = FakeAws(deployed)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "CDK_"))
    }
    environment |= {
        "AWS_ACCESS_KEY_ID": "AKIAFAKE",
        "AWS_SECRET_ACCESS_KEY": "fake",
        "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL": server.url,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "CI": "true",  # as on GitHub Actions: the CLI then writes everything to stdout
    }
    try:
        result = subprocess.run(
            ["npx", "cdk", "diff", "--all", *app, *scenario.options],
            cwd=ROOT,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        server.shutdown()
        server.server_close()
    if "Number of stacks with differences" not in result.stdout:
        raise SystemExit(f"{scenario.name}: cdk diff failed:\n{result.stdout}")
    return result.stdout


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="record only these scenarios")
    args = parser.parse_args(argv)
    DIFFS.mkdir(exist_ok=True)
    for scenario in SCENARIOS:
        if args.only and scenario.name not in args.only:
            continue
        with tempfile.TemporaryDirectory(prefix=f"record-{scenario.name}-") as workdir:
            output = record(scenario, Path(workdir))
        (DIFFS / f"{scenario.name}.txt").write_text(output)
        print(f"{scenario.name}: {len(output.splitlines())} lines", file=sys.stderr)


if __name__ == "__main__":
    main()
