"""Drive a server with wrk (a separate C process) and read back its summary.

wrk runs one thread: on a 2-core machine every CPU the load generator takes
is taken from the servers, and one wrk thread keeps 32 connections busy at
rates far above either server's (``run_bench`` measures it against nginx's
static answer and reports that ceiling).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

WRK_SCRIPT = Path(__file__).resolve().parent / "wrk_post.lua"
MARKER = "BENCH_JSON "


class LoadError(RuntimeError):
    """wrk could not run, or the server answered some requests with errors."""


@dataclass(frozen=True)
class LoadResult:
    """What one wrk run measured; latencies in milliseconds."""

    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds


def wrk_path() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise LoadError("wrk is not installed: `make bench` installs it (apt-get install -y wrk)")
    return path


def run_wrk(
    url: str,
    body_file: Path | None,
    connections: int,
    seconds: float,
    timeout_s: int = 60,
    any_status: bool = False,
    accept: str = "text/csv",
) -> LoadResult:
    """``connections`` keep-alive connections for ``seconds``; POST ``body_file`` (asking for
    ``accept`` back), or GET.

    Any non-2xx answer is an error unless ``any_status`` (for measuring wrk
    itself against a static 404).
    """
    command = [
        wrk_path(),
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        f"--timeout={timeout_s}s",
        "-s",
        str(WRK_SCRIPT),
        url,
    ]
    env = {
        "BENCH_BODY": str(body_file) if body_file else "/dev/null",
        "BENCH_ACCEPT": accept,
        "PATH": "/usr/bin:/bin",
    }
    completed = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=seconds + timeout_s + 30
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith(MARKER)]
    if completed.returncode != 0 or not lines:
        raise LoadError(f"wrk failed on {url}:\n{completed.stdout}\n{completed.stderr}")
    summary = json.loads(lines[-1][len(MARKER) :])
    kinds = ["connect_errors", "read_errors", "write_errors", "timeouts"]
    if not any_status:
        kinds.append("status_errors")
    errors = {key: summary[key] for key in kinds if summary[key]}
    if errors or not summary["requests"]:
        raise LoadError(
            f"{url} with {connections} connections: {summary['requests']} requests, errors {errors}"
        )
    return LoadResult(
        requests=summary["requests"],
        seconds=summary["duration_us"] / 1e6,
        p50_ms=summary["p50_us"] / 1e3,
        p90_ms=summary["p90_us"] / 1e3,
        p99_ms=summary["p99_us"] / 1e3,
        max_ms=summary["max_us"] / 1e3,
    )
