"""The compiled predictor: training compiles the model, the server predicts with it when it
matches the model and this machine, and its answers are LightGBM's.

Models come from ``containers/bin/train`` run as a process (the bundled sample data, and a
generated multiclass data set with missing values and integer-coded columns); the server is
``containers/bin/serve`` on a loopback port.
"""

from __future__ import annotations

import gc
import hashlib
import http.client
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    INFERENCE_CSV,
    TRAINING_CSV,
    VALIDATION_CSV,
    csv_text,
    make_ml_root,
    run_train,
)
from model_kit.families import compiled
from model_kit.model_io import Model, load_model
from model_kit.serving import native
from model_kit.serving.config import COMPILED_PREDICTOR, ConfigError, ServerConfig

from local.model_server import ModelServer, start_model_server

CLASSES = ("alpha", "beta", "gamma", "delta", "epsilon")
HELD_OUT_ROWS = 3000
WITHIN = 1e-12


def sample_features(*paths: Path) -> np.ndarray:
    """Every feature row of the bundled CSV files (the label column, if any, dropped)."""
    blocks = []
    for path in paths:
        header = path.read_text().splitlines()[0].split(",")
        table = np.genfromtxt(path, delimiter=",", skip_header=1, dtype=str)
        blocks.append(table[:, [i for i, name in enumerate(header) if name != "label"]])
    return np.vstack(blocks).astype(np.float64)


def generated(rows: int, seed: int) -> tuple[list[str], list[list[str]]]:
    """Five classes from six float columns (a fifth of cells empty, i.e. missing) and three
    integer-coded ones (codes 0-6, some missing): a header and rows with ``label`` last."""
    rng = np.random.default_rng(seed)
    floats = rng.normal(size=(rows, 6))
    codes = rng.integers(0, 7, size=(rows, 3)).astype(np.float64)
    score = floats[:, 0] + 0.8 * floats[:, 1] * floats[:, 2] + 0.6 * codes[:, 0] - codes[:, 1]
    labels = np.digitize(score + rng.normal(scale=0.5, size=rows), [-2.5, -1.0, 0.5, 2.0])
    floats[rng.random(floats.shape) < 0.2] = np.nan
    codes[rng.random(codes.shape) < 0.1] = np.nan
    table = np.column_stack((floats, codes))
    header = [*(f"f{i}" for i in range(6)), "code_a", "code_b", "code_c", "label"]
    body = [
        [
            *(
                "" if np.isnan(v) else repr(int(v) if i >= 6 else float(v))
                for i, v in enumerate(row)
            ),
            CLASSES[c],
        ]
        for row, c in zip(table, labels, strict=True)
    ]
    return header, body


def as_matrix(rows: list[list[str]]) -> np.ndarray:
    return np.array([[float(v) if v else np.nan for v in row[:-1]] for row in rows])


def predictors(model_dir: Path) -> tuple[Model, Model]:
    """The model loaded twice: with its compiled trees, and with LightGBM."""
    fast, library = load_model(model_dir, compiled=True), load_model(model_dir)
    assert (fast.predictor_kind, library.predictor_kind) == ("compiled", "library")
    return fast, library


def assert_same_answers(fast: Model, library: Model, features: np.ndarray) -> None:
    """Labels equal on every record, probabilities within 1e-12: one thread, several, and
    the threaded path of a large batch."""
    large = np.resize(features, (max(5000, len(features)), features.shape[1]))
    for matrix in (features, features[:1], large):
        expected = library.predict_proba(matrix, num_threads=1)
        for threads in (1, 3, 0):
            answer = fast.predict_proba(matrix, num_threads=threads)
            assert answer.shape == expected.shape
            assert np.abs(answer - expected).max() <= WITHIN
            assert fast.predict_labels(answer) == library.predict_labels(expected)


