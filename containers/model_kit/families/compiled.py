"""Compiled trees: a LightGBM model as native code (lleaves on LLVM), beside ``model.txt``.

Training compiles the saved model once, for a generic x86-64 CPU (SSE2, no AVX): the
endpoint's instance is not the training instance, so the code may use no feature of the
host it was built on. It writes the object file and ``compiled.json``, a record of what it
is (the SHA-256 of the model file and of the object, the target, the compiler versions).
The server loads the object only when that record matches the model beside it and this
machine, and never compiles: anything else is a reason to predict with LightGBM as before.

Loading native code from the model directory is the trust already given to the model:
whoever can write ``model.txt`` decides every answer. lleaves predicts the numbers
LightGBM does (``benchmarks/compiled_predictor.py``: 3-6x faster with one thread; a binary
model's probabilities equal to the bit, a multiclass model's within ~1e-15);
``tests/containers/test_compiled_predictor.py`` holds it to labels equal and 1e-12.
"""

from __future__ import annotations

import hashlib
import json
import logging
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
    from llvmlite.binding import ExecutionEngine

log = logging.getLogger(__name__)

OBJECT_FILE = "model.compiled.o"
RECORD_FILE = "compiled.json"
RECORD_VERSION = 1
COMPILER = "lleaves"
# The baseline x86-64 CPU, with no optional features: runs on every x86-64 instance type.
GENERIC_CPU = "x86-64"
GENERIC_FEATURES = ""
# lleaves' defaults; the large code model holds forests of any size.
ENTRY = "forest_root"
RELOC, CODE_MODEL = "pic", "large"
# A thread is worth starting for this many records: ~0.25 ms of compiled trees here, five
# times what starting a thread costs.
MIN_ROWS_PER_THREAD = 1000

# void forest_root(double *features, double *out, int32 start_row, int32 end_row); ctypes
# releases the GIL for the call.
EntryFunction = CFUNCTYPE(None, POINTER(c_double), POINTER(c_double), c_int32, c_int32)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def compiler_versions() -> dict[str, str]:
    """The versions that made (and must load) an object: lleaves' code, llvmlite's LLVM."""
    try:
        return {name: metadata.version(name) for name in (COMPILER, "llvmlite")}
    except metadata.PackageNotFoundError as exc:
        raise CompiledUnavailable(f"{exc.name} is not installed") from None


def this_target() -> dict[str, str]:
    """The target this machine loads: its own architecture and OS, the generic CPU."""
    import llvmlite.binding as llvm

    return {"triple": llvm.get_process_triple(), "cpu": GENERIC_CPU, "features": GENERIC_FEATURES}


def compile_model(
    model_dir: Path, model_file: str, n_features: int, outputs: int
) -> dict[str, Any]:
    """Compile ``model_dir/model_file`` for the generic CPU; write the object and its record.

    ``outputs``: the numbers the model gives per record (1 for a binary model). Returns the
    record; raises (any exception) when it cannot compile, and then writes nothing.
    """
    import lleaves

    target = this_target()
    if not target["triple"].startswith("x86_64-"):
        raise CompiledUnavailable(
            f"compiled trees target x86-64 endpoints; this host is {target['triple']}"
        )
    started = time.perf_counter()
    partial = model_dir / f"{OBJECT_FILE}.partial"
    partial.unlink(missing_ok=True)
    trees = lleaves.Model(model_file=str(model_dir / model_file))
    # lleaves writes the object it compiles to ``cache`` (its cache file). All trees in one
    # block (no cache blocking): each record's trees are summed in LightGBM's order, so a
    # binary model's probabilities are LightGBM's to the bit (blocks differed by 2.2e-16), and
    # one record, most real-time requests, skips the blocking's overhead.
    trees.compile(
        cache=str(partial),
        fblocksize=trees.num_trees(),
        froot_func_name=ENTRY,
        fcodemodel=CODE_MODEL,
        target_cpu=GENERIC_CPU,
        target_cpu_features=GENERIC_FEATURES,
    )
    log.info("compiled %s in %.2f s", model_file, time.perf_counter() - started)
    partial.replace(model_dir / OBJECT_FILE)
    record = {
        "record_version": RECORD_VERSION,
        "compiler": COMPILER,
        "versions": compiler_versions(),
        "target": target,
        "model_file": model_file,
        "model_sha256": sha256_of(model_dir / model_file),
        "object_file": OBJECT_FILE,
        "object_sha256": sha256_of(model_dir / OBJECT_FILE),
        "n_features": n_features,
        "outputs": outputs,
    }
    (model_dir / RECORD_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record


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

    Checks, in order: the record, the model file's hash, the compiler versions, the target,
    the model's shape, the object's hash; then maps the object's code (no compilation).
    """
    record = _read_record(model_dir)
    _expect("model file", record.get("model_file"), model_file)
    _expect("model SHA-256", record.get("model_sha256"), sha256_of(model_dir / model_file))
    _expect("compiler versions", record.get("versions"), compiler_versions())
    _expect("target", record.get("target"), this_target())
    outputs = 1 if n_classes == 2 else n_classes
    _expect(
        "features, outputs",
        [record.get("n_features"), record.get("outputs")],
        [
            n_features,
            outputs,
        ],
    )
    object_path = model_dir / OBJECT_FILE
    if not object_path.is_file():
        raise CompiledUnavailable(f"{object_path} not found")
    # The bytes hashed are the bytes loaded.
    code = object_path.read_bytes()
    _expect("object SHA-256", record.get("object_sha256"), hashlib.sha256(code).hexdigest())
    engine = _map_object(code)
    address = engine.get_function_address(ENTRY)
    if not address:
        raise CompiledUnavailable(f"{object_path} has no function {ENTRY}")
    log.info(
        "loaded %s, compiled by %s for %s CPUs",
        object_path,
        ", ".join(f"{name} {version}" for name, version in record["versions"].items()),
        GENERIC_CPU,
    )
    return CompiledPredictor(engine, EntryFunction(address), n_features, outputs, n_classes)


def _map_object(code: bytes) -> ExecutionEngine:
    """An LLVM engine holding ``code``: it is handed the object as its cached compilation of
    an empty module, as lleaves does with its cache file, so nothing is compiled."""
    import llvmlite.binding as llvm

    llvm.initialize()
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    target = this_target()
    machine = llvm.Target.from_triple(target["triple"]).create_target_machine(
        cpu=target["cpu"], features=target["features"], reloc=RELOC, codemodel=CODE_MODEL
    )
    engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), machine)
    engine.set_object_cache(getbuffer_func=lambda _module: code)
    engine.finalize_object()
    engine.run_static_constructors()
    return engine


class CompiledPredictor:
    """Predicts with the compiled trees; answers as ``BoosterPredictor`` does."""

    def __init__(
        self,
        engine: ExecutionEngine,
        entry: Any,
        n_features: int,
        outputs: int,
        n_classes: int,
    ) -> None:
        # The engine owns the code ``entry`` points into: it lives as long as this object.
        self._engine = engine
        self._entry = entry
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
