"""Compiled trees: a LightGBM model as native code, a shared library beside ``model.txt``.

Training compiles the saved model once with lleaves (LLVM), for a generic x86-64 CPU (SSE2,
no AVX): the endpoint's instance is not the training instance, so the code may use no
feature of the host it was built on. The GNU linker makes the object a shared library, kept
only if it answers as LightGBM on the model's own training rows, and ``compiled.json``
records what it is (the SHA-256 of the model file and of the library, the target, the entry
point, the compiler versions). The server loads the library only when that record matches
the model beside it and this machine, and never compiles: anything else is a reason to
predict with LightGBM as before. Serving needs neither lleaves nor LLVM: the
library is plain machine code, loaded by the C library's own loader.

Loading native code from the model directory is the trust already given to the model:
whoever can write ``model.txt`` decides every answer. lleaves predicts the numbers LightGBM
does, summed in blocks of trees (``benchmarks/compiled_predictor.py``: 4-9x faster with one
thread, probabilities within ~2e-16); ``tests/containers/test_compiled_predictor.py`` holds
it to labels equal and 1e-12.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from ctypes import CFUNCTYPE, POINTER, c_double, c_int32
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model_kit.families.base import CompiledUnavailable, class_probabilities
from model_kit.rules import available_cpus

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

LIBRARY_FILE = "model.compiled.so"
RECORD_FILE = "compiled.json"
# 2: a shared library the C library's loader maps (1 was an object file for LLVM's JIT).
RECORD_VERSION = 2
COMPILER = "lleaves"
# The baseline x86-64 CPU, with no optional features: runs on every x86-64 instance type.
GENERIC_CPU = "x86-64"
# The small code model (32-bit offsets) is safe in a shared library, which the loader maps
# as one piece, and predicts 1.3-2x faster than the large one lleaves uses by default.
CODE_MODEL = "small"
# void forest_root(double *features, double *out, int32 start_row, int32 end_row): lleaves'
# entry point; ctypes releases the GIL for the call.
ENTRY = "forest_root"
ENTRY_SIGNATURE = "void(double *, double *, int32_t, int32_t)"
EntryFunction = CFUNCTYPE(None, POINTER(c_double), POINTER(c_double), c_int32, c_int32)
# A shared library of the object: symbols bound at load (a missing one fails the load, not a
# request), no executable stack, no symbol table beyond what is exported; it needs libm (exp).
LINK_FLAGS = ("-shared", "-z", "now", "-z", "noexecstack", "--strip-all")
LINK_LIBRARIES = ("-l:libm.so.6",)
# Compiling a forest takes ~1 s per 100 trees here; one that takes this long is stopped, and
# LightGBM serves the model.
COMPILE_TIMEOUT_S = 900
# The child process's exit status when it refuses (CompiledUnavailable, or the compiler's
# exception), its last line of stderr saying why.
REFUSED = 3
# The compiled trees' answers may differ from LightGBM's by this much (they sum the trees in
# blocks, another order): what training checks on the model's own data before it ships them.
WITHIN = 1e-12
# Training checks at most this many of its rows (evenly spaced): ~5 ms of compiled trees;
# fewer for wide data, so the copy stays under CHECKED_BYTES.
CHECKED_ROWS = 20_000
CHECKED_BYTES = 64 * 1024 * 1024
# A thread is worth starting for this many records: ~0.25 ms of compiled trees here, five
# times what starting a thread costs.
MIN_ROWS_PER_THREAD = 1000


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def this_machine() -> dict[str, str]:
    """What a library must be built for to run here: this OS and architecture, any CPU of
    it (the library uses no optional CPU feature)."""
    return {"system": platform.system(), "machine": platform.machine(), "cpu": GENERIC_CPU}


def _linker() -> tuple[str, str]:
    """The GNU linker's path and version line, or CompiledUnavailable."""
    linker = shutil.which("ld")
    if linker is None:
        raise CompiledUnavailable("the linker ld (binutils) is not installed")
    version = subprocess.run([linker, "--version"], capture_output=True, text=True, check=True)
    return linker, version.stdout.splitlines()[0]