@pytest.fixture(scope="module")
def multiclass_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """A model trained by ``containers/bin/train`` on generated data, and held-out rows."""
    header, rows = generated(5000 + HELD_OUT_ROWS, seed=7)
    training, held_out = rows[:4000], rows[4000:5000]
    ml_root = make_ml_root(
        tmp_path_factory.mktemp("multiclass"),
        channels={
            "training": {"train.csv": csv_text(header, training)},
            "validation": {"validation.csv": csv_text(header, held_out)},
        },
        hyperparameters={"num_iterations": 60},
    )
    result = run_train(ml_root)
    assert result.returncode == 0, f"training failed:\n{result.stdout}\n{result.stderr}"
    _, unseen = generated(HELD_OUT_ROWS, seed=8)
    return ml_root / "model", as_matrix(unseen)


@pytest.fixture
def model_copy(tmp_path: Path, trained_model_dir: Path) -> Path:
    """A writable copy of the sample model, to tamper with."""
    return Path(shutil.copytree(trained_model_dir, tmp_path / "model"))


def test_training_writes_the_compiled_model_and_its_record(trained_model_dir: Path) -> None:
    record = json.loads((trained_model_dir / compiled.RECORD_FILE).read_text())
    model_sha = hashlib.sha256((trained_model_dir / "model.txt").read_bytes()).hexdigest()
    library_path = trained_model_dir / record["library_file"]
    assert record["model_sha256"] == model_sha
    assert record["library_sha256"] == hashlib.sha256(library_path.read_bytes()).hexdigest()
    assert record["target"] == {"system": "Linux", "machine": "x86_64", "cpu": "x86-64"}
    assert record["entry"] == {
        "name": "forest_root",
        "signature": "void(double *, double *, int32_t, int32_t)",
    }
    assert set(record["versions"]) == {"lleaves", "llvmlite", "ld"}
    assert record["versions"]["ld"].startswith("GNU ld")
    assert (record["n_features"], record["outputs"]) == (30, 1)
    # Every row of the bundled training and validation splits, checked against LightGBM.
    assert record["checked"]["rows"] == len(sample_features(TRAINING_CSV, VALIDATION_CSV))
    assert record["checked"]["largest_difference"] <= WITHIN
    metadata = json.loads((trained_model_dir / "metadata.json").read_text())
    assert metadata["compiled_predictor"] == {"compiled": True, "record": "compiled.json"}


def test_the_library_is_the_same_bytes_each_time_the_model_is_compiled(
    tmp_path: Path, trained_model_dir: Path
) -> None:
    """Training's artefacts are reproducible: the same model compiles to the same library."""
    shutil.copy(trained_model_dir / "model.txt", tmp_path / "model.txt")
    rows = sample_features(INFERENCE_CSV)
    expected = load_model(trained_model_dir).predict_proba(rows)
    record = compiled.compile_model(tmp_path, "model.txt", rows, expected)
    assert record["library_sha256"] == compiled.sha256_of(trained_model_dir / "model.compiled.so")


