"""`make rehearse`: deploy and destroy the app in moto as `cdk deploy/destroy --all`, and check.

python -m local.rehearsal [--workdir DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from local.rehearsal.scenario import rehearsed, rehearsed_teardown


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workdir", type=Path, help="where the assemblies go (default: a temp dir)"
    )
    args = parser.parse_args()
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="rehearsal-") as scratch,
        rehearsed(args.workdir or Path(scratch)) as run,
    ):
        print(run.report(gaps=False))
        with rehearsed_teardown(args.workdir or Path(scratch), run.deploys[0].assembly) as down:
            print(down.report(gaps=False))
        run.gaps.merge(down.gaps)
        print("\n".join(run.gaps.lines()))
        passed = run.passed and down.passed
    print(f"rehearsal {'passed' if passed else 'FAILED'} in {time.monotonic() - started:.0f} s")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
