"""Building and running the images: Docker where an engine runs, podman where none does.

Both speak the same command line, so one class drives either: `docker ...`, or `podman` with
this project's own storage under `build/images/` (overlay where the kernel has it), `runc` as
the runtime (crun refuses some hosts' cgroup layouts) and explicit ulimits (podman's defaults
exceed what some hosts allow). podman builds with `--isolation chroot`: no daemon, no user
namespaces needed.
"""

from __future__ import annotations

import json
import re
import resource
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

BUILD_TIMEOUT_SECONDS = 1800
MAX_PROCESSES = 4096
# `docker build` (BuildKit) and `podman build` each name the step they are on.
STEP_LINES = (
    re.compile(r"^STEP \d+/\d+: (.+)$"),  # podman
    re.compile(r"^#\d+ \[[^\]]+\] (.+)$"),  # docker, BuildKit
    re.compile(r"^Step \d+/\d+ : (.+)$"),  # docker, classic builder
)


class ImageError(RuntimeError):
    """A build or a run that failed; the message names the image and the step."""


def failed_step(output: str) -> str:
    """The last build step the output names: the one that failed when the build did."""
    step = "before the first step"
    for line in output.splitlines():
        for pattern in STEP_LINES:
            match = pattern.match(line.strip())
            if match:
                step = match.group(1)
    return step


@dataclass(frozen=True)
class Mount:
    source: Path
    target: str
    read_only: bool = False

    def argument(self) -> str:
        return f"{self.source}:{self.target}{':ro' if self.read_only else ''}"


@dataclass
class Engine:
    """One container CLI; `describe` says which one, for the report."""

    name: str
    command: list[str]
    build_options: list[str] = field(default_factory=list)
    run_options: list[str] = field(default_factory=list)

    def build(
        self,
        image: str,
        context: Path,
        dockerfile: str,
        tag: str,
        log: Path,
        build_args: dict[str, str],
    ) -> None:
        """Builds `tag`; on failure raises ImageError naming `image` and the failed step."""
        started = time.monotonic()
        process = subprocess.run(
            [
                *self.command,
                "build",
                *self.build_options,
                *(f"--build-arg={key}={value}" for key, value in sorted(build_args.items())),
                "-f",
                str(context / dockerfile),
                "-t",
                tag,
                str(context),
            ],
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_SECONDS,
            check=False,
        )
        output = process.stdout + process.stderr
        log.write_text(output)
        if process.returncode != 0:
            tail = "\n".join(output.strip().splitlines()[-15:])
            raise ImageError(
                f"the {image} image did not build: step `{failed_step(output)}` failed "
                f"(after {time.monotonic() - started:.0f} s; full log {log}):\n{tail}"
            )

    def run(
        self,
        image: str,
        arguments: list[str],
        *,
        mounts: list[Mount],
        timeout: float,
        environment: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Runs a container to its end, without network (SageMaker's network isolation)."""
        return subprocess.run(
            [
                *self.command,
                "run",
                "--rm",
                "--network",
                "none",
                *self.run_options,
                *self._mounts(mounts),
                *self._environment(environment),
                image,
                *arguments,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start(
        self,
        name: str,
        image: str,
        arguments: list[str],
        *,
        mounts: list[Mount],
        port: int,
        environment: dict[str, str],
    ) -> None:
        """Starts a container in the background, its port 8080 on 127.0.0.1:`port`."""
        subprocess.run(
            [
                *self.command,
                "run",
                "-d",
                "--name",
                name,
                "-p",
                f"127.0.0.1:{port}:8080",
                *self.run_options,
                *self._mounts(mounts),
                *self._environment(environment),
                image,
                *arguments,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )

    def stop(self, name: str, grace_seconds: int) -> tuple[int, float]:
        """SIGTERM, then SIGKILL after `grace_seconds`: (exit code, seconds it took)."""
        started = time.monotonic()
        self._quiet("stop", "-t", str(grace_seconds), name)
        elapsed = time.monotonic() - started
        inspected = subprocess.run(
            [*self.command, "inspect", name, "--format", "{{json .State.ExitCode}}"],
            capture_output=True,
            text=True,
            check=True,
        )
        return int(json.loads(inspected.stdout)), elapsed

    def logs(self, name: str) -> str:
        process = subprocess.run(
            [*self.command, "logs", name], capture_output=True, text=True, check=False
        )
        return process.stdout + process.stderr

    def remove(self, name: str) -> None:
        self._quiet("rm", "-f", name)

    def remove_image(self, tag: str) -> None:
        self._quiet("rmi", "-f", tag)

    def remove_other_tags(self, tag: str) -> None:
        """Earlier builds of the same repository: each run keeps only the newest."""
        repository = tag.rsplit(":", 1)[0]
        listed = subprocess.run(
            [*self.command, "images", repository, "--format", "{{.Repository}}:{{.Tag}}"],
            capture_output=True,
            text=True,
            check=False,
        )
        for other in listed.stdout.split():
            if other != tag:
                self.remove_image(other)

    def _quiet(self, *arguments: str) -> None:
        subprocess.run(
            [*self.command, *arguments], capture_output=True, text=True, timeout=120, check=False
        )

    @staticmethod
    def _mounts(mounts: list[Mount]) -> list[str]:
        return [argument for mount in mounts for argument in ("-v", mount.argument())]

    @staticmethod
    def _environment(environment: dict[str, str] | None) -> list[str]:
        return [
            arg for key, value in (environment or {}).items() for arg in ("-e", f"{key}={value}")
        ]


def docker_engine() -> Engine | None:
    """Docker, if an engine answers (the client alone is not enough)."""
    docker = shutil.which("docker")
    if docker is None:
        return None
    answer = subprocess.run(
        [docker, "info", "--format", "{{.ServerVersion}}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if answer.returncode != 0 or not answer.stdout.strip():
        return None
    return Engine(
        name=f"Docker {answer.stdout.strip()}",
        command=[docker],
        build_options=["--platform", "linux/amd64"],
        run_options=["--platform", "linux/amd64"],
    )


def podman_engine(storage: Path) -> Engine:
    """podman with storage of its own under `storage`, building on the stand-in base only."""
    graph, run = storage / "storage", storage / "run"
    graph.mkdir(parents=True, exist_ok=True)
    run.mkdir(parents=True, exist_ok=True)
    # podman's defaults ask for more than some hosts grant (runc then fails with "error
    # setting rlimit"): this host's own open-file limit, and a few thousand processes, which
    # a model server with a handful of workers never approaches.
    files = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    hard_processes = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    processes = (
        MAX_PROCESSES
        if hard_processes == resource.RLIM_INFINITY
        else min(hard_processes, MAX_PROCESSES)
    )
    version = subprocess.run(["podman", "--version"], capture_output=True, text=True, check=True)
    return Engine(
        name=f"{version.stdout.strip()} (runc, {storage_driver()} storage under {storage})",
        command=[
            "podman",
            "--root",
            str(graph),
            "--runroot",
            str(run),
            "--storage-driver",
            storage_driver(),
            "--runtime",
            "runc",
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
        ],
        build_options=["--isolation", "chroot", "--layers", "--pull=never"],
        run_options=[
            "--ulimit",
            f"nofile={files}:{files}",
            "--ulimit",
            f"nproc={processes}:{processes}",
        ],
    )


def storage_driver() -> str:
    """overlay where the kernel offers it, vfs (slower, more disk) where it does not."""
    filesystems = Path("/proc/filesystems")
    if filesystems.exists() and "overlay" in filesystems.read_text():
        return "overlay"
    return "vfs"
