"""An object's outcome is a frozen value: each step returns a new one."""

from __future__ import annotations

import dataclasses

import pytest
from errors import PermanentError
from object_processor import Outcome
from request_batches import Batch


def test_scoring_a_batch_returns_a_new_outcome_and_leaves_the_old_one() -> None:
    batch = Batch(index=1, first_record=1, lines=(2, 4), body=b"1,2\n3,4")
    started = Outcome("predictions", bytes=4)

    scored = started.scored(batch)

    assert (scored.records, scored.requests, scored.bytes) == (2, 1, 4)
    assert (started.records, started.requests) == (0, 0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        started.records = 1  # type: ignore[misc]


def test_a_reported_outcome_keeps_the_progress_made_before_the_error() -> None:
    progress = Outcome("predictions", records=7, requests=2, bytes=100, output_bytes=30)

    reported = progress.reported(PermanentError("bad", record=8), "k.csv.error.json")

    assert reported == Outcome(
        "error_report",
        reason="bad (record 8)",
        records=7,
        requests=2,
        bytes=100,
        output_bytes=30,
        output_key="k.csv.error.json",
        extra={"record": 8, "endpoint_status": None},
    )
