"""`make image-test` names the step a failed build stopped at, for Docker and for podman."""

from __future__ import annotations

from local.images.engines import failed_step

PODMAN = """\
STEP 1/9: FROM python:3.13-slim-trixie
STEP 2/9: RUN apt-get update     && apt-get install -y --no-install-recommends libgomp1
--> Using cache 9f1e
STEP 6/9: RUN pip install --no-cache-dir -r requirements-training.txt
ERROR: Could not open requirements file: [Errno 2] No such file or directory
Error: building at STEP "RUN pip install --no-cache-dir -r requirements-training.txt": exit 1
"""
BUILDKIT = """\
#5 [2/7] RUN apt-get update
#5 CACHED
#9 [5/7] RUN pip install --no-cache-dir -r requirements-training.txt
#9 0.412 ERROR: Could not open requirements file
ERROR: failed to solve: process "/bin/sh -c pip install" did not complete successfully
"""
CLASSIC = """\
Step 1/9 : FROM python:3.13-slim-trixie
Step 6/9 : RUN pip install --no-cache-dir -r requirements-training.txt
The command '/bin/sh -c pip install' returned a non-zero code: 1
"""


def test_the_failed_step_is_the_last_one_named():
    for output in (PODMAN, BUILDKIT, CLASSIC):
        assert failed_step(output) == "RUN pip install --no-cache-dir -r requirements-training.txt"


def test_a_failure_before_any_step_says_so():
    assert failed_step("Error: no such file: Dockerfile.training\n") == "before the first step"
