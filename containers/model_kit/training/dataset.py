"""Reading a channel's CSV files under the data contract, with errors that point at the cell.

Contract: a header row; the label column is named by the ``target``
hyperparameter; every other column is a numeric feature; an empty cell is a
missing value (NaN, which LightGBM handles). A channel may hold several CSV
files, in nested folders: they are read in path order (so a run is
reproducible) and must share one header. Other files, and hidden ones, are
skipped with a log line, because S3 prefixes often carry markers such as
``_SUCCESS``, manifests or editor checkpoints next to the data.
"""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model_kit.training.errors import TrainingError, describe_items

log = logging.getLogger(__name__)

# Rows parsed at a time: big enough for numpy to do the work, small enough that
# the text of only one block is held in memory beside the parsed floats.
BLOCK_ROWS = 10_000


@dataclass(frozen=True)
class FilePart:
    """Which rows of a table came from which file, to name the file and line in errors."""

    name: str
    first_row: int
    line_numbers: np.ndarray


@dataclass(frozen=True)
class Table:
    """One channel's rows: float features (NaN = missing) and the raw label text."""

    channel: str
    columns: list[str]
    feature_names: list[str]
    features: np.ndarray
    labels: np.ndarray
    parts: list[FilePart]

    @property
    def n_rows(self) -> int:
        return len(self.labels)

    def locate(self, row: int) -> str:
        """``training/a.csv row 17 (line 18)`` for a row index of the whole table."""
        part = next(p for p in reversed(self.parts) if p.first_row <= row)
        return where(part.name, row - part.first_row, int(part.line_numbers[row - part.first_row]))

    def reorder_features(self, feature_names: list[str]) -> Table:
        """The same table with its feature columns in the order of ``feature_names``."""
        order = [self.feature_names.index(name) for name in feature_names]
        return Table(
            channel=self.channel,
            columns=self.columns,
            feature_names=list(feature_names),
            features=self.features[:, order],
            labels=self.labels,
            parts=self.parts,
        )


def where(name: str, row_index: int, line: int) -> str:
    """A data row as a user finds it: its 1-based row number and its line in the file."""
    return f"{name} row {row_index + 1} (line {line})"


def _hidden(path: Path, channel_dir: Path) -> bool:
    """Dot-files and dot-folders (``.ipynb_checkpoints/``) are tool litter, not data."""
    return any(part.startswith(".") for part in path.relative_to(channel_dir).parts)


def list_csv_files(channel_dir: Path, channel: str) -> list[Path]:
    """Every visible ``*.csv`` below the channel folder, sorted by path; others are logged."""
    if not channel_dir.is_dir():
        raise TrainingError(
            f"channel {channel!r} not found: {channel_dir} does not exist or is not a folder"
        )
    files = sorted(p for p in channel_dir.rglob("*") if p.is_file())
    csv_files = [p for p in files if p.suffix.lower() == ".csv" and not _hidden(p, channel_dir)]
    for skipped in sorted(set(files) - set(csv_files)):
        log.info(
            "%s: skipping %s (not a .csv file, or hidden)",
            channel,
            skipped.relative_to(channel_dir),
        )
    if not csv_files:
        found = [str(p.relative_to(channel_dir)) for p in files]
        raise TrainingError(
            f"channel {channel!r} holds no .csv file in {channel_dir}; "
            f"found: {describe_items(found) if found else 'no files at all'}"
        )
    return csv_files


def read_channel(channel_dir: Path, channel: str, target: str) -> Table:
    """All CSV files of one channel as one table; their headers must agree."""
    tables = [
        _read_csv_file(path, f"{channel}/{path.relative_to(channel_dir)}", channel, target)
        for path in list_csv_files(channel_dir, channel)
    ]
    first = tables[0]
    for other in tables[1:]:
        if other.columns != first.columns:
            raise TrainingError(
                f"the header of {other.parts[0].name} differs from {first.parts[0].name}: "
                f"{_header_difference(first.columns, other.columns)}; all files of a channel "
                "must have the same columns in the same order"
            )
    parts, offset = [], 0
    for table in tables:
        parts.append(FilePart(table.parts[0].name, offset, table.parts[0].line_numbers))
        offset += table.n_rows
    return Table(
        channel=channel,
        columns=first.columns,
        feature_names=first.feature_names,
        features=np.concatenate([t.features for t in tables]),
        labels=np.concatenate([t.labels for t in tables]),
        parts=parts,
    )


def _header_difference(expected: list[str], actual: list[str]) -> str:
    missing = [c for c in expected if c not in actual]
    extra = [c for c in actual if c not in expected]
    if missing or extra:
        return (
            f"missing columns: {describe_items(missing)}; unexpected columns: "
            f"{describe_items(extra)}"
        )
    return f"same columns in another order: {describe_items(actual)}"


