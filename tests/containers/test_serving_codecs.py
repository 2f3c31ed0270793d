"""Parsing, encoding, negotiation and settings of the model server, as plain functions.

The HTTP tests cover each behaviour once through the real server; these cover
the edge cases of each piece quickly and show where fast and exact paths agree.
"""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
from conftest import INFERENCE_CSV
from model_kit.serving.config import MIB, ConfigError, ServerConfig, available_cpus
from model_kit.serving.decoders import parse_csv, parse_json, parse_jsonlines, parse_npy
from model_kit.serving.encoders import PredictionEncoders
from model_kit.serving.errors import RequestError
from model_kit.serving.formats import CSV, JSON, JSONLINES, NPY
from model_kit.serving.media import request_type, response_type

NAMES = ("a", "b", "c")


def refused(parse, body: str | bytes, names=NAMES) -> RequestError:
    with pytest.raises(RequestError) as caught:
        parse(body.encode() if isinstance(body, str) else body, names)
    return caught.value


@pytest.fixture(scope="module")
def sample() -> tuple[tuple[str, ...], str, np.ndarray]:
    header, *lines = INFERENCE_CSV.read_text().splitlines()
    text = "\n".join(lines * 20) + "\n"
    return tuple(header.split(",")), text, np.loadtxt(text.splitlines(), delimiter=",")


def test_csv_fast_path_and_exact_path_agree_on_a_large_body(sample):
    names, text, matrix = sample
    np.testing.assert_array_equal(parse_csv(text.encode(), names), matrix)
    with_header_and_crlf = ",".join(names) + "\r\n" + text.replace("\n", "\r\n")
    np.testing.assert_array_equal(parse_csv(with_header_and_crlf.encode(), names), matrix)


def test_csv_in_chunks_with_a_header_split_across_them(sample):
    """The server passes the body in the chunks it arrived in; a header may span them."""
    names, text, matrix = sample
    body = (",".join(names) + "\n" + text).encode()
    for cut in (3, len(",".join(names)), len(",".join(names)) + 1, 5000):
        np.testing.assert_array_equal(parse_csv([body[:cut], body[cut:]], names), matrix)
    error = refused(parse_csv, [b"a,b", b",c\n1,2,x\n"])
    assert (error.record, error.column) == (1, "c")


def test_csv_empty_cells_in_a_large_body_are_nan(sample):
    names, text, matrix = sample
    gaps = "\n".join("," + line.split(",", 1)[1] for line in text.splitlines())
    parsed = parse_csv(gaps.encode(), names)
    assert np.isnan(parsed[:, 0]).all()
    np.testing.assert_array_equal(parsed[:, 1:], matrix[:, 1:])


def test_csv_bad_cell_deep_in_a_large_body_is_located_exactly(sample):
    names, text, _ = sample
    lines = text.splitlines()
    cells = lines[1500].split(",")
    cells[7] = "1.2.3"
    lines[1500] = ",".join(cells)
    error = refused(parse_csv, ",".join(names) + "\n" + "\n".join(lines), names)
    assert (error.status, error.record, error.column) == (400, 1501, names[7])
    assert "record 1501 (line 1502)" in error.message
    assert "'1.2.3' is not a number" in error.message


def test_a_huge_bad_cell_is_shortened_in_the_error():
    error = refused(parse_csv, "1,2," + "x" * 100_000)
    assert error.message.startswith("record 1 (line 1), column 'c': 'xxxx")
    assert "... (100002 characters) is not a number" in error.message
    assert len(error.message) < 250


def test_csv_small_body_details():
    assert parse_csv(b"\xef\xbb\xbfa,b,c\n1, 2 ,nan\n\n4,,6", NAMES).tolist()[1][:1] == [4.0]
    parsed = parse_csv(b"1, ,3\n", NAMES)
    assert math.isnan(parsed[0, 1])
    error = refused(parse_csv, "1,2,3\n\n\n1,2\n")
    assert error.record == 2
    assert error.message.startswith("record 2 (line 4) has 2 columns; the model expects 3")
    assert refused(parse_csv, "a,b,c\n").message.startswith("request body holds no records")
    assert refused(parse_csv, b"1,2,\xff\n").message == (
        "request body is not UTF-8 text: byte 4 is 0xff"
    )


