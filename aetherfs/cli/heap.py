"""Keep freed large buffers from staying in the process's heap (glibc only).

glibc serves allocations above a threshold with mmap and returns them to the system when
freed, but it raises that threshold each time such a block is freed (up to 32 MiB). After a
few of push's 1 MiB batches come and go, later ones are carved from the heap by several
threads, and the heap keeps growing with the amount of data pushed. A fixed threshold stops
that (the env var `MALLOC_MMAP_THRESHOLD_` does the same from outside).

Only push sets it. Pull does not grow that way, and there every fresh mmap of a batch's read
costs page faults. Measured on the benchmarks' `files` tree, whose push and pull peak RSS
`python -m benchmarks.throughput` reports; the figures are in docs/benchmarks.md, "The tuned
constants".
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util

_M_MMAP_THRESHOLD = -3  # from glibc's malloc.h
MMAP_THRESHOLD = 1024 * 1024


def fix_mmap_threshold(threshold: int = MMAP_THRESHOLD) -> bool:
    """Set glibc's mmap threshold once and for all; False where there is no glibc mallopt."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    with contextlib.suppress(OSError, AttributeError):
        mallopt = ctypes.CDLL(name).mallopt
        mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        mallopt.restype = ctypes.c_int
        return bool(mallopt(_M_MMAP_THRESHOLD, threshold))
    return False
