"""The AWS CLI in place of the AWS CLI layer's `/opt/awscli/aws`, recording its calls.

CDK's dataset-upload handler runs `aws s3 sync` from that layer; Lambda layers are mounted
under /opt, which does not exist here. Its calls go, like the handler's own, to the file named
by REHEARSAL_AWS_CALLS_FILE, so they are checked against the handler's role.

    python -m local.rehearsal.aws_cli s3 sync ...
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

from awscli.clidriver import create_clidriver

from local.aws_calls import CALL_EVENT, CALLS_FILE_VARIABLE, AwsCall, append_calls, recorder

_LOCK = threading.Lock()


def main() -> int:
    driver = create_clidriver()
    path = os.environ.get(CALLS_FILE_VARIABLE)
    if path:

        def sink(call: AwsCall) -> None:
            with _LOCK:  # `aws s3 sync` calls from several threads
                append_calls(Path(path), [call])

        driver.session.register(CALL_EVENT, recorder(sink))
    return driver.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