def compile_model(
    model_dir: Path, model_file: str, rows: np.ndarray, expected: np.ndarray
) -> dict[str, Any]:
    """Compile ``model_dir/model_file`` for the generic CPU; write the library and its record.

    ``expected``: LightGBM's class probabilities for ``rows`` (some of the training data).
    The library is kept only if it answers the same on them: labels equal, probabilities
    within ``WITHIN``. Returns the record; raises CompiledUnavailable when it cannot compile
    or answers otherwise, and then leaves nothing behind.

    The work runs in a child process (``python -m model_kit.families.compiled``): LLVM on a
    very large forest can crash, exhaust memory or take many minutes, and that must cost the
    compiled trees, never the training job.
    """
    import numpy as np

    target = this_machine()
    if (target["system"], target["machine"]) != ("Linux", "x86_64"):
        raise CompiledUnavailable(
            f"compiled trees target x86-64 Linux endpoints; this host is "
            f"{target['machine']} {target['system']}"
        )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="compiled-trees-") as work:
        np.save(Path(work) / "rows.npy", rows, allow_pickle=False)
        np.save(Path(work) / "expected.npy", expected, allow_pickle=False)
        command = [sys.executable, "-m", __name__, str(model_dir), model_file, work]
        try:
            child = subprocess.run(
                command, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S
            )
        except subprocess.TimeoutExpired:
            _remove_compiled(model_dir)
            raise CompiledUnavailable(
                f"compiling took more than {COMPILE_TIMEOUT_S} s and was stopped"
            ) from None
    if child.returncode == 0:
        log.info("compiled %s in %.2f s", model_file, time.perf_counter() - started)
        return _read_record(model_dir)
    _remove_compiled(model_dir)
    said = child.stderr.strip()
    if child.returncode == REFUSED:
        raise CompiledUnavailable(said)
    ended = (
        f"was killed by {signal.Signals(-child.returncode).name}"
        if child.returncode < 0
        else f"exited with {child.returncode}"
    )
    last = f": {said.splitlines()[-1]}" if said else ""
    raise CompiledUnavailable(f"the compiler's process {ended}{last}")


def _remove_compiled(model_dir: Path) -> None:
    """Whatever a child process that failed may have left of the library and its record."""
    for name in (LIBRARY_FILE, RECORD_FILE):
        for path in model_dir.glob(f"{name}*"):
            path.unlink()


def _compile_here(model_dir: Path, model_file: str, rows: np.ndarray, expected: np.ndarray) -> None:
    """``compile_model``'s work, in the child process."""
    import lleaves

    linker, linker_version = _linker()
    n_classes = expected.shape[1]
    outputs = 1 if n_classes == 2 else n_classes
    with tempfile.TemporaryDirectory(prefix="compiled-trees-") as work:
        object_file, library = Path(work) / "trees.o", Path(work) / LIBRARY_FILE
        trees = lleaves.Model(model_file=str(model_dir / model_file))
        # lleaves writes the object it compiles to ``cache``. Its default blocks of trees:
        # each record's sum is the blocks' sums added, within ~2e-16 of LightGBM's.
        trees.compile(
            cache=str(object_file),
            froot_func_name=ENTRY,
            fcodemodel=CODE_MODEL,
            target_cpu=GENERIC_CPU,
            target_cpu_features="",
        )
        linked = subprocess.run(
            [linker, *LINK_FLAGS, "-o", str(library), str(object_file), *LINK_LIBRARIES],
            capture_output=True,
            text=True,
        )
        if linked.returncode != 0:
            raise CompiledUnavailable(f"ld failed ({linked.returncode}): {linked.stderr.strip()}")
        code = library.read_bytes()
    predictor = CompiledPredictor(
        _load_library(code, model_dir / LIBRARY_FILE), rows.shape[1], outputs, n_classes
    )
    check = check_answers(predictor, rows, expected)
    record = {
        "record_version": RECORD_VERSION,
        "compiler": COMPILER,
        "versions": {
            **{name: metadata.version(name) for name in (COMPILER, "llvmlite")},
            "ld": linker_version,
        },
        "target": this_machine(),
        "entry": {"name": ENTRY, "signature": ENTRY_SIGNATURE},
        "model_file": model_file,
        "model_sha256": sha256_of(model_dir / model_file),
        "library_file": LIBRARY_FILE,
        "library_sha256": hashlib.sha256(code).hexdigest(),
        "n_features": rows.shape[1],
        "outputs": outputs,
        "checked": check,
    }
    # Each file whole or not at all; the record last, as it vouches for the library.
    for name, content in (
        (LIBRARY_FILE, code),
        (RECORD_FILE, (json.dumps(record, indent=2, sort_keys=True) + "\n").encode()),
    ):
        partial = model_dir / f"{name}.partial"
        partial.write_bytes(content)
        partial.replace(model_dir / name)