def test_the_rows_checked_are_spread_over_both_sets_and_bounded() -> None:
    training = np.arange(60_000, dtype=np.float64).reshape(30_000, 2)
    validation = -1 - np.arange(20_000, dtype=np.float64).reshape(10_000, 2)
    rows = compiled.check_rows(training, validation)
    assert len(rows) == compiled.CHECKED_ROWS
    assert rows[0].tolist() == training[0].tolist()
    assert rows[-1].tolist() == validation[-1].tolist()
    assert 4990 <= (rows[:, 0] < 0).sum() <= 5010  # a quarter of all rows: of those checked too
    ten_rows_wide = np.zeros((100, compiled.CHECKED_BYTES // 8 // 10))
    assert len(compiled.check_rows(ten_rows_wide)) == 10


def test_training_keeps_the_library_only_if_it_answers_as_lightgbm(
    tmp_path: Path, trained_model_dir: Path
) -> None:
    """Checked on the model's own rows before it ships: here against another model's answers,
    which no library of this model gives."""
    shutil.copy(trained_model_dir / "model.txt", tmp_path / "model.txt")
    rows = sample_features(INFERENCE_CSV)
    others = 1 - load_model(trained_model_dir).predict_proba(rows)
    with pytest.raises(compiled.CompiledUnavailable) as refused:
        compiled.compile_model(tmp_path, "model.txt", rows, others)
    assert str(refused.value).startswith(
        "the compiled trees answer otherwise than LightGBM on row 0 of the 114 training rows "
        "checked: probabilities ["
    )
    assert "(allowed: labels equal, within 1e-12)" in str(refused.value)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model.txt"]


def test_serving_the_compiled_model_loads_neither_lightgbm_nor_the_compiler(
    trained_model_dir: Path,
) -> None:
    """The inference image has no compiler; the server imports LightGBM only to serve with it."""
    probe = (
        "import sys; from pathlib import Path; from model_kit.model_io import load_model; "
        f"model = load_model(Path({str(trained_model_dir)!r}), compiled=True); "
        "loaded = {'lightgbm', 'lleaves', 'llvmlite'} & set(sys.modules); "
        "print(model.predictor_kind, sorted(loaded))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["compiled", "[]"]


def test_the_object_uses_no_cpu_feature_beyond_baseline_x86_64(trained_model_dir: Path) -> None:
    """Every AVX (VEX or EVEX encoded) instruction's mnemonic starts with v; baseline x86-64
    code has none, so an object built for the training host's CPU fails here."""
    objdump = shutil.which("objdump")
    if objdump is None:
        pytest.skip("objdump (binutils) is not installed")
    listing = subprocess.run(
        [objdump, "-d", "--no-show-raw-insn", str(trained_model_dir / compiled.LIBRARY_FILE)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    mnemonics = [line.split("\t")[1].split()[0] for line in listing.splitlines() if "\t" in line]
    assert len(mnemonics) > 1000
    assert [m for m in mnemonics if m.startswith("v")] == []


def test_compiled_answers_are_lightgbms_on_the_bundled_data(trained_model_dir: Path) -> None:
    features = sample_features(TRAINING_CSV, VALIDATION_CSV, INFERENCE_CSV)
    with_missing = features.copy()
    with_missing[::3, ::4] = np.nan
    fast, library = predictors(trained_model_dir)
    assert_same_answers(fast, library, np.vstack((features, with_missing)))


def test_compiled_answers_are_lightgbms_on_held_out_multiclass_data(multiclass_run) -> None:
    model_dir, unseen = multiclass_run
    assert np.isnan(unseen).any()
    fast, library = predictors(model_dir)
    assert fast.classes == tuple(sorted(CLASSES))
    record = json.loads((model_dir / compiled.RECORD_FILE).read_text())
    assert (record["n_features"], record["outputs"]) == (9, len(CLASSES))
    assert_same_answers(fast, library, unseen)
    # Not a model that answers one class: the comparison above means something.
    assert len(set(library.predict_labels(library.predict_proba(unseen)))) == len(CLASSES)


def test_each_model_loaded_in_one_process_predicts_with_its_own_library(
    trained_model_dir: Path, multiclass_run
) -> None:
    """The loader knows a library by the name it was opened by: a model loaded after another
    was dropped must not be handed the first one's code."""
    model_dir, unseen = multiclass_run
    first = load_model(trained_model_dir, compiled=True)
    assert first.predictor_kind == "compiled"
    del first
    gc.collect()
    fast, library = predictors(model_dir)
    assert np.abs(fast.predict_proba(unseen) - library.predict_proba(unseen)).max() <= WITHIN


def rewrite_record(model_dir: Path, **changes: object) -> None:
    path = model_dir / compiled.RECORD_FILE
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def flip_last_byte(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))


def replace_library(model_dir: Path, code: bytes) -> None:
    """Another library in the model's place, with a record that matches its bytes."""
    (model_dir / compiled.LIBRARY_FILE).write_bytes(code)
    rewrite_record(model_dir, library_sha256=hashlib.sha256(code).hexdigest())


TAMPERINGS = {
    "model SHA-256": lambda d: rewrite_record(d, model_sha256="0" * 64),
    "target": lambda d: rewrite_record(
        d, target={"system": "Linux", "machine": "aarch64", "cpu": "generic"}
    ),
    "entry point": lambda d: rewrite_record(
        d, entry={"name": "forest_root", "signature": "void(float *, float *, int32_t, int32_t)"}
    ),
    "library SHA-256": lambda d: flip_last_byte(d / compiled.LIBRARY_FILE),
    "features, outputs": lambda d: rewrite_record(d, outputs=2),
    "compiled.json not found": lambda d: (d / compiled.RECORD_FILE).unlink(),
    "is not a version 2 record": lambda d: rewrite_record(d, record_version=1),
    "model.compiled.so not found": lambda d: (d / compiled.LIBRARY_FILE).unlink(),
    "cannot be loaded: ": lambda d: replace_library(d, b"not a shared library"),
    # A real shared library, without the entry point: the server's own C code.
    "undefined symbol: forest_root": lambda d: replace_library(d, native.LIBRARY.read_bytes()),
}


@pytest.mark.parametrize("reason", sorted(TAMPERINGS))
def test_a_record_that_does_not_match_falls_back_to_lightgbm_and_says_why(
    model_copy: Path, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    TAMPERINGS[reason](model_copy)
    with caplog.at_level(logging.WARNING, logger="model_kit.model_io"):
        model = load_model(model_copy, compiled=True)
    assert model.predictor_kind == "library"
    assert "compiled predictor not used, lightgbm predicts" in caplog.text
    assert reason in caplog.text


def test_a_changed_model_file_is_not_served_by_the_old_object(
    model_copy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model_file = model_copy / "model.txt"
    model_file.write_text(model_file.read_text() + "\n")
    with caplog.at_level(logging.WARNING, logger="model_kit.model_io"):
        assert load_model(model_copy, compiled=True).predictor_kind == "library"
    assert "model SHA-256: compiled for" in caplog.text


def test_a_family_without_compiled_trees_is_served_by_its_library(
    family_model_dirs: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="model_kit.model_io"):
        model = load_model(family_model_dirs["xgboost"], compiled=True)
    assert model.predictor_kind == "library"
    assert "the xgboost family has no compiled predictor" in caplog.text


def break_lleaves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "broken"
    (broken / "lleaves").mkdir(parents=True)
    (broken / "lleaves" / "__init__.py").write_text("raise ImportError('lleaves is broken')\n")
    monkeypatch.setenv("PYTHONPATH", str(broken))


def crash_the_compiler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """LLVM crashing on a forest, as it can on very large ones (lleaves issue 77)."""
    crashing = tmp_path / "crashing"
    (crashing / "lleaves").mkdir(parents=True)
    (crashing / "lleaves" / "__init__.py").write_text(
        "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(crashing))


def hide_the_linker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "no-programs").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "no-programs"))


CANNOT_COMPILE = {
    "CompiledUnavailable: ImportError: lleaves is broken": break_lleaves,
    "CompiledUnavailable: the compiler's process was killed by SIGSEGV": crash_the_compiler,
    "CompiledUnavailable: the linker ld (binutils) is not installed": hide_the_linker,
}


@pytest.mark.parametrize("reason", sorted(CANNOT_COMPILE))
def test_training_succeeds_and_says_why_when_it_cannot_compile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reason: str
) -> None:
    """No compiler, a crashing one, or no linker: the model is saved, LightGBM serves it,
    metadata says why."""
    CANNOT_COMPILE[reason](tmp_path, monkeypatch)
    ml_root = make_ml_root(
        tmp_path / "ml",
        channels={"training": TRAINING_CSV, "validation": VALIDATION_CSV},
        hyperparameters={"num_iterations": 20},
    )
    result = run_train(ml_root)
    assert result.returncode == 0, f"training failed:\n{result.stdout}\n{result.stderr}"
    message = reason.split(": ", 1)[1]
    assert f"model not compiled, LightGBM will serve it: {message}" in result.stdout
    model_dir = ml_root / "model"
    metadata = json.loads((model_dir / "metadata.json").read_text())
    assert metadata["compiled_predictor"] == {"compiled": False, "reason": reason}
    assert not (model_dir / compiled.RECORD_FILE).exists()
    assert not list(model_dir.glob(f"{compiled.LIBRARY_FILE}*"))
    assert load_model(model_dir, compiled=True).predictor_kind == "library"


@pytest.mark.parametrize(
    ("value", "expected"), [("", True), ("true", True), ("TRUE", True), ("false", False)]
)
def test_the_switch_is_read_from_the_environment(value: str, expected: bool) -> None:
    assert ServerConfig.from_env({COMPILED_PREDICTOR: value}).compiled_predictor is expected


def test_the_switch_refuses_other_values() -> None:
    with pytest.raises(ConfigError, match=f"{COMPILED_PREDICTOR}='off' is not allowed"):
        ServerConfig.from_env({COMPILED_PREDICTOR: "off"})


def ml_root_for(tmp_path: Path, model_dir: Path) -> Path:
    shutil.copytree(model_dir, tmp_path / "model")
    return tmp_path


def ping_and_predict(server: ModelServer) -> tuple[str, str, str]:
    """The predictor header of ``/ping`` and ``/invocations``, and the answer (CSV labels)."""
    conn = http.client.HTTPConnection(server.url.removeprefix("http://"), timeout=30)
    conn.request("GET", "/ping")
    ping = conn.getresponse()
    ping.read()
    body = "\n".join(INFERENCE_CSV.read_text().splitlines()[1:]) + "\n"
    conn.request("POST", "/invocations", body=body, headers={"Content-Type": "text/csv"})
    answer = conn.getresponse()
    labels = answer.read().decode()
    conn.close()
    assert (ping.status, answer.status) == (200, 200)
    return ping.getheader("X-Model-Predictor"), answer.getheader("X-Model-Predictor"), labels


def test_the_server_reports_which_predictor_serves(tmp_path: Path, trained_model_dir: Path) -> None:
    """Compiled by default; the switch, or a record for another model, gives LightGBM."""
    library = load_model(trained_model_dir)
    expected = library.predict_labels(library.predict_proba(sample_features(INFERENCE_CSV)))
    stale = ml_root_for(tmp_path / "stale", trained_model_dir)
    rewrite_record(stale / "model", model_sha256="0" * 64)
    cases = {
        "compiled": (ml_root_for(tmp_path / "default", trained_model_dir), {}),
        "switched off": (
            ml_root_for(tmp_path / "off", trained_model_dir),
            {COMPILED_PREDICTOR: "false"},
        ),
        "stale record": (stale, {}),
    }
    for case, (ml_root, env) in cases.items():
        with start_model_server(ml_root, workers=2, env=env) as server:
            ping_kind, answer_kind, labels = ping_and_predict(server)
            log = server.log()
        kind = "compiled" if case == "compiled" else "library"
        assert (ping_kind, answer_kind) == (kind, kind), case
        assert labels.splitlines() == expected, case
        if case == "compiled":
            assert "predictor: compiled\n" in log
            assert "compiled by lleaves 1.3.0, llvmlite 0.44.0 for x86-64 CPUs" in log
        elif case == "switched off":
            assert f"predictor: library ({COMPILED_PREDICTOR}=false)" in log
            assert "compiled predictor not used" not in log
        else:
            assert "compiled predictor not used, lightgbm predicts: model SHA-256" in log
            assert "predictor: library\n" in log
