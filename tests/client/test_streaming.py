"""The streaming readers on their own: chunk boundaries anywhere, bounded buffers, exact errors."""

from __future__ import annotations

import json

import pytest
from errors import PermanentError
from input_formats import (
    CsvFormat,
    Header,
    JsonFormat,
    JsonLinesFormat,
    Record,
    format_for_key,
)
from request_batches import batches


def _chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


DOCUMENT = (
    b'{"meta": {"note": "a [tricky] \\"value\\", {}"}, "instances": '
    b'[[1.5, -2e-3, null], {"f\\u00e9": "caf\\u00e9", "b": 12345678901234567890}, [0]],'
    b' "after": [1, 2]}'
)


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 5, 8, 13, 64, 4096])
def test_json_instances_are_found_whatever_the_chunk_boundaries(chunk_size: int) -> None:
    records = list(JsonFormat().read(_chunks(DOCUMENT, chunk_size), 1000).records)

    assert [r.number for r in records] == [1, 2, 3]
    assert [json.loads(r.data) for r in records] == json.loads(DOCUMENT)["instances"]
    assert records[1].data == b'{"f\\u00e9": "caf\\u00e9", "b": 12345678901234567890}'


@pytest.mark.parametrize("chunk_size", [1, 7, 4096])
def test_multibyte_utf8_split_across_chunks(chunk_size: int) -> None:
    document = json.dumps([{"é€😀": 1.0}], ensure_ascii=False).encode()
    [record] = JsonFormat().read(_chunks(document, chunk_size), 1000).records
    assert json.loads(record.data) == {"é€😀": 1.0}


@pytest.mark.parametrize(
    ("document", "message", "record"),
    [
        (b'{"instances": [[1], [2] [3]]}', "expected ',' or ']' after an instance", 2),
        (b'{"instances": [[1], 7]}', "expected an instance", 2),
        (b'{"instances": [[1], [2, ]]}', "Expecting value", 2),
        (b'{"rows": [[1]]}', 'no "instances" array', None),
        (b"[[1]] trailing", "expected the end of the document", None),
        (b'"just a string"', 'expected a JSON document {"instances"', None),
        (b"[[1], [2", "Expecting ',' delimiter", 2),
        (b'[{"a": 1}, {"b": "\xff"}]', "not valid UTF-8", None),
    ],
)
def test_malformed_json_documents_name_the_problem(
    document: bytes, message: str, record: int | None
) -> None:
    for chunk_size in (1, 4, 4096):
        with pytest.raises(PermanentError) as raised:
            list(JsonFormat().read(_chunks(document, chunk_size), 1000).records)
        assert message in str(raised.value)
        assert raised.value.record == record


def test_json_instance_above_the_limit_is_named_without_reading_on() -> None:
    consumed = []

    def endless() -> object:
        yield b'{"instances": [[1], [2], ['
        while True:
            consumed.append(1)
            yield b"1," * 512

    with pytest.raises(PermanentError, match="record 3 is larger than the request limit"):
        list(JsonFormat().read(endless(), 10_000).records)
    assert len(consumed) < 20


def test_csv_header_detection_bom_crlf_and_blank_lines() -> None:
    data = b"\xef\xbb\xbfa,b\r\n1,2\r\n\r\n,3\nNA,4\n"
    fmt = CsvFormat()
    stream = fmt.read(_chunks(data, 3), 100)
    records = list(stream.records)

    assert fmt.request_prefix(stream.header) == b"a,b\n"
    assert stream.header.line == 1
    assert records == [Record(1, 2, b"1,2"), Record(2, 4, b",3"), Record(3, 5, b"NA,4")]


def test_csv_without_header_keeps_a_first_row_with_a_missing_value() -> None:
    fmt = CsvFormat()
    stream = fmt.read([b"NA,1.5\n2,3"], 100)
    records = list(stream.records)
    assert fmt.request_prefix(stream.header) == b""
    assert [r.number for r in records] == [1, 2]


def test_the_header_is_a_value_known_before_any_record_is_read() -> None:
    stream = CsvFormat().read([b"a,b\n1,2\n"], 100)

    assert stream.header == Header(line=1, data=b"a,b")
    assert list(stream.records) == [Record(1, 2, b"1,2")]


def test_one_format_instance_reads_two_objects_without_interference() -> None:
    fmt = format_for_key("first.csv")
    assert format_for_key("second.CSV") is fmt
    with_header = fmt.read([b"a,b\n1,2\n3,4\n"], 100)
    without_header = fmt.read([b"5,6\n"], 100)

    assert list(without_header.records) == [Record(1, 1, b"5,6")]
    assert list(with_header.records) == [Record(1, 2, b"1,2"), Record(2, 3, b"3,4")]
    assert (with_header.header, without_header.header) == (Header(1, b"a,b"), None)
    assert fmt.request_prefix(with_header.header) == b"a,b\n"
    assert fmt.request_prefix(without_header.header) == b""


def test_a_line_longer_than_the_limit_fails_before_it_is_buffered_whole() -> None:
    def endless() -> object:
        yield b"1,2\n3,4\n"
        while True:
            yield b"5" * 100

    with pytest.raises(PermanentError) as raised:
        list(JsonLinesFormat().read(endless(), 1000).records)
    assert (raised.value.record, raised.value.line) == (3, 3)


def test_batches_stay_under_the_limit_and_never_split_records() -> None:
    fmt = CsvFormat()
    lines = [f"{i},{'7' * (i % 13)}" for i in range(1, 400)]
    data = ("h1,h2\n" + "\n".join(lines)).encode()

    requests = list(batches(fmt, fmt.read([data], 200), 200))

    assert all(len(b.body) <= 200 for b in requests)
    assert all(b.body.startswith(b"h1,h2\n") for b in requests)
    sent = [line for b in requests for line in b.body.decode().split("\n")[1:]]
    assert sent == lines
    assert [b.first_record for b in requests][:2] == [1, 1 + requests[0].count]
    assert requests[-1].file_line(requests[-1].count) == len(lines) + 1


def test_json_batches_are_valid_instance_documents() -> None:
    fmt = JsonFormat()
    data = json.dumps({"instances": [[i, i + 0.5] for i in range(100)]}).encode()

    requests = list(batches(fmt, fmt.read([data], 64), 64))

    assert len(requests) > 1
    instances = [inst for b in requests for inst in json.loads(b.body)["instances"]]
    assert instances == [[i, i + 0.5] for i in range(100)]


@pytest.mark.parametrize(
    ("key", "content_type"),
    [
        ("a/b.csv", "text/csv"),
        ("B.CSV", "text/csv"),
        ("x.jsonl", "application/jsonlines"),
        ("x.JsonLines", "application/jsonlines"),
        ("x.json", "application/json"),
    ],
)
def test_content_type_from_extension(key: str, content_type: str) -> None:
    assert format_for_key(key).content_type == content_type


@pytest.mark.parametrize("key", ["data.csv.gz", "noext", "dir.csv/file", "x.parquet"])
def test_other_extensions_are_refused(key: str) -> None:
    with pytest.raises(PermanentError, match="unsupported file extension"):
        format_for_key(key)
