"""One checkpoint file: a magic line, a manifest line, then the family's model bytes.

``checkpoint-000120.ckpt`` holds the model after iteration 120 as its family serialized it,
behind a one-line JSON manifest that says what it is of and gives the length and sha256 of
those bytes: a file cut short by an interrupted copy or sync is recognised, never loaded.
It is written under a hidden temporary name in the same folder, fsynced, then renamed
over its final name, so a reader finds a whole checkpoint or none.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, get_origin, get_type_hints

MAGIC = b"model-kit checkpoint\n"
FORMAT_VERSION = 1
NAME = re.compile(r"checkpoint-(\d{6,})\.ckpt")
# A write in progress: hidden, and not ending in .ckpt, so never taken for a checkpoint.
PARTIAL = ".checkpoint-*.ckpt.partial"


class InvalidCheckpoint(Exception):
    """A checkpoint this run cannot continue; the message says why."""


@dataclass(frozen=True)
class Manifest:
    """What a checkpoint is of: who trained it, on what, and how far."""

    family: str
    iteration: int
    data_sha256: str
    settings: dict[str, Any]
    settings_sha256: str
    best_iteration: int
    best_loss: float
    elapsed_seconds: float


def checkpoint_name(iteration: int) -> str:
    return f"checkpoint-{iteration:06d}.ckpt"


def checkpoint_files(folder: Path) -> list[Path]:
    """The checkpoints in ``folder`` by name, newest iteration first."""
    found = [
        (int(m.group(1)), p)
        for p in folder.iterdir()
        if (m := NAME.fullmatch(p.name)) and p.is_file()
    ]
    return [path for _, path in sorted(found, reverse=True)]


def write_checkpoint(folder: Path, manifest: Manifest, payload: bytes) -> Path:
    entries = {
        "format_version": FORMAT_VERSION,
        **asdict(manifest),
        "payload_bytes": len(payload),
        "payload_sha256": hashlib.sha256(payload).hexdigest(),
    }
    path = folder / checkpoint_name(manifest.iteration)
    # json.dumps escapes newlines inside strings: the manifest stays one line.
    _write_atomically(path, MAGIC + json.dumps(entries).encode() + b"\n" + payload)
    return path


def _write_atomically(path: Path, content: bytes) -> None:
    partial = path.with_name(f".{path.name}.partial")
    try:
        with partial.open("wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a crash
    finally:
        os.close(directory)


def read_checkpoint(path: Path) -> tuple[Manifest, bytes]:
    """The manifest and model bytes of a whole checkpoint, or InvalidCheckpoint."""
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise InvalidCheckpoint(f"cannot be read: {exc}") from None
    if not content.startswith(MAGIC):
        raise InvalidCheckpoint("truncated or not a checkpoint: its first line is not the magic")
    line, newline, payload = content[len(MAGIC) :].partition(b"\n")
    if not newline:
        raise InvalidCheckpoint("truncated within its manifest")
    try:
        entries = json.loads(line)
    except ValueError as exc:
        raise InvalidCheckpoint(f"bad manifest: {exc}") from None
    if not isinstance(entries, dict):
        raise InvalidCheckpoint("bad manifest: not a JSON object")
    version = entries.pop("format_version", None)
    if version != FORMAT_VERSION:
        raise InvalidCheckpoint(f"format version {version!r}; this program reads {FORMAT_VERSION}")
    size, digest = entries.pop("payload_bytes", None), entries.pop("payload_sha256", None)
    if len(payload) != size:
        raise InvalidCheckpoint(
            f"truncated or corrupt: {len(payload)} bytes of model where its manifest says {size}"
        )
    if hashlib.sha256(payload).hexdigest() != digest:
        raise InvalidCheckpoint("corrupt: its model bytes do not have the sha256 of its manifest")
    manifest = _manifest(entries)
    if checkpoint_name(manifest.iteration) != path.name:
        raise InvalidCheckpoint(f"bad manifest: it is of iteration {manifest.iteration}")
    return manifest, payload


def _manifest(entries: dict[str, Any]) -> Manifest:
    """The manifest's fields, each of its declared type."""
    try:
        manifest = Manifest(**entries)
    except TypeError as exc:
        raise InvalidCheckpoint(f"bad manifest: {exc}") from None
    types = get_type_hints(Manifest)
    for field in fields(Manifest):
        kind = get_origin(types[field.name]) or types[field.name]
        if not isinstance(getattr(manifest, field.name), kind):
            raise InvalidCheckpoint(f"bad manifest: {field.name} is not of type {kind.__name__}")
    return manifest


def remove_partial_writes(folder: Path) -> list[str]:
    """Delete what interrupted writes left behind; their names."""
    partials = sorted(folder.glob(PARTIAL))
    for partial in partials:
        partial.unlink(missing_ok=True)
    return [p.name for p in partials]
