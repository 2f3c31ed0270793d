"""cfn-lint and the CDK CLI on the synthesized app: zero errors, zero warnings."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from .cdk_synth import NODE_BIN, ROOT

CFN_LINT = Path(sys.executable).parent / "cfn-lint"
# The machine's own npm user config (not this project's) makes npm print this on every call.
MACHINE_NPM_NOTICE = 'npm warn Unknown user config "nodedir"'


def test_cfn_lint_passes_every_template(synthesized):
    templates = sorted(str(path) for path in synthesized.outdir.glob("*.template.json"))
    assert len(templates) == 6
    result = subprocess.run(
        [str(CFN_LINT), "--format", "parseable", *templates],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_npx_cdk_synth_prints_no_warning(tmp_path):
    """The pinned CLI on the pinned Node: no annotation, feature-flag notice or EOL banner.

    With no AWS settings the CLI tells the app CDK_DEFAULT_REGION=us-east-1; the assembly
    must not name that region, or it would deploy there whatever the credentials say.
    """
    assert (NODE_BIN / "cdk").exists(), "node_modules missing: run `make setup` (npm ci)"
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "CDK_"))
        and key != "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION"
    }
    result = subprocess.run(
        [
            shutil.which("npx") or "npx",
            "cdk",
            "synth",
            "--quiet",
            "--no-notices",
            "--output",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
    )
    output = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if line.strip() and not line.startswith(MACHINE_NPM_NOTICE)
    ]
    assert result.returncode == 0, "\n".join(output)
    assert output == [
        f"Successfully synthesized to {tmp_path}",
        "Supply a stack id (custom-sm-storage, custom-sm-registry, custom-sm-iam, "
        "custom-sm-training, custom-sm-serving, custom-sm-client) to display its template.",
    ]
    assert (
        '"environment": "aws://unknown-account/us-east-1"'
        not in (tmp_path / "manifest.json").read_text()
    )
    for path in tmp_path.glob("*.template.json"):
        assert '"Region": "us-east-1"' not in path.read_text(), path.name
