"""FastCDC in a child process, so that push's sealing threads keep the GIL to themselves.

The compiled gear-hash loop (`fastcdc_cy`) holds the GIL while it scans, about a second per
GiB: run in push's own process it stalls every sealing thread that wants the GIL back. Here a
child process reads each file and sends back only where to cut it (chunk lengths, four bytes
each); push then reads the bytes itself, in runs of whole chunks, and seals them.

Protocol (little-endian), jobs on the child's stdin, answers on its stdout, in order:
  job:    path length (u32), path bytes, default chunking: kind (u8: 0 CDC, 1 fixed, 2 records;
          plus 0x80: use it as it is, whatever the header says), min, avg, max (u32 each)
  answer: the chunking chosen for the file (kind u8, min, avg, max u32), then any number of
          runs (count u32, then count lengths u32), ended by a count of 0; or, if the file
          cannot be read, count 0xFFFFFFFF, a message length (u32) and the message.
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, BinaryIO

from aetherfs.core.chunking import (
    CDC,
    FIXED,
    HEADER_BYTES,
    RECORDS,
    ChunkParams,
    choose_params,
    cut_stream,
)
from aetherfs.errors import AetherError, InvalidInput

_PARAMS = struct.Struct("<BIII")
_U32 = struct.Struct("<I")
_FAILED = 0xFFFFFFFF
_KINDS = (CDC, FIXED, RECORDS)  # by their number on the pipe
_EXACT = 0x80  # in a job's kind byte: cut with these params, whatever the file's header says


class CutterFailed(AetherError):
    """The chunking process died or spoke out of turn."""


def _pack_params(params: ChunkParams, exact: bool = False) -> bytes:
    kind = _KINDS.index(params.kind) | (_EXACT if exact else 0)
    return _PARAMS.pack(kind, params.min_size, params.avg_size, params.max_size)


def _unpack_params(raw: bytes) -> ChunkParams:
    return _unpack_job_params(raw)[0]


def _unpack_job_params(raw: bytes) -> tuple[ChunkParams, bool]:
    """A job's default chunking, and whether it is to be used as it is (`_EXACT`)."""
    kind, low, avg, high = _PARAMS.unpack(raw)
    return ChunkParams(low, avg, high, _KINDS[kind & ~_EXACT]), bool(kind & _EXACT)


class Cutter:
    """One child process cutting the files it is given, in order; a context manager."""

    def __init__(
        self, paths: list[Path], params: ChunkParams, exact: frozenset[Path] = frozenset()
    ) -> None:
        """`exact`: paths to cut with `params` as given, not by what their header says."""
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "aetherfs.ops.cutter"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._out: IO[bytes] = self._proc.stdout
        # Jobs are written by a thread of their own: the child's answers fill its pipe
        # while we are still sending, and neither side may wait on the other.
        self._feeder = threading.Thread(
            target=self._feed, args=(self._proc.stdin, paths, params, exact), daemon=True
        )
        self._feeder.start()

    @staticmethod
    def _feed(
        pipe: IO[bytes], paths: list[Path], params: ChunkParams, exact: frozenset[Path]
    ) -> None:
        packed = _pack_params(params)
        forced = _pack_params(params, exact=True)
        try:
            with pipe:
                for path in paths:
                    name = os.fsencode(path)
                    pipe.write(_U32.pack(len(name)) + name + (forced if path in exact else packed))
        except (BrokenPipeError, ValueError):
            pass  # the child is gone or being stopped: the reader reports why

    def _read(self, n: int) -> bytes:
        data = self._out.read(n)
        if len(data) != n:
            code = self._proc.poll()
            raise CutterFailed(f"the chunking process stopped early (exit status {code}); retry")
        return data

    def next_file(self) -> tuple[ChunkParams, Iterator[list[int]]]:
        """The next file's chunking and its runs of chunk lengths (read them all, in turn)."""
        return _unpack_params(self._read(_PARAMS.size)), self._runs()

    def _runs(self) -> Iterator[list[int]]:
        while True:
            (count,) = _U32.unpack(self._read(4))
            if count == 0:
                return
            if count == _FAILED:
                (size,) = _U32.unpack(self._read(4))
                raise InvalidInput(self._read(size).decode(errors="replace"))
            yield list(struct.unpack(f"<{count}I", self._read(4 * count)))

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        self._out.close()
        self._feeder.join()

    def __enter__(self) -> Cutter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _serve(jobs: BinaryIO, answers: BinaryIO) -> None:
    while head := jobs.read(4):
        (size,) = _U32.unpack(head)
        path = os.fsdecode(jobs.read(size))
        default, exact = _unpack_job_params(jobs.read(_PARAMS.size))
        try:
            stream = open(path, "rb")  # noqa: SIM115 (closed below, after the answer)
        except OSError as exc:
            answers.write(_pack_params(default))
            _fail(answers, f"cannot read {path}: {exc.strerror}")
            continue
        with stream:
            params = None
            try:
                size = os.fstat(stream.fileno()).st_size
                header = stream.read(HEADER_BYTES)
                params = default if exact else choose_params(header, default, size)
                answers.write(_pack_params(params))
                stream.seek(0)
                for _, _, lengths in cut_stream(stream, params):
                    if lengths:
                        answers.write(_U32.pack(len(lengths)))
                        answers.write(struct.pack(f"<{len(lengths)}I", *lengths))
                        answers.flush()  # push seals this run while we cut the next
                answers.write(_U32.pack(0))
            except BrokenPipeError:
                raise  # push is gone: nobody to tell (see _main)
            except OSError as exc:
                if params is None:
                    answers.write(_pack_params(default))
                _fail(answers, f"cannot read {path}: {exc.strerror}")
        answers.flush()


def _fail(answers: BinaryIO, message: str) -> None:
    raw = message.encode()
    answers.write(_U32.pack(_FAILED) + _U32.pack(len(raw)) + raw)
    answers.flush()


def _main() -> int:
    # Ctrl-C reaches push's whole process group: push stops this child itself (close()).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        _serve(sys.stdin.buffer, sys.stdout.buffer)
    except BrokenPipeError:
        # push died (kill -9) or stopped reading: there is no one left to answer, and no
        # traceback to print. Python flushes stdout again at exit: point it at /dev/null.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(_main())
