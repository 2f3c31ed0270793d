"""The C fast path for CSV bodies: the same floats as Python, and out of the way otherwise.

``parse`` returning None hands the body to the exact Python parser, which the
codec tests cover; these check what the fast path itself accepts and produces.
"""

from __future__ import annotations

import math
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from model_kit.serving import fastcsv

from local.services import free_port


def python_floats(lines: list[str]) -> np.ndarray:
    return np.array(
        [[float(cell) if cell else math.nan for cell in line.split(",")] for line in lines]
    )


def random_numbers(count: int, seed: int) -> list[str]:
    """Decimal and exponent notation, short and long mantissas, from 1e-320 to 1e300."""
    rng = random.Random(seed)
    numbers = []
    for _ in range(count):
        value = rng.uniform(-1, 1) * 10.0 ** rng.randint(-320, 300)
        style = rng.randrange(4)
        if style == 0:
            numbers.append(repr(value))
        elif style == 1:
            numbers.append(f"{value:.{rng.randint(0, 25)}e}")
        elif style == 2:
            numbers.append(f"{rng.uniform(-1e6, 1e6):.{rng.randint(0, 20)}f}")
        else:
            numbers.append(str(rng.randint(-(10**20), 10**20)))
    return numbers


def test_every_number_is_the_float_python_reads():
    numbers = random_numbers(60_000, seed=7)
    lines = [",".join(numbers[i : i + 6]) for i in range(0, len(numbers), 6)]
    parsed = fastcsv.parse([("\n".join(lines) + "\n").encode()], 6)
    assert parsed is not None
    np.testing.assert_array_equal(parsed, python_floats(lines))


EDGE_CELLS = [
    "0", "-0", "+1", "1.", ".5", "-.5", "007", "1e5", "1E+05", "2.5e-3", "1e-400", "1e400",
    "9007199254740993", "0.1", "123456789012345678901234567890", "0." + "0" * 30 + "1",
    "4.9406564584124654e-324", "1.7976931348623157e308", "",
]  # fmt: skip


def test_edge_cases_match_python_and_signs_of_zero_survive():
    line = ",".join(EDGE_CELLS)
    parsed = fastcsv.parse([f"{line}\r\n\r\n{line}".encode()], len(EDGE_CELLS))
    assert parsed is not None and parsed.shape == (2, len(EDGE_CELLS))
    np.testing.assert_array_equal(parsed, python_floats([line, line]))
    assert math.copysign(1, parsed[0, 1]) == -1


def random_split(body: bytes, rng: random.Random, pieces: int) -> list[bytes]:
    cuts = sorted(rng.sample(range(1, len(body)), pieces - 1))
    return [body[start:end] for start, end in zip([0, *cuts], [*cuts, len(body)], strict=True)]


def test_a_body_in_chunks_parses_as_the_whole_body_wherever_it_is_cut():
    """Cuts inside numbers, between \\r and \\n, in blank lines; 1-byte chunks too."""
    line = ",".join(EDGE_CELLS)
    body = f"{line}\r\n\n{line}\n\r\n{line}".encode()
    whole = fastcsv.parse([body], len(EDGE_CELLS))
    assert whole is not None and whole.shape == (3, len(EDGE_CELLS))
    rng = random.Random(11)
    for pieces in (2, 3, 7, 40, len(body)):
        chunks = random_split(body, rng, pieces)
        np.testing.assert_array_equal(fastcsv.parse(chunks, len(EDGE_CELLS)), whole)
    with_empty_chunks = [b"", body[:5], b"", body[5:], b""]
    np.testing.assert_array_equal(fastcsv.parse(with_empty_chunks, len(EDGE_CELLS)), whole)
    assert fastcsv.parse([body[:50], b"x", body[50:]], len(EDGE_CELLS)) is None


@pytest.mark.parametrize(
    "body",
    [
        b" 1,2,3\n",  # spaces: the exact parser strips them
        b"1,2,nan\n",  # text, even text float() reads
        b"1,2,1_0\n",
        b'1,2,"3"\n',
        b"1,2,3e\n",
        b"1,2,-\n",
        b"1,2\n",  # too few columns
        b"1,2,3,4\n",  # too many
        b"\xef\xbb\xbf1,2,3\n",  # a byte-order mark
        b"\n\r\n",  # no record at all
        b"",
    ],
)
def test_anything_else_is_left_to_the_exact_parser(body):
    assert fastcsv.parse([body], 3) is None


def test_a_missing_library_stops_the_server_at_start_naming_the_build_command(
    tmp_path, trained_model_dir
):
    containers = tmp_path / "containers"
    shutil.copytree(
        Path(fastcsv.__file__).parents[2],
        containers,
        ignore=shutil.ignore_patterns("*.so", "__pycache__"),
    )
    shutil.copytree(trained_model_dir, tmp_path / "ml" / "model")
    completed = subprocess.run(
        [sys.executable, str(containers / "bin" / "serve")],
        # The copy's model_kit, without the library, ahead of the installed one.
        env={
            "ML_ROOT": str(tmp_path / "ml"),
            "SAGEMAKER_BIND_TO_PORT": str(free_port()),
            "PYTHONPATH": str(containers),
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 1
    assert "the server's C library" in completed.stderr
    assert "model_kit/serving/native.py` (`make setup` does)" in completed.stderr
