"""Reporting a failed run where SageMaker and a person will look for it."""

from __future__ import annotations

import sys

from model_kit.paths import MLPaths


def report_failure(paths: MLPaths, reason: str, details: str = "") -> None:
    """Write ``reason`` (then ``details``, e.g. a traceback) to the failure file and stderr.

    The reason goes first: SageMaker keeps only the first 1024 characters of the
    file as the job's FailureReason.
    """
    text = reason if not details else f"{reason}\n\n{details}"
    print(f"training failed: {text}", file=sys.stderr, flush=True)
    try:
        paths.output_dir.mkdir(parents=True, exist_ok=True)
        paths.failure_file.write_text(text + "\n", encoding="utf-8")
    except OSError as exc:
        print(f"could not write {paths.failure_file}: {exc}", file=sys.stderr, flush=True)
