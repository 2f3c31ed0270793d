"""Runs one Lambda handler from a code folder, in a process of its own, as Lambda would.

    python -m local.rehearsal.lambda_runner CODE_DIR MODULE.FUNCTION --result FILE \
        [--map FROM=TO] < event

The event comes on stdin and the handler's return value goes to FILE as JSON (stdout and
stderr are the function's log, as in Lambda). Every AWS
call the handler makes through boto3 is appended to the file named by
REHEARSAL_AWS_CALLS_FILE. `--map` replaces a program the handler runs with a command: Lambda layers
are mounted under /opt, which does not exist here (CDK's dataset upload runs the AWS CLI
layer's /opt/awscli/aws).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3

from local.aws_calls import CALLS_FILE_VARIABLE, append_calls, recording


class LambdaContext:
    """The few context attributes handlers read."""

    def __init__(self) -> None:
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "rehearsal")
        self.log_stream_name = "rehearsal"
        self.aws_request_id = "rehearsal"

    def get_remaining_time_in_millis(self) -> int:
        return 15 * 60 * 1000


def path_mapping_subprocess(mapping: dict[str, str]) -> SimpleNamespace:
    """`subprocess` as a handler module sees it, with mapped program paths rewritten."""

    def mapped(command: Any) -> Any:
        if isinstance(command, list | tuple) and command and command[0] in mapping:
            return [*shlex.split(mapping[command[0]]), *command[1:]]
        return command

    def wrap(function: Any) -> Any:
        return lambda command, *args, **kwargs: function(mapped(command), *args, **kwargs)

    shim = SimpleNamespace(
        **{name: getattr(subprocess, name) for name in dir(subprocess) if not name.startswith("_")}
    )
    for name in ("check_call", "check_output", "run", "call", "Popen"):
        setattr(shim, name, wrap(getattr(subprocess, name)))
    return shim


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("code_dir", type=Path)
    parser.add_argument("handler", help="MODULE.FUNCTION, as in the function's Handler")
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--map", action="append", default=[], metavar="FROM=TO")
    args = parser.parse_args()
    event = json.load(sys.stdin)
    module_name, _, function_name = args.handler.rpartition(".")
    sys.path.insert(0, str(args.code_dir))
    calls_file = os.environ.get(CALLS_FILE_VARIABLE)
    # Module-level clients (created at import) must be recorded too.
    with recording(boto3._get_default_session()) as calls:
        try:
            module = importlib.import_module(module_name)
            if args.map:
                module.subprocess = path_mapping_subprocess(
                    dict(item.split("=", 1) for item in args.map)
                )
            result = getattr(module, function_name)(event, LambdaContext())
        finally:
            if calls_file:
                append_calls(Path(calls_file), calls)
    args.result.write_text(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
