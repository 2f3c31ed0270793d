"""Cold start and resident memory of a server's whole process tree; the compiled trees'
size on disk."""

from __future__ import annotations

import collections
import importlib.util
import re
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.loadgen import run_wrk
from local.model_server import ModelServer


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (nginx and gunicorn sit two levels down)."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").iterdir():
            children = (task / "children").read_text().split()
            queue.extend(int(child) for child in children)
    return found


def tree_pss_mib(pid: int) -> float:
    """Proportional set size of the process tree: shared pages counted once in total."""
    total_kib = 0
    for member in descendants(pid):
        for line in Path(f"/proc/{member}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                total_kib += int(line.split()[1])
    return total_kib / 1024


def cold_start_s(start: Callable[[], ModelServer], repeats: int) -> float:
    """Median seconds from launching the server to its first ``/ping`` 200."""
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        server = start()
        timings.append(time.perf_counter() - started)
        server.stop()
    return statistics.median(timings)


def cold_starts_s(starts: dict[str, Callable[[], ModelServer]], repeats: int) -> dict[str, float]:
    """``cold_start_s`` of each server, their starts taken in turn, ``repeats`` each."""
    timings: dict[str, list[float]] = {name: [] for name in starts}
    for _ in range(repeats):
        for name, start in starts.items():
            timings[name].append(cold_start_s(start, repeats=1))
    return {name: statistics.median(values) for name, values in timings.items()}


def installed_mib(package: str) -> float:
    """Disk used by an installed package's folder, as ``du -sm`` counts it (whole MiB)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"{package} is not installed as a package folder")
    folder = next(iter(spec.submodule_search_locations))
    return float(
        subprocess.run(
            ["du", "-sm", folder], capture_output=True, text=True, check=True
        ).stdout.split()[0]
    )


def compiled_size(model_dir: Path) -> dict[str, float]:
    """What compiled trees add: to the training image, the compiler (llvmlite and lleaves
    installed); to the model, the shared library training writes beside ``model.txt`` and
    its record. The inference image gains nothing: it loads the library with ctypes."""
    from model_kit.families.compiled import LIBRARY_FILE, RECORD_FILE

    return {
        "llvmlite_mib": installed_mib("llvmlite"),
        "lleaves_mib": installed_mib("lleaves"),
        "library_kib": (model_dir / LIBRARY_FILE).stat().st_size / 1024,
        "record_kib": (model_dir / RECORD_FILE).stat().st_size / 1024,
    }


def memory_mib(server: ModelServer, body_file: Path, workers: int) -> dict[str, float]:
    """PSS once started and idle, and once 5 MB requests on every worker are done.

    The reference loads its model lazily, in each worker's first request: its
    idle figure holds one model copy, its busy figure one per worker.
    """
    time.sleep(1.5)  # every worker booted
    idle = tree_pss_mib(server.process.pid)
    run_wrk(f"{server.url}/invocations", body_file, 2 * workers, 3)
    time.sleep(2.0)  # requests still in flight when wrk stopped have finished
    return {"idle": idle, "after_5mb": tree_pss_mib(server.process.pid)}


def connections_per_worker(server: ModelServer) -> list[int]:
    """Established client connections held by each worker process, largest first (``ss``).

    gunicorn's workers all accept from one socket, and a keep-alive connection
    stays with the worker that accepted it: this shows how the load generator's
    connections were shared out.
    """
    port = server.url.rsplit(":", 1)[1]
    listing = subprocess.run(
        ["ss", "-tnpH", "state", "established", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    counts = collections.Counter(re.findall(r"pid=(\d+)", listing))
    workers = descendants(server.process.pid)[1:]
    return sorted((counts.get(str(pid), 0) for pid in workers), reverse=True)