def check_rows(*tables: np.ndarray) -> np.ndarray:
    """At most ``CHECKED_ROWS`` rows of ``tables`` taken as one, evenly spaced (a copy of
    at most ``CHECKED_BYTES``, not of the tables: training data can be large)."""
    import numpy as np

    total = sum(len(table) for table in tables)
    width = tables[0].shape[1]
    wanted = min(total, CHECKED_ROWS, max(1, CHECKED_BYTES // (8 * max(1, width))))
    picks = np.linspace(0, total - 1, wanted).astype(np.int64)
    parts, offset = [], 0
    for table in tables:
        mine = picks[(picks >= offset) & (picks < offset + len(table))] - offset
        parts.append(table[mine])
        offset += len(table)
    return np.vstack(parts)


def check_answers(
    predictor: CompiledPredictor, rows: np.ndarray, expected: np.ndarray
) -> dict[str, Any]:
    """What the check found, or CompiledUnavailable naming the first row that differs."""
    import numpy as np

    answers = predictor.predict_proba(rows, num_threads=1)
    differences = np.abs(answers - expected).max(axis=1)
    wrong = (differences > WITHIN) | (answers.argmax(axis=1) != expected.argmax(axis=1))
    if wrong.any():
        row = int(np.flatnonzero(wrong)[0])
        raise CompiledUnavailable(
            f"the compiled trees answer otherwise than LightGBM on row {row} of the "
            f"{len(rows)} training rows checked: probabilities {answers[row].tolist()} "
            f"against {expected[row].tolist()} (allowed: labels equal, within {WITHIN})"
        )
    return {"rows": len(rows), "largest_difference": float(differences.max(initial=0.0))}


def _read_record(model_dir: Path) -> dict[str, Any]:
    record_file = model_dir / RECORD_FILE
    if not record_file.is_file():
        raise CompiledUnavailable(f"{RECORD_FILE} not found in {model_dir}")
    try:
        record = json.loads(record_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CompiledUnavailable(f"{record_file} is unreadable: {exc}") from None
    if not isinstance(record, dict) or record.get("record_version") != RECORD_VERSION:
        raise CompiledUnavailable(f"{record_file} is not a version {RECORD_VERSION} record")
    return record


def _expect(what: str, recorded: object, here: object) -> None:
    if recorded != here:
        raise CompiledUnavailable(f"{what}: compiled for {recorded!r}, here {here!r}")


def load_compiled(
    model_dir: Path, model_file: str, n_features: int, n_classes: int
) -> CompiledPredictor:
    """The compiled model of ``model_dir/model_file``, or CompiledUnavailable saying why not.

    Checks, in order: the record, the model file's hash, this machine, the entry point, the
    model's shape, the library's hash; then loads the library (no compilation).
    """
    record = _read_record(model_dir)
    _expect("model file", record.get("model_file"), model_file)
    _expect("model SHA-256", record.get("model_sha256"), sha256_of(model_dir / model_file))
    _expect("target", record.get("target"), this_machine())
    _expect("entry point", record.get("entry"), {"name": ENTRY, "signature": ENTRY_SIGNATURE})
    outputs = 1 if n_classes == 2 else n_classes
    _expect(
        "features, outputs",
        [record.get("n_features"), record.get("outputs")],
        [n_features, outputs],
    )
    library_path = model_dir / LIBRARY_FILE
    if not library_path.is_file():
        raise CompiledUnavailable(f"{library_path} not found")
    # The bytes hashed are the bytes loaded.
    code = library_path.read_bytes()
    _expect("library SHA-256", record.get("library_sha256"), hashlib.sha256(code).hexdigest())
    library = _load_library(code, library_path)
    versions = record.get("versions", {})
    log.info(
        "loaded %s, compiled by %s for %s CPUs",
        library_path,
        ", ".join(f"{name} {versions.get(name)}" for name in (COMPILER, "llvmlite")),
        GENERIC_CPU,
    )
    return CompiledPredictor(library, n_features, outputs, n_classes)


def _load_library(code: bytes, path: Path) -> ctypes.CDLL:
    """``code`` loaded from an anonymous in-memory file: the bytes just hashed (not the file,
    which could change meanwhile), and loadable where the model's folder is mounted noexec.

    The file's descriptor stays open for the life of the process. The loader knows a library
    by the name it was opened by, ``/proc/self/fd/N``, and hands back the library already
    loaded under a name it is given again: a closed N, reused, would load the old model.
    """
    memory = os.memfd_create(LIBRARY_FILE, os.MFD_CLOEXEC)
    try:
        with open(memory, "wb", closefd=False) as file:
            file.write(code)
        library = ctypes.CDLL(f"/proc/self/fd/{memory}", mode=os.RTLD_NOW | os.RTLD_LOCAL)
    except OSError as exc:
        os.close(memory)  # nothing was loaded under its name
        raise CompiledUnavailable(f"{path} cannot be loaded: {exc}") from None
    try:
        EntryFunction((ENTRY, library))
    except AttributeError as exc:
        raise CompiledUnavailable(f"{path} cannot be used: {exc}") from None
    return library


class CompiledPredictor:
    """Predicts with the compiled trees; answers as ``BoosterPredictor`` does."""

    def __init__(self, library: ctypes.CDLL, n_features: int, outputs: int, n_classes: int) -> None:
        # The entry point's code is in ``library``, which ctypes never unloads.
        self._library = library
        self._entry = EntryFunction((ENTRY, library))
        self.n_features = n_features
        self.outputs = outputs
        self.n_classes = n_classes
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def _threads(self) -> ThreadPoolExecutor:
        """Threads kept for the process's life, as OpenMP keeps its team; made at the first
        multi-threaded prediction, in a server's worker (the master never predicts: no
        thread may exist at fork)."""
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(available_cpus(), thread_name_prefix="trees")
            return self._pool

    def predict_proba(self, features: np.ndarray, num_threads: int = 0) -> np.ndarray:
        import numpy as np

        data = np.ascontiguousarray(features, dtype=np.float64)
        if data.ndim != 2 or data.shape[1] != self.n_features:
            raise ValueError(f"expected shape (rows, {self.n_features}), got {data.shape}")
        rows = data.shape[0]
        out = np.empty((rows, self.outputs), dtype=np.float64)
        data_ptr = data.ctypes.data_as(POINTER(c_double))
        out_ptr = out.ctypes.data_as(POINTER(c_double))
        threads = min(num_threads or available_cpus(), max(1, rows // MIN_ROWS_PER_THREAD))
        if threads == 1:
            self._entry(data_ptr, out_ptr, 0, rows)
        else:
            step = -(-rows // threads)
            done = [
                self._threads().submit(
                    self._entry, data_ptr, out_ptr, start, min(start + step, rows)
                )
                for start in range(0, rows, step)
            ]
            for future in done:
                future.result()
        return class_probabilities(out[:, 0] if self.outputs == 1 else out, self.n_classes)


def main(argv: list[str]) -> int:
    """The child process of ``compile_model``: MODEL_DIR MODEL_FILE WORK (rows.npy and
    expected.npy in WORK)."""
    import numpy as np

    model_dir, model_file, work = Path(argv[0]), argv[1], Path(argv[2])
    try:
        _compile_here(
            model_dir,
            model_file,
            np.load(work / "rows.npy", allow_pickle=False),
            np.load(work / "expected.npy", allow_pickle=False),
        )
    except Exception as exc:
        print(
            exc if isinstance(exc, CompiledUnavailable) else f"{type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        return REFUSED
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
