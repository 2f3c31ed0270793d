"""`make fuzz`: coverage-guided fuzzing of every request decoder and the answer writer.

    python -m local.fuzz [--seconds N] [--workdir DIR]

The server's C code is built with clang under AddressSanitizer and UndefinedBehaviorSanitizer
and with libFuzzer's coverage instrumentation, so inputs that reach new C code are kept and
mutated; the Python decoders are instrumented by atheris. Each input goes to one decoder,
chosen by its first byte, and is checked against `local.decoder_oracles`: the C parser agrees
with the Python reference bit for bit or refuses, and every decoder returns a matrix or a
400. One first byte in five sends the input instead to the C answer writer, whose JSON and
JSON Lines must equal the Python templates' (`local.answer_oracle`). A crash, a sanitizer
report or a broken property stops the run and leaves the input in the work folder's
`crashes/`; the corpus in `corpus/` (seeded with the sample data) grows from run to run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SANITIZED_COMPILE = [
    "clang",
    "-O1",
    "-g",
    "-fsanitize=address,undefined,fuzzer-no-link",
    "-fno-sanitize-recover=undefined",
    "-shared",
    "-fPIC",
]
DECODERS = ("text/csv", "application/json", "application/jsonlines", "application/x-npy")


def target(data: bytes) -> None:
    """One input: the first byte picks the decoder (and, for CSV, where the body is cut), or
    the C answer writer, which gets the rest as doubles."""
    from model_kit.serving.formats import BY_MEDIA_TYPE

    from local.answer_oracle import check_answers
    from local.decoder_oracles import check_csv, cut, decode_or_refuse

    if not data:
        return
    choice, body = data[0], data[1:]
    if choice % (len(DECODERS) + 1) == len(DECODERS):
        check_answers(body)
        return
    media_type = DECODERS[choice % (len(DECODERS) + 1)]
    if media_type == "text/csv":
        check_csv(body, cut(body, [choice * 7, choice * 13]))
    decode_or_refuse(BY_MEDIA_TYPE[media_type].decode, body)


def seeds(corpus: Path) -> None:
    """A few real bodies to start from, one per decoder."""
    import io
    import json

    import numpy as np

    corpus.mkdir(parents=True, exist_ok=True)
    rows = (ROOT / "data" / "inference" / "inference.csv").read_text().splitlines()[1:4]
    matrix = [[float(v) for v in row.split(",")[:3]] for row in rows]
    text = "\n".join(",".join(str(v) for v in row) for row in matrix) + "\n"
    array = io.BytesIO()
    np.save(array, np.array(matrix))
    bodies = {
        "csv": b"\x00" + text.encode(),
        "json": b"\x01" + json.dumps({"instances": matrix}).encode(),
        "jsonlines": b"\x02" + "\n".join(json.dumps(r) for r in matrix).encode(),
        "npy": b"\x03" + array.getvalue(),
        "answers": b"\x04" + np.array([[0.25, 0.5, 0.25], [1e-05, 1.0, 0.0]]).tobytes(),
    }
    for name, body in bodies.items():
        (corpus / f"seed-{name}").write_bytes(body)


def fuzz(argv: list[str]) -> None:
    """Inside the sanitized process: instrument, point at the sanitized C library, run."""
    import atheris

    with atheris.instrument_imports(
        include=["model_kit", "local.decoder_oracles", "local.answer_oracle"]
    ):
        import model_kit.serving.formats  # noqa: F401
        from model_kit.serving import native

        # Instrumented now, imported by target.
        import local.answer_oracle
        import local.decoder_oracles  # noqa: F401
    native.LIBRARY = Path(os.environ["FUZZ_NATIVE_LIBRARY"])
    atheris.Setup(argv, target)
    atheris.Fuzz()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=int(os.environ.get("FUZZ_SECONDS", 300)))
    parser.add_argument("--workdir", type=Path, default=ROOT / "build" / "fuzz")
    args = parser.parse_args()
    import atheris
    from model_kit.serving import native

    workdir = args.workdir.resolve()
    corpus, crashes = workdir / "corpus", workdir / "crashes"
    crashes.mkdir(parents=True, exist_ok=True)
    seeds(corpus)
    library = native.build(workdir / "_native_sanitized.so", SANITIZED_COMPILE)
    environment = {
        **os.environ,
        "LD_PRELOAD": str(Path(atheris.path()) / "asan_with_fuzzer.so"),
        "ASAN_OPTIONS": "detect_leaks=0:allocator_may_return_null=1",
        "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1",
        "FUZZ_NATIVE_LIBRARY": str(library),
    }
    command = [
        sys.executable,
        "-c",
        "import sys; from local.fuzz import fuzz; fuzz(sys.argv)",
        f"-max_total_time={args.seconds}",
        f"-artifact_prefix={crashes}/",
        "-print_final_stats=1",
        str(corpus),
    ]
    print(f"fuzzing the request decoders for {args.seconds} s (corpus {corpus})", flush=True)
    return subprocess.run(command, env=environment, cwd=ROOT, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
