"""The classic container's ``serve`` program: nginx in front of gunicorn gevent workers.

    ML_ROOT=DIR python benchmarks/reference/serve.py

Like the classic example it starts nginx and gunicorn (``-k gevent``, bound to a
unix socket, ``MODEL_SERVER_WORKERS`` workers, default one per CPU) and waits
until either exits, then stops the other; SIGTERM stops both. Differences, all
needed to run it beside our server on one machine rather than alone in a
container: nginx gets a generated config in a private temporary directory
(port ``REFERENCE_PORT``, default 8080, on loopback) instead of ``/opt/program``,
and OpenMP gets one thread per worker when there are several workers, exactly
as our server does, so the benchmark compares serving stacks, not thread counts.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import string
import subprocess
import sys
import tempfile
from pathlib import Path
from types import FrameType

HERE = Path(__file__).resolve().parent
CONTAINERS = HERE.parent.parent / "containers"
TEMP_SUBDIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def nginx_binary() -> str:
    """nginx from PATH, or Debian's /usr/sbin/nginx (not on a normal user's PATH)."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if found is None:
        sys.exit("nginx is not installed: apt-get install -y nginx-light (Debian)")
    return found


def nginx_config(workdir: Path, port: int, socket_path: Path) -> Path:
    """Write nginx.conf for this run into ``workdir`` and return its path."""
    for name in TEMP_SUBDIRS:
        (workdir / name).mkdir()
    text = string.Template((HERE / "nginx.conf.template").read_text()).substitute(
        workdir=workdir, port=port, socket=socket_path, user=getpass.getuser()
    )
    config = workdir / "nginx.conf"
    config.write_text(text)
    return config


def gunicorn_command(socket_path: Path, workers: int, timeout: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--timeout",
        str(timeout),
        "-k",
        "gevent",
        "-b",
        f"unix:{socket_path}",
        "-w",
        str(workers),
        # gunicorn 23+ opens a control socket at a fixed path; two servers would share it.
        "--no-control-socket",
        "--chdir",
        str(HERE),
        "predictor:app",
    ]


class _StopRequested(Exception):
    """SIGTERM arrived: leave the wait and stop both children outside the signal handler."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _StopRequested


def main() -> None:
    workers = int(os.environ.get("MODEL_SERVER_WORKERS", len(os.sched_getaffinity(0))))
    timeout = int(os.environ.get("MODEL_SERVER_TIMEOUT", "60"))
    port = int(os.environ.get("REFERENCE_PORT", "8080"))
    workdir = Path(tempfile.mkdtemp(prefix="reference-server-"))
    socket_path = workdir / "gunicorn.sock"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(CONTAINERS), env.get("PYTHONPATH")]))
    if workers > 1:
        env["OMP_NUM_THREADS"] = "1"
    print(f"Starting the inference server with {workers} workers.", flush=True)
    nginx = subprocess.Popen(
        [nginx_binary(), "-c", str(nginx_config(workdir, port, socket_path)), "-e", "stderr"]
    )
    gunicorn = subprocess.Popen(gunicorn_command(socket_path, workers, timeout), env=env)

    signal.signal(signal.SIGTERM, _raise_stop)
    with contextlib.suppress(_StopRequested):
        os.wait()  # until nginx or gunicorn exits, or SIGTERM
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for process, signal_number in ((nginx, signal.SIGQUIT), (gunicorn, signal.SIGTERM)):
        if process.poll() is None:
            process.send_signal(signal_number)
    for process in (nginx, gunicorn):
        process.wait()
    shutil.rmtree(workdir, ignore_errors=True)
    print("Inference server exiting", flush=True)


if __name__ == "__main__":
    main()
