"""CloudFormation's side of custom resources: it sends the event, the handler answers.

moto cannot run a Lambda function without Docker, so the rehearsal plays CloudFormation here
and runs each handler's real code (from the assembly) in a process of its own, with the
function's own environment, against the emulator:

- a CDK Provider framework resource (the training job and its result): the provider's
  on-event handler, as the framework's function would call it;
- a function that answers CloudFormation itself (CDK's dataset upload and S3 notification
  handlers in Python, its bucket emptier in Node.js): the handler gets a ResponseURL served
  here, as CloudFormation's pre-signed S3 URL would be.

The AWS calls of Python handlers (and of the AWS CLI they run) are recorded for the IAM
proof; those of Node.js handlers are not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from local.aws_calls import CALLS_FILE_VARIABLE, AwsCall, read_calls
from local.credentials import FAKE_CREDENTIALS
from local.rehearsal.template import TemplateError

ROOT = Path(__file__).resolve().parents[2]
# Lambda layers are mounted under /opt; the AWS CLI layer's program becomes the recording CLI.
LAYER_PROGRAMS = {"/opt/awscli/aws": f"{sys.executable} -m local.rehearsal.aws_cli"}
# Node.js handlers (CDK's bucket emptier) run on the pinned Node, with the pinned AWS SDK.
NODE_RUNNER = Path(__file__).with_name("lambda_runner.cjs")
NODE = str(ROOT / "node_modules" / ".bin" / "node")
HANDLER_TIMEOUT_SECONDS = 120


class CustomResourceFailed(RuntimeError):
    """The handler answered FAILED (or crashed); CloudFormation would roll the stack back."""


@dataclass(frozen=True)
class Invocation:
    """One run of a handler: whose code, with which role, and the AWS calls it made."""

    stack: str
    function: str
    role_arn: str
    calls: list[AwsCall]


@dataclass(frozen=True)
class Outcome:
    physical_id: str
    data: dict[str, Any]
    skipped: str | None = None


@dataclass
class StackScope:
    """What a handler run needs to know of the stack that holds the custom resource."""

    name: str
    stack_id: str
    resources: dict[str, dict[str, Any]]
    asset_paths: dict[str, Path]
    resolve: Callable[[Any], Any]
    physical_id: Callable[[str], str]


class ResponseCatcher:
    """The URLs a direct handler PUTs its answer to and a wait condition handle takes its
    signals at (CloudFormation's pre-signed S3 URLs)."""

    def __init__(self) -> None:
        self.responses: dict[str, dict[str, Any]] = {}
        catcher = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                catcher.responses[self.path.lstrip("/")] = json.loads(body)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class HandlerRunner:
    """Runs functions of the assembly as Lambda would, against the emulator at `endpoint`."""

    endpoint: str
    region: str
    catcher: ResponseCatcher
    invocations: list[Invocation] = field(default_factory=list)

    def invoke(self, scope: StackScope, logical_id: str, event: dict[str, Any]) -> Outcome:
        """Sends `event` for the custom resource `logical_id` and returns its answer."""
        token = scope.resources[logical_id]["Properties"]["ServiceToken"]
        function_id = token["Fn::GetAtt"][0]
        function = scope.resources[function_id]["Properties"]
        variables = function.get("Environment", {}).get("Variables", {})
        if (
            function["Handler"].startswith("framework.")
            and "USER_ON_EVENT_FUNCTION_ARN" in variables
        ):
            return self._provider(scope, event, variables)
        if not function["Runtime"].startswith(("python", "nodejs")):
            return Outcome(
                event.get("PhysicalResourceId", logical_id),
                {},
                skipped=f"{function['Runtime']} handler not run (no such runtime here)",
            )
        return self._direct(scope, function_id, event)

    def _provider(
        self, scope: StackScope, event: dict[str, Any], variables: dict[str, Any]
    ) -> Outcome:
        """The CDK Provider framework, for a provider without an is-complete handler."""
        on_event = variables["USER_ON_EVENT_FUNCTION_ARN"]["Fn::GetAtt"][0]
        result = self.run(scope, on_event, event) or {}
        physical_id = result.get("PhysicalResourceId") or event.get(
            "PhysicalResourceId", event["RequestId"]
        )
        data = dict(result.get("Data", {}))
        if "USER_IS_COMPLETE_FUNCTION_ARN" in variables:
            raise TemplateError(
                f"{event['LogicalResourceId']}: the rehearsal runs providers without an "
                "is-complete handler only"
            )
        return Outcome(physical_id, data)

    def _direct(self, scope: StackScope, function_id: str, event: dict[str, Any]) -> Outcome:
        request_id = event["RequestId"]
        response = f"{self.catcher.url}/{request_id}"
        self.run(scope, function_id, {**event, "ResponseURL": response})
        answer = self.catcher.responses.pop(request_id, None)
        if answer is None:
            raise CustomResourceFailed(f"{event['LogicalResourceId']}: the handler never answered")
        if answer["Status"] != "SUCCESS":
            raise CustomResourceFailed(f"{event['LogicalResourceId']}: {answer.get('Reason')}")
        return Outcome(answer["PhysicalResourceId"], answer.get("Data") or {})

    def run(
        self,
        scope: StackScope,
        function_id: str,
        event: dict[str, Any],
        environment: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Runs the function's handler on `event` in a process of its own; its return value.

        `environment` adds to (and overrides) the function's own, e.g. an endpoint of a
        service moto does not stand in for.
        """
        function = scope.resources[function_id]["Properties"]
        with tempfile.TemporaryDirectory(prefix="rehearsal-lambda-") as scratch:
            code_dir = self._code(scope, function, Path(scratch))
            calls_file = Path(scratch) / "calls.jsonl"
            result_file = Path(scratch) / "result.json"
            variables = scope.resolve(function.get("Environment", {}).get("Variables", {}))
            process_environment = {
                **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CDK_"))},
                **FAKE_CREDENTIALS,
                **{name: str(value) for name, value in variables.items()},
                "AWS_REGION": self.region,
                "AWS_DEFAULT_REGION": self.region,
                "AWS_ENDPOINT_URL": self.endpoint,
                "AWS_LAMBDA_FUNCTION_NAME": scope.physical_id(function_id),
                CALLS_FILE_VARIABLE: str(calls_file),
                **(environment or {}),
            }
            if function["Runtime"].startswith("nodejs"):
                command = [NODE, str(NODE_RUNNER), str(code_dir), function["Handler"]]
                command.append(str(result_file))
                process_environment["NODE_PATH"] = str(ROOT / "node_modules")
                process_environment["REHEARSAL_RESPONSE_PORT"] = str(self.catcher.port)
            else:
                maps = [f"--map={path}={program}" for path, program in LAYER_PROGRAMS.items()]
                command = [
                    sys.executable,
                    "-m",
                    "local.rehearsal.lambda_runner",
                    str(code_dir),
                    function["Handler"],
                    f"--result={result_file}",
                    *maps,
                ]
            process = subprocess.run(
                command,
                input=json.dumps(event),
                capture_output=True,
                text=True,
                cwd=ROOT,
                env=process_environment,
                timeout=HANDLER_TIMEOUT_SECONDS,
                check=False,
            )
            self.invocations.append(
                Invocation(
                    scope.name, function_id, scope.resolve(function["Role"]), read_calls(calls_file)
                )
            )
            if process.returncode != 0:
                raise CustomResourceFailed(
                    f"{scope.name}/{event['LogicalResourceId']}: {function_id} failed:\n"
                    + (process.stdout + process.stderr)[-3000:]
                )
            return json.loads(result_file.read_text()) or {}

    @staticmethod
    def _code(scope: StackScope, function: dict[str, Any], scratch: Path) -> Path:
        """The function's code folder: its asset in the assembly, or its inline source."""
        code = function["Code"]
        if "ZipFile" in code:
            (scratch / "index.py").write_text(code["ZipFile"])
            return scratch
        asset_hash = code["S3Key"].split(".")[0]
        return scope.asset_paths[asset_hash]


def new_request_id() -> str:
    return str(uuid.uuid4())
