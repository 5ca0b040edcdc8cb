"""Hub serving figures, side by side with SeaweedFS's own S3 endpoint.

- tag lookups per second (GET one tag's signed record) against GET of the same tag object
  straight from S3;
- file-server throughput, whole file and random 64 KiB ranges, against GETs of the same
  plaintext stored as one S3 object.

The hub runs as its own process (`aetherfs hub`), over a SeaweedFS bucket; this process is the
load generator (httpx, N concurrent requests). Everything stays on 127.0.0.1, bounded in count
and time. Run: `python -m benchmarks.hub_serving [--seconds 5] [--size-mib 64]`; it prints a
Markdown table for docs/benchmarks.md. `--only ranges --profile FILE` samples the hub with
py-spy during that load (collapsed stacks, one line per stack).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import boto3
import httpx
import trio

from tests.fixtures.seaweedfs import CREDENTIALS, run_seaweedfs

CONCURRENCY = 32


def _env(home: Path, store: str, endpoint: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
        "AETHERFS_STORE": store,
        "AETHERFS_S3_ENDPOINT": endpoint,
        **CREDENTIALS,
    }


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "aetherfs.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


async def _rate(seconds: float, call: Callable[[], Awaitable[int]]) -> tuple[float, float]:
    """(requests per second, bytes per second) with CONCURRENCY callers for `seconds`."""
    count = 0
    total = 0
    deadline = trio.current_time() + seconds

    async def worker() -> None:
        nonlocal count, total
        while trio.current_time() < deadline:
            total += await call()
            count += 1

    started = time.monotonic()
    async with trio.open_nursery() as nursery:
        for _ in range(CONCURRENCY):
            nursery.start_soon(worker)
    elapsed = time.monotonic() - started
    return count / elapsed, total / elapsed


async def measure(
    hub_url: str, token: str, s3_url: str, size: int, seconds: float, only: str | None
) -> list[str]:
    rng = random.Random(1)
    auth = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=CONCURRENCY * 2)
    rows = []
    async with httpx.AsyncClient(limits=limits, timeout=60) as http:
        tag_url = f"{hub_url}/v1/datasets/bench/data/-/tags/stable"
        s3_tag = f"{s3_url}/tags/bench/data/@stable"
        file_url = f"{hub_url}/files/bench/data/stable/payload.bin"
        s3_file = f"{s3_url}-plain/payload.bin"

        async def get(url: str, headers: dict[str, str] | None = None) -> int:
            r = await http.get(url, headers=headers)
            assert r.status_code in (200, 206), (url, r.status_code, r.text[:200])
            return len(r.content)

        def ranged(url: str, headers: dict[str, str]) -> Callable[[], Awaitable[int]]:
            async def call() -> int:
                start = rng.randrange(0, size - 65536)
                return await get(url, {**headers, "Range": f"bytes={start}-{start + 65535}"})

            return call

        if only in (None, "tags"):
            hub_tags, _ = await _rate(seconds, lambda: get(tag_url, auth))
            s3_tags, _ = await _rate(seconds, lambda: get(s3_tag))
            rows.append(f"| tag lookups | {hub_tags:,.0f} req/s | {s3_tags:,.0f} req/s |")
        if only in (None, "whole"):
            _, hub_whole = await _rate(seconds, lambda: get(file_url, auth))
            _, s3_whole = await _rate(seconds, lambda: get(s3_file))
            rows.append(
                f"| whole {size >> 20} MiB file | {hub_whole / 2**20:,.0f} MiB/s | "
                f"{s3_whole / 2**20:,.0f} MiB/s |"
            )
        if only in (None, "ranges"):
            hub_ranges, _ = await _rate(seconds, ranged(file_url, auth))
            s3_ranges, _ = await _rate(seconds, ranged(s3_file, {}))
            rows.append(
                f"| random 64 KiB ranges | {hub_ranges:,.0f} req/s | {s3_ranges:,.0f} req/s |"
            )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument(
        "--only", choices=["tags", "whole", "ranges"], help="measure only this (default: all)"
    )
    parser.add_argument(
        "--profile",
        metavar="FILE",
        type=Path,
        help="sample the hub with py-spy (pip install py-spy) into FILE (collapsed stacks)",
    )
    args = parser.parse_args()
    size = args.size_mib << 20
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "weed").mkdir()
        rows = _run(Path(tmp), size, args.seconds, args.only, args.profile)
    print(f"| {CONCURRENCY} concurrent requests | hub | SeaweedFS S3 |")
    print("| --- | --- | --- |")
    for row in rows:
        print(row)
    print(json.dumps({"concurrency": CONCURRENCY, "seconds": args.seconds}))
    return 0


def _run(
    root: Path, size: int, seconds: float, only: str | None, profile: Path | None
) -> list[str]:
    with run_seaweedfs(root / "weed") as weed:
        prefix = weed.new_prefix()
        env = _env(root / "home", f"s3://{weed.bucket}/{prefix}", weed.endpoint)
        src = root / "src"
        src.mkdir()
        payload = random.Random(2).randbytes(size)
        (src / "payload.bin").write_bytes(payload)
        _cli(env, "push", str(src), "bench/data:1.0.0", "--tag", "stable")
        token = _cli(env, "hub", "token", "create", "--name", "bench", "--admin").strip()
        s3 = boto3.client("s3", endpoint_url=weed.endpoint, region_name="us-east-1")
        s3.put_object(Bucket=weed.bucket, Key=f"{prefix}-plain/payload.bin", Body=payload)
        hub = subprocess.Popen(
            [sys.executable, "-m", "aetherfs.cli.main", "hub", "--listen", "127.0.0.1:0"],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert hub.stdout is not None
            line = hub.stdout.readline()
            hub_url = line.split()[-1]
            spy = None
            if profile is not None:
                spy = subprocess.Popen(
                    [
                        "py-spy",
                        "record",
                        "--gil",
                        "--format",
                        "raw",
                        "--pid",
                        str(hub.pid),
                        "-o",
                        str(profile),
                    ]
                )
            rows = trio.run(
                measure,
                hub_url,
                token,
                f"{weed.endpoint}/{weed.bucket}/{prefix}",
                size,
                seconds,
                only,
            )
            if spy is not None:
                spy.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
                spy.wait(60)
            return rows
        finally:
            hub.terminate()
            hub.wait(10)


if __name__ == "__main__":
    sys.exit(main())
