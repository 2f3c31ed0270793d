"""The model server's HTTP contract, against ``containers/bin/serve`` as a real process.

One server (two workers, as on a multi-core endpoint) serves the whole module;
the model is the one ``containers/bin/train`` produced on the sample data.
"""

from __future__ import annotations

import http.client
import io
import json
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
from conftest import INFERENCE_CSV
from model_kit import families
from model_kit.model_io import load_model

from local.model_server import ModelServer, start_model_server

CSV, JSON, JSONL, NPY = "text/csv", "application/json", "application/jsonlines", "application/x-npy"
LIMIT = 6 * 1024 * 1024


def read_only_ml_root(tmp_path: Path, model_dir: Path) -> Path:
    """An ML_ROOT whose model/ is read-only, as SageMaker mounts /opt/ml/model."""
    target = tmp_path / "model"
    shutil.copytree(model_dir, target)
    for path in target.iterdir():
        path.chmod(0o444)
    target.chmod(0o555)
    return tmp_path


def request(
    server: ModelServer,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    connection: http.client.HTTPConnection | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP exchange: status, headers (lower-case names), body."""
    conn = connection or http.client.HTTPConnection(server.url.removeprefix("http://"), timeout=30)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    if connection is None:
        conn.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, data


def invoke(
    server: ModelServer,
    body: bytes | str,
    content_type: str | None,
    accept: str | None = None,
    **kwargs: object,
) -> tuple[int, dict[str, str], bytes]:
    headers = {}
    if content_type is not None:
        headers["Content-Type"] = content_type
    if accept is not None:
        headers["Accept"] = accept
    data = body.encode() if isinstance(body, str) else body
    return request(server, "POST", "/invocations", data, headers, **kwargs)


def error_of(status_headers_body: tuple[int, dict[str, str], bytes]) -> tuple[int, dict]:
    status, headers, body = status_headers_body
    assert headers["content-type"] == JSON
    return status, json.loads(body)


@pytest.fixture(scope="module", params=sorted(families.MODULES))
def model_dir(request, family_model_dirs: dict[str, Path]) -> Path:
    """Every test here runs against a model of each shipped family."""
    return family_model_dirs[request.param]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, model_dir: Path):
    ml_root = read_only_ml_root(tmp_path_factory.mktemp("serving_ml_root"), model_dir)
    with start_model_server(ml_root, workers=2) as running:
        yield running


@pytest.fixture(scope="module")
def model(model_dir: Path):
    """The model as the server loads it (a LightGBM model's compiled trees), so its answers
    can be held to the server's exactly; test_compiled_predictor holds those to LightGBM's."""
    return load_model(model_dir, compiled=True)


def load_sample() -> tuple[list[str], np.ndarray, list[str]]:
    """The inference CSV: header names, feature matrix, and its rows as CSV lines."""
    header, *lines = INFERENCE_CSV.read_text().splitlines()
    return header.split(","), np.loadtxt(INFERENCE_CSV, delimiter=",", skiprows=1), lines


@pytest.fixture(scope="module")
def sample() -> tuple[list[str], np.ndarray, list[str]]:
    return load_sample()


def instances_as_objects(names: list[str], matrix: np.ndarray) -> list[dict[str, float]]:
    return [dict(zip(names, row, strict=True)) for row in matrix.tolist()]


def bodies(sample, content_type: str) -> bytes:
    _, matrix, lines = sample
    if content_type == CSV:
        return ("\n".join(lines) + "\n").encode()
    if content_type == JSON:
        return json.dumps({"instances": matrix.tolist()}).encode()
    if content_type == NPY:
        out = io.BytesIO()
        np.save(out, matrix)
        return out.getvalue()
    return ("\n".join(json.dumps(row) for row in matrix.tolist()) + "\n").encode()


def parse_answer(content_type: str, body: bytes) -> list:
    """Labels (CSV, npy) or prediction objects (JSON, JSON Lines)."""
    if content_type == NPY:
        return np.load(io.BytesIO(body), allow_pickle=False).tolist()
    text = body.decode()
    if content_type == CSV:
        return text.splitlines()
    if content_type == JSON:
        return json.loads(text)["predictions"]
    return [json.loads(line) for line in text.splitlines()]


def labels_of(content_type: str, answer: list) -> list:
    return answer if content_type in (CSV, NPY) else [p["label"] for p in answer]


def test_ping_answers_200(server):
    status, _, body = request(server, "GET", "/ping")
    assert status == 200
    assert json.loads(body) == {"status": "ok"}


@pytest.mark.parametrize("content_type", [CSV, JSON, JSONL, NPY])
def test_every_content_type_predicts_what_the_model_predicts_in_process(
    server, model, sample, content_type
):
    _, matrix, _ = sample
    expected = model.predict_proba(matrix)
    expected_labels = model.predict_labels(expected)
    status, _, body = invoke(server, bodies(sample, content_type), content_type, JSON)
    assert status == 200, body
    predictions = parse_answer(JSON, body)
    assert [p["label"] for p in predictions] == expected_labels
    got = np.array([[p["probabilities"][str(c)] for c in model.classes] for p in predictions])
    np.testing.assert_array_equal(got, expected)


def test_a_bare_json_list_predicts_like_instances(server, model, sample):
    """The SageMaker SDK's JSONSerializer sends a list of lists (or an array) as it is."""
    _, matrix, _ = sample
    status, _, answer = invoke(server, json.dumps(matrix.tolist()), JSON, CSV)
    assert status == 200, answer
    assert answer.decode().splitlines() == model.predict_labels(model.predict_proba(matrix))


def test_json_objects_keyed_by_feature_name_predict_like_lists(server, model, sample):
    names, matrix, _ = sample
    body = json.dumps({"instances": instances_as_objects(names, matrix)})
    status, _, answer = invoke(server, body, JSON, CSV)
    assert status == 200, answer
    assert answer.decode().splitlines() == model.predict_labels(model.predict_proba(matrix))


@pytest.mark.parametrize("content_type", [CSV, JSON, JSONL, NPY])
@pytest.mark.parametrize("accept", [CSV, JSON, JSONL, NPY, None, "*/*"])
def test_every_content_type_and_accept_pair(server, model, sample, content_type, accept):
    _, matrix, _ = sample
    expected_labels = model.predict_labels(model.predict_proba(matrix))
    status, headers, body = invoke(server, bodies(sample, content_type), content_type, accept)
    assert status == 200, body
    answered_in = content_type if accept in (None, "*/*") else accept
    assert headers["content-type"] == answered_in
    assert labels_of(answered_in, parse_answer(answered_in, body)) == expected_labels


def test_accept_list_with_q_values_picks_the_best_supported(server, sample):
    body = bodies(sample, CSV)
    accept = "application/xml;q=1.0, application/jsonlines;q=0.5, text/csv;q=0.9"
    status, headers, _ = invoke(server, body, CSV, accept)
    assert (status, headers["content-type"]) == (200, CSV)
    status, headers, _ = invoke(server, body, CSV, "text/html, application/json;q=0.1")
    assert (status, headers["content-type"]) == (200, JSON)


def test_content_type_parameters_and_jsonl_alias_are_accepted(server, sample):
    status, headers, _ = invoke(
        server, bodies(sample, CSV), "text/csv; charset=utf-8; label_size=0", None
    )
    assert (status, headers["content-type"]) == (200, "text/csv")
    status, headers, _ = invoke(server, bodies(sample, JSONL), "application/jsonl", None)
    assert (status, headers["content-type"]) == (200, "application/jsonl")


def test_csv_tolerates_header_crlf_trailing_newline_and_empty_cells(server, model, sample):
    names, matrix, lines = sample
    first = lines[0].split(",")
    first[3] = ""
    with_gap = [",".join(first), *lines[1:3]]
    body = ",".join(names) + "\r\n" + "\r\n".join(with_gap) + "\r\n\r\n"
    status, _, answer = invoke(server, body, CSV, JSON)
    assert status == 200, answer
    rows = matrix[:3].copy()
    rows[0, 3] = np.nan
    expected = model.predict_proba(rows)
    got = [p["probabilities"][str(model.classes[1])] for p in json.loads(answer)["predictions"]]
    np.testing.assert_array_equal(got, expected[:, 1])


def test_json_null_and_left_out_features_are_missing_values(server, model, sample):
    names, matrix, _ = sample
    as_list = [None if i == 0 else v for i, v in enumerate(matrix[0].tolist())]
    as_object = {name: value for name, value in zip(names[1:], matrix[0].tolist()[1:], strict=True)}
    body = json.dumps({"instances": [as_list, as_object]})
    status, _, answer = invoke(server, body, JSON, JSON)
    assert status == 200, answer
    row = matrix[:1].copy()
    row[0, 0] = np.nan
    expected = model.predict_proba(row)[0].tolist()
    for prediction in json.loads(answer)["predictions"]:
        assert [prediction["probabilities"][str(c)] for c in model.classes] == expected


@pytest.mark.parametrize(
    ("content_type", "body", "record", "column", "words"),
    [
        (CSV, "1,2,3\n", 1, None, ["record 1 (line 1)", "3 columns", "expects 30"]),
        (CSV, "ROW\nBAD_ROW\n", 2, "mean_texture", ["record 2 (line 2)", "'abc'", "not a number"]),
        (JSON, "{not json", None, None, ["not valid JSON", "line 1 column 2"]),
        (JSON, '{"instances": [OBJ, {"colour": 1}]}', 2, "colour", ["unknown feature 'colour'"]),
        (JSON, '{"instances": [[ROW], [trueTAIL]]}', 2, "mean_radius", ["True is not a number"]),
        (JSON, '{"instances": [[ROW], ["1.5"TAIL]]}', 2, "mean_radius", ["'1.5' is not a number"]),
        (JSON, '{"instances": [[ROW], 7]}', 2, None, ["record 2 is 7", "expected a list"]),
        (JSON, '{"rows": []}', None, None, ['{"instances": [...]}']),
        (JSON, '{"instances": []}', None, None, ["no records"]),
        (JSONL, "[ROW]\n[ROW\n", 2, None, ["record 2 (line 2)", "not valid JSON"]),
        (JSONL, '[ROW]\n["x"TAIL]\n', 2, "mean_radius", ["'x' is not a number"]),
        (CSV, "", None, None, ["empty"]),
        (CSV, "   \n\n", None, None, ["empty"]),
    ],
)
def test_malformed_input_is_a_400_naming_record_and_column(
    server, sample, content_type, body, record, column, words
):
    names, _, lines = sample
    row = lines[0]
    cells = row.split(",")
    text = (
        body.replace("BAD_ROW", ",".join([cells[0], "abc", *cells[2:]]))
        .replace("ROW", row)
        .replace("OBJ", json.dumps(dict(zip(names, map(float, cells), strict=True))))
        .replace("TAIL", "," + ",".join(cells[1:]))
    )
    status, error = error_of(invoke(server, text, content_type))
    assert status == 400
    assert error.get("record") == record
    assert error.get("column") == column
    for word in words:
        assert word in error["error"]


def test_unsupported_content_type_is_415_listing_the_allowed_types(server):
    status, error = error_of(invoke(server, "<x/>", "application/xml"))
    assert status == 415
    assert "application/xml" in error["error"]
    assert error["allowed"] == [CSV, JSON, JSONL, "application/jsonl", NPY]
    status, error = error_of(invoke(server, "1", None))
    assert status == 415
    assert "Content-Type is missing" in error["error"]
    status, error = error_of(invoke(server, "1", "text/csv; charset=latin-1"))
    assert status == 415
    assert "latin-1" in error["error"]


def test_unsupported_accept_is_406_listing_the_allowed_types(server, sample):
    status, error = error_of(invoke(server, bodies(sample, CSV), CSV, "application/xml"))
    assert status == 406
    assert "application/xml" in error["error"]
    assert CSV in error["allowed"]
    status, error = error_of(invoke(server, bodies(sample, CSV), CSV, "text/csv;q=0"))
    assert status == 406


def test_unknown_path_is_404_and_wrong_method_is_405(server):
    status, error = error_of(request(server, "GET", "/predict"))
    assert status == 404
    assert "/invocations" in error["error"]
    status, headers, body = request(server, "GET", "/invocations")
    assert (status, headers["allow"]) == (405, "POST")
    assert "use POST" in json.loads(body)["error"]
    status, headers, _ = request(server, "POST", "/ping", b"")
    assert (status, headers["allow"]) == (405, "GET")


def body_of_exactly(size: int, sample) -> bytes:
    """Valid CSV of exactly ``size`` bytes: whole records, padded with blank lines."""
    _, _, lines = sample
    record_block = ("\n".join(lines) + "\n").encode()
    repeats = (size - 1024) // len(record_block)
    body = record_block * repeats
    return body + b"\n" * (size - len(body))


def test_payload_at_the_6_mb_limit_is_served(server, sample):
    at_limit = body_of_exactly(LIMIT, sample)
    status, _, answer = invoke(server, at_limit, CSV, CSV)
    assert status == 200
    records = [line for line in at_limit.split(b"\n") if line]
    assert len(answer.decode().splitlines()) == len(records)


def refused_before_the_body(server: ModelServer, declared: int) -> tuple[int, str]:
    """Announce a body of ``declared`` bytes with ``Expect: 100-continue`` and send none of it.

    A server that only rejects after reading would never answer; ours answers 413 at once.
    """
    conn = http.client.HTTPConnection(server.url.removeprefix("http://"), timeout=10)
    conn.putrequest("POST", "/invocations")
    conn.putheader("Content-Type", CSV)
    conn.putheader("Content-Length", str(declared))
    conn.putheader("Expect", "100-continue")
    conn.endheaders()
    response = conn.getresponse()
    status, error = response.status, json.loads(response.read())["error"]
    conn.close()
    return status, error


@pytest.mark.parametrize("declared", [LIMIT + 1, 50 * LIMIT])
def test_a_body_over_the_limit_is_413_by_content_length_before_it_is_sent(server, declared):
    status, error = refused_before_the_body(server, declared)
    assert status == 413
    assert f"request body is {declared} bytes; the limit is {LIMIT} bytes (6 MB)" in error


def test_a_chunked_body_one_byte_over_the_limit_is_413(server, sample):
    over = body_of_exactly(LIMIT + 1, sample)
    chunks = (over[i : i + 65536] for i in range(0, len(over), 65536))
    conn = http.client.HTTPConnection(server.url.removeprefix("http://"), timeout=30)
    conn.request(
        "POST", "/invocations", body=chunks, headers={"Content-Type": CSV}, encode_chunked=True
    )
    response = conn.getresponse()
    status, error = response.status, json.loads(response.read())["error"]
    conn.close()
    assert status == 413
    assert f"more than {LIMIT} bytes" in error


def test_a_bad_request_does_not_affect_the_next_one_on_the_same_connection(server, sample):
    conn = http.client.HTTPConnection(server.url.removeprefix("http://"), timeout=30)
    good = bodies(sample, CSV)
    status, _, first = invoke(server, good, CSV, CSV, connection=conn)
    assert status == 200
    for bad in ("1,2,3\n", "x" * 100):
        assert invoke(server, bad, CSV, CSV, connection=conn)[0] == 400
    assert invoke(server, b"{", JSON, JSON, connection=conn)[0] == 400
    status, _, again = invoke(server, good, CSV, CSV, connection=conn)
    assert (status, again) == (200, first)
    conn.close()


def test_execution_parameters_describe_batch_transform_defaults(server):
    status, _, body = request(server, "GET", "/execution-parameters")
    assert status == 200
    assert json.loads(body) == {
        "MaxConcurrentTransforms": 2,
        "BatchStrategy": "MULTI_RECORD",
        "MaxPayloadInMB": 6,
    }


def test_a_body_cut_short_of_its_content_length_is_never_predicted(server, sample):
    """The client sends 48 of 1000 announced bytes and half-closes its side.

    Nothing can be answered once the peer has stopped sending (gunicorn closes such
    a connection), so the server logs why and drops it; it predicts nothing.
    """
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as client:
        head = "POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
        client.sendall(f"{head}Content-Length: 1000\r\n\r\n".encode() + b"1,2,3\n" * 8)
        client.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := client.recv(65536):  # until the server closes the connection
            answer += chunk
    assert answer == b""
    assert invoke(server, bodies(sample, CSV), CSV, CSV)[0] == 200
    assert "request body ended after 48 of its 1000 bytes" in server.log()