def _check_header(header: list[str], name: str, target: str) -> None:
    if any(not column for column in header):
        position = header.index("") + 1
        raise TrainingError(
            f"the header of {name} has an empty column name at position {position}; "
            "every column needs a name"
        )
    duplicates = sorted({c for c in header if header.count(c) > 1})
    if duplicates:
        raise TrainingError(
            f"the header of {name} repeats the column(s) {describe_items(duplicates)}; "
            "column names must be unique"
        )
    if target not in header:
        raise TrainingError(
            f"target column {target!r} not found in {name}; columns are: "
            f"{describe_items(header)} (set the 'target' hyperparameter to the label column)"
        )
    if len(header) < 2:
        raise TrainingError(f"{name} has only the target column {target!r}; no feature columns")


def _read_csv_file(path: Path, name: str, channel: str, target: str) -> Table:
    """One file, parsed in blocks of rows so memory stays near the size of the floats."""
    feature_blocks: list[np.ndarray] = []
    label_blocks: list[np.ndarray] = []
    line_numbers: list[int] = []
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [column.strip() for column in next(reader, [])]
            if not header:
                raise TrainingError(f"{name} is empty; expected a header row, then data rows")
            _check_header(header, name, target)
            block: list[list[str]] = []
            for row in reader:
                if not row:
                    continue
                if len(row) != len(header):
                    raise TrainingError(
                        f"{name} line {reader.line_num} has {len(row)} fields but the header "
                        f"has {len(header)} ({describe_items(header)})"
                    )
                block.append(row)
                line_numbers.append(reader.line_num)
                if len(block) == BLOCK_ROWS:
                    _parse_block(
                        block, header, target, name, line_numbers, feature_blocks, label_blocks
                    )
                    block = []
            if block:
                _parse_block(
                    block, header, target, name, line_numbers, feature_blocks, label_blocks
                )
    except UnicodeDecodeError as exc:
        raise TrainingError(f"{name} is not UTF-8 text ({exc}); expected a CSV file") from exc
    except csv.Error as exc:
        raise TrainingError(f"{name} is not valid CSV: {exc}") from exc
    if not line_numbers:
        raise TrainingError(f"{name} has a header but no data rows")
    return Table(
        channel=channel,
        columns=header,
        feature_names=[c for c in header if c != target],
        features=np.concatenate(feature_blocks),
        labels=np.concatenate(label_blocks),
        parts=[FilePart(name, 0, np.asarray(line_numbers))],
    )


def _parse_block(
    block: list[list[str]],
    header: list[str],
    target: str,
    name: str,
    line_numbers: list[int],
    feature_blocks: list[np.ndarray],
    label_blocks: list[np.ndarray],
) -> None:
    """Parse the latest rows of a file (the last ``len(block)`` of ``line_numbers``)."""
    first_row = len(line_numbers) - len(block)
    cells = np.array(block, dtype=object)
    target_index = header.index(target)
    labels = np.array([label.strip() for label in cells[:, target_index]], dtype=str)
    empty = np.flatnonzero(labels == "")
    if empty.size:
        row = first_row + int(empty[0])
        raise TrainingError(
            f"{where(name, row, line_numbers[row])}: the target column {target!r} is empty; "
            "every row needs a label"
        )
    feature_names = [c for c in header if c != target]
    features = np.delete(cells, target_index, axis=1)
    feature_blocks.append(_parse_features(features, feature_names, name, line_numbers, first_row))
    label_blocks.append(labels)


def _parse_features(
    cells: np.ndarray,
    feature_names: list[str],
    name: str,
    line_numbers: list[int],
    first_row: int,
) -> np.ndarray:
    """Numbers from text cells; empty cells and ``NaN`` are missing values.

    The bulk conversion (numpy calls ``float`` per cell, in C) handles clean
    data; only when it fails does a cell-by-cell pass run, to accept
    whitespace-only cells as missing and to name the first bad cell. Infinities
    are refused: they are nearly always an upstream division by zero, not data.
    """
    missing = cells == ""
    try:
        values = np.where(missing, "nan", cells).astype(np.float64)
    except ValueError:
        values = None
    if values is not None and not np.isinf(values).any():
        return values
    values = np.empty(cells.shape, dtype=np.float64)
    for (row_index, column_index), cell in np.ndenumerate(cells):
        text = cell.strip()
        try:
            number = float(text) if text else math.nan
        except ValueError:
            number = None
        if number is None or math.isinf(number):
            row = first_row + row_index
            raise TrainingError(
                f"column {feature_names[column_index]!r}, {where(name, row, line_numbers[row])}: "
                f"{cell!r} is not a finite number; features must be numbers "
                "(an empty cell means missing)"
            )
        values[row_index, column_index] = number
    return values
