"""The media types the server reads and writes: one row each, and the only list of them.

A row says how a request body in that type becomes the feature matrix, how predictions are
written in it, and what such an answer carries. Content negotiation, the dispatch of every
request and the "allowed: ..." of every 415 and 406 read this table, so a new format is one
row (plus its tests).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from model_kit.serving.decoders import Body, parse_csv, parse_json, parse_jsonlines, parse_npy
from model_kit.serving.encoders import PredictionEncoders

CSV = "text/csv"
JSON = "application/json"
JSONLINES = "application/jsonlines"
NPY = "application/x-npy"


@dataclass(frozen=True)
class Format:
    media_type: str
    # Other spellings clients send for the same format.
    aliases: tuple[str, ...]
    decode: Callable[[Body, Sequence[str]], np.ndarray]
    encode: Callable[[PredictionEncoders, np.ndarray, np.ndarray], bytes]
    # What an answer in this type holds, for the README and the error messages.
    answer: str
    # Text types must be UTF-8 when a charset is given.
    text: bool = True


# In order of preference: `Accept: application/*` answers in the first application type.
FORMATS = (
    Format(CSV, (), parse_csv, PredictionEncoders.csv, "labels, one per line"),
    Format(
        JSON,
        (),
        parse_json,
        PredictionEncoders.json,
        'labels and probabilities: {"predictions": [{"label": ..., "probabilities": {...}}]}',
    ),
    Format(
        JSONLINES,
        ("application/jsonl",),
        parse_jsonlines,
        PredictionEncoders.jsonlines,
        'labels and probabilities: one {"label": ..., "probabilities": {...}} per line',
    ),
    Format(
        NPY,
        (),
        parse_npy,
        PredictionEncoders.npy,
        "labels, as one NumPy array (np.save format)",
        text=False,
    ),
)
BY_MEDIA_TYPE = {name: fmt for fmt in FORMATS for name in (fmt.media_type, *fmt.aliases)}
ALLOWED = list(BY_MEDIA_TYPE)