def test_json_fast_and_exact_paths_agree(sample):
    names, _, matrix = sample
    rows = matrix.tolist()
    rows[3][2] = None
    lists = json.dumps({"instances": rows}).encode()
    objects = json.dumps({"instances": [dict(zip(names, r, strict=True)) for r in rows]}).encode()
    from_lists, from_objects = parse_json(lists, names), parse_json(objects, names)
    np.testing.assert_array_equal(from_lists, from_objects)
    assert math.isnan(from_lists[3, 2])
    np.testing.assert_array_equal(np.delete(from_lists, 3, axis=0), np.delete(matrix, 3, axis=0))


@pytest.mark.parametrize(
    ("body", "record", "column", "words"),
    [
        ('{"instances": [[1, 2, false]]}', 1, "c", "False is not a number"),
        ('{"instances": [[1, 2, 3], {"b": "7"}]}', 2, "b", "'7' is not a number"),
        ('{"instances": [[1, 2, 1e999999999999]]}', None, None, None),
        ('{"instances": [[1, 2, 3], [1, [2], 3]]}', 2, "b", "[2] is not a number"),
        ('{"instances": [{"a": 1, "d": 2}]}', 1, "d", "unknown feature 'd'; allowed: a, b, c"),
        ('{"instances": [[1, 2]]}', 1, None, "record 1 has 2 values; the model expects 3"),
        ('{"instances": {"a": 1}}', None, None, '"instances" must be a JSON list'),
        ('{"instances": [], "x": 1}', None, None, "unknown top-level key 'x'"),
        ('"1,2,3"', None, None, 'must be a JSON object {"instances": [...]} or a JSON list'),
        ("[[1, 2, 3], 4]", 2, None, "record 2 is 4; expected a list of 3 values"),
        ('[[1, 2, "x"]]', 1, "c", "'x' is not a number"),
        ("[]", None, None, "holds no records"),
    ],
)
def test_json_refusals_name_what_and_where(body, record, column, words):
    if words is None:  # 1e999999999999 reads as infinity: a number, accepted
        assert math.isinf(parse_json(body.encode(), NAMES)[0, 2])
        return
    error = refused(parse_json, body)
    assert (error.status, error.record, error.column) == (400, record, column)
    assert words in error.message


def test_a_bare_json_list_is_the_instances_and_a_flat_one_is_one_record():
    """What the SageMaker SDK's JSONSerializer sends for a list of lists or a NumPy array."""
    np.testing.assert_array_equal(
        parse_json(b"[[1, 2, 3], [4, null, 6]]", NAMES),
        parse_json(b'{"instances": [[1, 2, 3], [4, null, 6]]}', NAMES),
    )
    np.testing.assert_array_equal(parse_json(b"[1, 2.5, null]", NAMES), [[1, 2.5, math.nan]])
    assert parse_json(b'[{"a": 1}, {"c": 3}]', NAMES).shape == (2, 3)


def test_npy_arrays_two_and_one_dimensional_of_any_numeric_dtype():
    for dtype in (np.float64, np.float32, np.int64, np.uint8, ">f8"):
        matrix = np.arange(6, dtype=dtype).reshape(2, 3)
        np.testing.assert_array_equal(parse_npy(npy(matrix), NAMES), matrix.astype(np.float64))
    np.testing.assert_array_equal(parse_npy(npy(np.array([1.0, np.nan, 3.0])), NAMES)[0, 2], 3.0)


