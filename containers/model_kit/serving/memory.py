"""glibc malloc, set for a server of large short-lived requests (standard library only).

Both are no-ops where malloc is not glibc's.
"""

from __future__ import annotations

import ctypes
import functools
import logging
from typing import Any

log = logging.getLogger("model_kit.serving")

# mallopt() parameters (malloc.h) and the values measured to keep workers small.
M_MMAP_THRESHOLD, M_ARENA_MAX = -3, -8
MMAP_THRESHOLD_BYTES = 1024 * 1024
ARENA_MAX = 2


@functools.cache
def _glibc() -> Any:
    libc = ctypes.CDLL(None)
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def tune() -> None:
    """Make glibc give a request's big buffers back to the OS once the request is done.

    By default glibc raises its mmap threshold after the first large free and
    gives each thread its own arena, so a worker that once served 5 MB requests
    keeps ~50-90 MB of freed heap: 4 workers then took 1.6-1.9x the memory of
    one (``benchmarks/serving_choices.py``). A fixed 1 MiB threshold and two
    arenas: request-sized arrays (a feature matrix) are mmapped and unmapped on
    free, while the server's read buffers (uvloop reads 256 KiB at a time) are
    recycled in the heap. At 128 KiB those were mapped, faulted in and unmapped
    for every chunk read: 5 MB requests ran 7-11% slower (27-28 against 30
    requests/s, 2 workers, wrk, 4 rounds). Set in the master, so the forked
    workers inherit it.
    """
    libc = _glibc()
    if libc is None:
        log.info("not glibc: malloc left at its defaults")
        return
    libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    libc.mallopt(M_ARENA_MAX, ARENA_MAX)


def release_free() -> None:
    """Give the heap's free pages back to the OS (``malloc_trim``).

    A large body waits in the heap, in the chunks it arrived in, until it is
    parsed; afterwards those pages are free but still mapped. A worker calls
    this once it has been idle for a moment: between requests under load it
    would only make the next body fault the same pages in again (6% of 5 MB
    throughput).
    """
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
