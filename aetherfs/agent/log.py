"""Structured log lines on stderr: `time=... level=info event=version.live dataset=... ...`.

key=value (logfmt) reads well on a terminal and in journald, and every field greps.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, TextIO

_lock = threading.Lock()


def _value(value: Any) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' ="\n\t'):
        escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    return text


class Logger:
    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr

    def _emit(self, level: str, event: str, fields: dict[str, Any]) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        parts = [f"time={stamp}Z", f"level={level}", f"event={event}"]
        parts += [f"{k}={_value(v)}" for k, v in fields.items() if v is not None]
        with _lock:
            self.stream.write(" ".join(parts) + "\n")
            self.stream.flush()

    def info(self, event: str, **fields: Any) -> None:
        self._emit("info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit("warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._emit("error", event, fields)