@pytest.mark.parametrize(
    ("array", "words"),
    [
        (np.array([["1", "2", "3"]]), "dtype is <U1; allowed: integer or floating-point"),
        (np.array([[True, False, True]]), "dtype is bool"),
        (np.array([[1 + 2j, 0, 0]]), "dtype is complex128"),
        (np.zeros((1, 1, 3)), "the array has 3 dimensions (1, 1, 3)"),
        (np.zeros((2, 4)), "record 1 has 4 values; the model expects 3"),
        (np.zeros((0, 3)), "holds no records"),
    ],
)
def test_npy_refusals_say_what_is_wrong(array, words):
    error = refused(parse_npy, npy(array))
    assert error.status == 400
    assert words in error.message


def test_npy_never_unpickles_and_names_a_body_that_is_no_array():
    pickled = io.BytesIO()
    np.save(pickled, np.array([[{"a": 1}, 2, 3]], dtype=object), allow_pickle=True)
    assert "allow_pickle=False" in refused(parse_npy, pickled.getvalue()).message
    assert "not one NumPy array in .npy format" in refused(parse_npy, b"1,2,3\n").message
    assert "not one NumPy array" in refused(parse_npy, npy(np.zeros((2, 3)))[:-5]).message


def npy(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array)
    return out.getvalue()


def test_json_integers_too_large_for_a_float_are_refused():
    error = refused(parse_json, '{"instances": [[1, 2, ' + "9" * 400 + "]]}")
    assert (error.record, error.column) == (1, "c")
    error = refused(parse_json, '{"instances": [[1, 2, ' + "9" * 5000 + "]]}")
    assert error.message.startswith("request body is not usable JSON: Exceeds the limit")
    error = refused(parse_jsonlines, "[1, 2, " + "9" * 5000 + "]")
    assert error.message.startswith("record 1 (line 1) is not valid JSON: Exceeds the limit")


def test_jsonlines_objects_lists_and_blank_lines():
    body = b'{"a": 1, "c": 3}\n\n[4, null, 6]\r\n'
    parsed = parse_jsonlines(body, NAMES)
    assert parsed.shape == (2, 3)
    assert parsed[0, 0] == 1 and math.isnan(parsed[0, 1]) and parsed[1, 2] == 6
    error = refused(parse_jsonlines, '[1, 2, 3]\n\n{"a": }\n')
    assert (error.record, error.column) == (2, None)
    assert "record 2 (line 3) is not valid JSON" in error.message
    assert refused(parse_jsonlines, '[1, 2, 3]\n["1", 2, 3]\n').column == "a"


@pytest.mark.parametrize(
    ("accept", "request_kind", "answer"),
    [
        (None, CSV, CSV),
        ("", JSONLINES, JSONLINES),
        ("*/*", "application/jsonl", "application/jsonl"),
        ("application/*", CSV, JSON),
        ("text/*", JSON, CSV),
        ("application/*", JSONLINES, JSONLINES),
        ("text/csv;q=0.2, application/json;q=0.8", CSV, JSON),
        ("application/json;q=0, */*;q=0.1", CSV, CSV),
        ("application/json;q=oops", CSV, JSON),
        ("Application/JSON; charset=utf-8", CSV, JSON),
    ],
)
def test_accept_negotiation(accept, request_kind, answer):
    assert response_type(accept, request_kind) == answer


def test_npy_is_negotiated_like_the_others_and_takes_no_charset_rule():
    assert response_type("application/x-npy", CSV) == NPY
    assert response_type(None, NPY) == NPY
    assert request_type("application/x-npy; charset=binary") == NPY


def test_content_type_parameters_and_case():
    assert request_type('Text/CSV; charset="UTF-8"; label_size=1') == CSV
    assert request_type("application/jsonl") == "application/jsonl"
    for bad in (None, "", "text/plain", "text/csv; charset=utf-16"):
        with pytest.raises(RequestError) as caught:
            request_type(bad)
        assert caught.value.status == 415


