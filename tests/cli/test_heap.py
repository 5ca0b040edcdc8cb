"""glibc's mmap threshold, fixed by push so freed batch buffers leave the heap."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

_PROBE = """
import sys, threading
from aetherfs.cli.heap import fix_mmap_threshold

def rss_kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

if sys.argv[1] == "fixed":  # "dynamic": leave glibc alone
    assert fix_mmap_threshold()

def churn():
    # 1 MiB buffers made in one thread and dropped in another, as push's batches are.
    for _ in range(300):
        held = [bytes(1024 * 1024) for _ in range(4)]
        threading.Thread(target=held.clear).start()

before = rss_kib()
workers = [threading.Thread(target=churn) for _ in range(4)]
for w in workers:
    w.start()
for w in workers:
    w.join()
print(rss_kib() - before)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_fixed_threshold_returns_freed_buffers() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, "fixed"], capture_output=True, text=True, check=True
    )
    # Fixed, the freed 1 MiB buffers go back to the system at once (grew ~0.2 MB here);
    # with glibc's dynamic threshold the same churn left ~12 MB in the heap.
    assert int(done.stdout) < 4 * 1024
