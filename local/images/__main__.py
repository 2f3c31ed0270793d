"""`make image-test`: build both images as `cdk deploy` would, and run their programs inside.

python -m local.images [--workdir DIR] [-c KEY=VALUE ...]
    # default workdir: build/images (kept: the cache); -c is passed to `cdk synth`, e.g.
    # -c config.model_family=xgboost builds and runs both images for that family
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from local.images.image_test import ROOT, image_test


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=ROOT / "build" / "images")
    parser.add_argument("-c", "--context", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    started = time.monotonic()
    run = image_test(args.workdir.resolve(), args.context)
    print(run.report())
    print(
        f"image test {'passed' if run.passed else 'FAILED'} in {time.monotonic() - started:.0f} s"
    )
    return 0 if run.passed else 1


if __name__ == "__main__":
    sys.exit(main())