def test_encoders_keep_label_types_and_quote_csv_labels():
    probabilities = np.array([[0.25, 0.75], [0.9, 0.1]])
    winners = probabilities.argmax(axis=1)
    as_ints = PredictionEncoders([0, 1])
    assert json.loads(as_ints.json(winners, probabilities)) == {
        "predictions": [
            {"label": 1, "probabilities": {"0": 0.25, "1": 0.75}},
            {"label": 0, "probabilities": {"0": 0.9, "1": 0.1}},
        ]
    }
    odd = PredictionEncoders(['a, "b"', "50%"])
    assert odd.csv(winners, probabilities) == b'50%\n"a, ""b"""\n'
    lines = odd.jsonlines(winners, probabilities).decode().splitlines()
    assert json.loads(lines[0]) == {"label": "50%", "probabilities": {'a, "b"': 0.25, "50%": 0.75}}


def test_npy_answers_hold_the_labels_in_their_own_dtype():
    probabilities = np.array([[0.25, 0.75], [0.9, 0.1]])
    winners = probabilities.argmax(axis=1)
    for classes, expected in (([0, 1], [1, 0]), (["benign", "malignant"], ["malignant", "benign"])):
        answer = np.load(io.BytesIO(PredictionEncoders(classes).npy(winners, probabilities)))
        assert answer.tolist() == expected
        assert answer.dtype.kind in "iU"


def test_encoded_probabilities_read_back_to_the_same_floats():
    rng = np.random.default_rng(7)
    raw = rng.random(1000)
    probabilities = np.column_stack((1 - raw, raw))
    encoded = PredictionEncoders(["no", "yes"]).json(probabilities.argmax(axis=1), probabilities)
    decoded = [
        [p["probabilities"]["no"], p["probabilities"]["yes"]]
        for p in json.loads(encoded)["predictions"]
    ]
    np.testing.assert_array_equal(decoded, probabilities)


def test_config_defaults_follow_the_sagemaker_contract():
    config = ServerConfig.from_env({})
    assert (config.port, config.timeout_s, config.batch) == (8080, 60, False)
    assert config.workers == config.max_concurrent_transforms == available_cpus()
    assert config.max_payload_bytes == 6 * MIB
    # An asynchronous endpoint's requests may be larger: its serving stack sets the limit.
    assert ServerConfig.from_env({"SAGEMAKER_MAX_PAYLOAD_IN_MB": "50"}).max_payload_mb == 50


def test_config_batch_and_thread_choices():
    config = ServerConfig.from_env(
        {
            "SAGEMAKER_BATCH": "TRUE",
            "SAGEMAKER_MAX_PAYLOAD_IN_MB": "100",
            "SAGEMAKER_BATCH_STRATEGY": "single_record",
            "SAGEMAKER_MODEL_SERVER_WORKERS": "3",
        }
    )
    assert (config.max_payload_bytes, config.batch_strategy) == (100 * MIB, "SINGLE_RECORD")
    assert (config.workers, config.predict_threads) == (3, 1)
    single = ServerConfig.from_env({"SAGEMAKER_MODEL_SERVER_WORKERS": "1"})
    assert single.predict_threads == available_cpus()
    with pytest.raises(ConfigError, match=r"SAGEMAKER_MAX_PAYLOAD_IN_MB='101' is not allowed"):
        ServerConfig.from_env({"SAGEMAKER_BATCH": "true", "SAGEMAKER_MAX_PAYLOAD_IN_MB": "101"})


def test_an_unbounded_batch_payload_is_refused_with_what_to_set_instead():
    """MaxPayloadInMB=0 means "whole inputs of any size, chunked"; this server needs a bound."""
    with pytest.raises(ConfigError) as caught:
        ServerConfig.from_env({"SAGEMAKER_BATCH": "true", "SAGEMAKER_MAX_PAYLOAD_IN_MB": "0"})
    assert "set MaxPayloadInMB from 1 to 100" in str(caught.value)
    assert "SplitType Line" in str(caught.value)
