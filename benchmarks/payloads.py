"""Request bodies for the benchmark, built by repeating the bundled inference split.

The 5 MB body stays under 5 MiB: the classic nginx config refuses larger
bodies (``client_max_body_size 5m``), and the comparison needs both servers to
answer the same requests.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

INFERENCE_CSV = Path(__file__).resolve().parent.parent / "data" / "inference" / "inference.csv"
CLASSIC_BODY_LIMIT = 5 * 1024 * 1024
FIVE_MB_TARGET = 4_850_000


def sample_records() -> list[bytes]:
    """The inference split's records (header dropped), each ending in a newline."""
    lines = INFERENCE_CSV.read_bytes().splitlines()[1:]
    return [line + b"\n" for line in lines if line.strip()]


@dataclass(frozen=True)
class Payload:
    """One request body and how many records it holds."""

    name: str
    body: bytes
    records: int


def repeated(name: str, records: int) -> Payload:
    """The first ``records`` records of the split repeated end to end."""
    sample = sample_records()
    body = b"".join(sample[i % len(sample)] for i in range(records))
    return Payload(name, body, records)


def five_megabytes() -> Payload:
    """Whole copies of the split up to ~4.85 MB (about 23,000 records)."""
    sample = sample_records()
    block = b"".join(sample)
    copies = FIVE_MB_TARGET // len(block)
    payload = Payload("5 MB", block * copies, len(sample) * copies)
    if len(payload.body) > CLASSIC_BODY_LIMIT:
        raise ValueError(f"the 5 MB body is {len(payload.body)} bytes, over nginx's 5 MiB limit")
    return payload


def standard_payloads() -> dict[str, Payload]:
    """The issue's request sizes: 1 record, 500 records, 5 MB."""
    return {
        "1 record": repeated("1 record", 1),
        "500 records": repeated("500 records", 500),
        "5 MB": five_megabytes(),
    }
