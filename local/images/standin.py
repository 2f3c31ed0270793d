"""A stand-in for `python:3.13-slim-trixie` when no Docker engine can pull the real one.

Built from Debian's own packages: `debootstrap --variant=minbase trixie` with Debian's
python3.13, pip and CA certificates, Python linked into /usr/local/bin as in the official
image, imported into podman's storage under the official name, so both Dockerfiles build
unmodified. It differs from the official image in ways the report states: Debian's Python
build and patch version instead of one compiled from python.org, Debian's pip, the minbase
package set; and, where this host trusts extra certificate authorities (a network that
intercepts TLS), the base trusts them too and pip uses the system's bundle, so `pip install`
inside the builds works. The real Docker path never sees any of this.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from local.images.engines import Engine, ImageError

BASE_IMAGE = "docker.io/library/python:3.13-slim-trixie"
SUITE = "trixie"
MIRROR = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")
PACKAGES = ("python3.13", "python3-pip", "ca-certificates")
# Where Debian (and update-ca-certificates) keep a host's own extra authorities.
EXTRA_AUTHORITIES = Path("/usr/local/share/ca-certificates")
PIP_CONFIG = "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n"
RECIPE_LABEL = "org.custom-sm.standin-recipe"
# Each is also the name of its Debian package.
DEBIAN_TOOLS = ("podman", "runc", "debootstrap")
DEBOOTSTRAP_TIMEOUT_SECONDS = 900


@dataclass(frozen=True)
class StandIn:
    """What the built base is, for the report."""

    python: str
    pip: str
    extra_authorities: tuple[str, ...]
    reused: bool

    def differences(self) -> str:
        trusted = (
            f"; trusts this host's extra CAs ({', '.join(self.extra_authorities)}) and points "
            "pip at the system bundle"
            if self.extra_authorities
            else ""
        )
        return (
            f"stand-in for {BASE_IMAGE}: Debian {SUITE} minbase with Debian's {self.python} "
            f"(the official image compiles the newest 3.13 release from python.org) and "
            f"Debian's pip {self.pip}{trusted}"
        )


def install_tools() -> list[str]:
    """Installs podman, runc and debootstrap from Debian if any is missing (root only)."""
    missing = [tool for tool in DEBIAN_TOOLS if shutil.which(tool) is None]
    if not missing:
        return []
    command = ["apt-get", "install", "-y", *missing]
    if os.geteuid() != 0:
        raise ImageError(
            "no Docker engine here, and the stand-in path needs Debian packages that are "
            f"missing: {', '.join(missing)}. Install them as root: sudo apt-get update && "
            f"sudo {' '.join(command)}"
        )
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True)
    subprocess.run(command, check=True, capture_output=True, env=environment)
    return missing


def recipe() -> str:
    """What the base is made of; a change rebuilds it, anything else reuses it."""
    parts = [SUITE, MIRROR, *PACKAGES, PIP_CONFIG, *_authority_texts()]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _authorities() -> list[Path]:
    return sorted(EXTRA_AUTHORITIES.glob("*.crt")) if EXTRA_AUTHORITIES.is_dir() else []


def _authority_texts() -> list[str]:
    return [path.read_text() for path in _authorities()]


def ensure_base(engine: Engine, workdir: Path) -> StandIn:
    """The stand-in base in the engine's storage, built only when its recipe changed."""
    wanted = recipe()
    present = subprocess.run(
        [
            *engine.command,
            "image",
            "inspect",
            BASE_IMAGE,
            "--format",
            f'{{{{index .Labels "{RECIPE_LABEL}"}}}}',
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    reused = present.returncode == 0 and present.stdout.strip() == wanted
    if not reused:
        _build_base(engine, workdir / "rootfs", wanted)
    versions = subprocess.run(
        [
            *engine.command,
            "run",
            "--rm",
            "--network",
            "none",
            *engine.run_options,
            BASE_IMAGE,
            "sh",
            "-c",
            "python --version && pip --version",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return StandIn(
        python=f"Python {versions[1]}",
        pip=versions[3],
        extra_authorities=tuple(path.name for path in _authorities()),
        reused=reused,
    )


def _build_base(engine: Engine, rootfs: Path, wanted: str) -> None:
    shutil.rmtree(rootfs, ignore_errors=True)
    process = subprocess.run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(PACKAGES)}",
            SUITE,
            str(rootfs),
            MIRROR,
        ],
        capture_output=True,
        text=True,
        timeout=DEBOOTSTRAP_TIMEOUT_SECONDS,
        check=False,
    )
    if process.returncode != 0:
        raise ImageError(f"debootstrap of Debian {SUITE} failed:\n{process.stdout[-2000:]}")
    for authority in _authorities():
        shutil.copy(authority, rootfs / "usr" / "local" / "share" / "ca-certificates")
    subprocess.run(
        ["chroot", str(rootfs), "update-ca-certificates"], check=True, capture_output=True
    )
    (rootfs / "etc" / "pip.conf").write_text(PIP_CONFIG)
    # The official image's Python lives in /usr/local/bin and is not Debian-managed.
    for name in ("python", "python3", "python3.13"):
        (rootfs / "usr" / "local" / "bin" / name).symlink_to("/usr/bin/python3.13")
    for name in ("pip", "pip3"):
        (rootfs / "usr" / "local" / "bin" / name).symlink_to("/usr/bin/pip3")
    (rootfs / "usr" / "lib" / "python3.13" / "EXTERNALLY-MANAGED").unlink(missing_ok=True)
    archive = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    imported = subprocess.run(
        [
            *engine.command,
            "import",
            "--change",
            "ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--change",
            "ENV LANG=C.UTF-8",
            "--change",
            f"LABEL {RECIPE_LABEL}={wanted}",
            "--change",
            'CMD ["python3"]',
            "-",
            BASE_IMAGE,
        ],
        stdin=archive.stdout,
        capture_output=True,
        text=True,
        check=False,
    )
    archive.wait()
    shutil.rmtree(rootfs, ignore_errors=True)
    if imported.returncode != 0:
        raise ImageError(f"importing the stand-in base failed:\n{imported.stderr[-2000:]}")
