"""Progress bars on long work, only when a terminal is attached."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tqdm import tqdm


@contextmanager
def byte_progress(
    total: int, label: str, enabled: bool | None = None
) -> Iterator[Callable[[int], None]]:
    """Yield a thread-safe callback that advances a bar by a number of bytes."""
    show = sys.stderr.isatty() if enabled is None else enabled
    if not show:
        yield lambda _n: None
        return
    lock = threading.Lock()
    with tqdm(
        total=total,
        desc=label,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        file=sys.stderr,
        leave=False,
    ) as bar:

        def advance(n: int) -> None:
            with lock:
                bar.update(n)

        yield advance
