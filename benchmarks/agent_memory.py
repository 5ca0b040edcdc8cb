"""The agent's peak memory during a fresh pull of N GiB from a local store.

Generates N GiB of incompressible bytes (agent_switch.make_dataset: 16 files, seeded),
pushes them to a `file://` store, deletes the source, starts an agent and moves `stable` to the
version. While the agent pulls, its RSS is sampled from /proc/PID/status; at the end its
VmHWM (the kernel's peak resident set) is read. Everything is removed afterwards.

    .venv/bin/python -m benchmarks.agent_memory --size-gib 1
    .venv/bin/python -m benchmarks.agent_memory --size-gib 10 --work-dir /tmp

Needs about three times the size in free disk (store, cache, data root).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.agent_switch import cli, make_dataset, start_agent, status


def proc_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-gib", type=float, default=1.0)
    parser.add_argument("--work-dir", default=None, help="where to put the data (default: TMPDIR)")
    parser.add_argument("--fetch-workers", type=int, default=None)
    args = parser.parse_args()
    size = int(args.size_gib * (1 << 30))
    work = Path(tempfile.mkdtemp(prefix="agent-mem-", dir=args.work_dir)).absolute()
    results: dict[str, Any] = {"size_bytes": size}
    try:
        env = {
            **os.environ,
            "HOME": str(work / "home"),
            "XDG_CONFIG_HOME": str(work / "home/config"),
            "XDG_CACHE_HOME": str(work / "home/cache"),
            "XDG_DATA_HOME": str(work / "home/data"),
            "AETHERFS_STORE": (work / "store").as_uri(),
        }
        src = work / "src"
        started = time.monotonic()
        make_dataset(src, size, seed=1)  # 16 files of incompressible bytes
        results["generate_seconds"] = round(time.monotonic() - started, 1)
        started = time.monotonic()
        manifest = cli(env, "push", str(src), "team/mem:1.0.0", "--no-latest")["manifest"]
        results["push_seconds"] = round(time.monotonic() - started, 1)
        shutil.rmtree(src)  # the disk holds store + cache + data root, not the source too
        sock = work / "root/.agent/agent.sock"
        extra = ["--fetch-workers", str(args.fetch_workers)] if args.fetch_workers else []
        agent = start_agent(env, work / "root", "team/mem:stable", size * 2, *extra)
        try:
            deadline = time.monotonic() + 60
            while not sock.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(1.0)
            results["idle_rss_bytes"] = proc_kib(agent.pid, "VmRSS") * 1024
            started = time.monotonic()
            cli(env, "tag", "team/mem:1.0.0", "stable")
            samples: list[tuple[float, int, int]] = []  # (seconds, bytes done, rss)
            while True:
                snap: Any = None
                with contextlib.suppress(httpx.HTTPError, OSError):
                    snap = status(sock)
                rss = proc_kib(agent.pid, "VmRSS") * 1024
                ch = snap["subscriptions"][0] if snap else None
                done = (ch.get("progress") or {}).get("bytes_done", 0) if ch else 0
                samples.append((time.monotonic() - started, done, rss))
                if ch and ch["live"] and ch["live"]["manifest"] == manifest:
                    break
                if agent.poll() is not None:
                    raise RuntimeError(f"the agent exited {agent.returncode}")
                if time.monotonic() - started > 3600:
                    raise RuntimeError("not live within an hour")
                time.sleep(0.5)
            results["pull_seconds"] = round(time.monotonic() - started, 1)
            results["store_bytes"] = snap["bytes_by_source"]["store"]
            results["peak_rss_bytes"] = proc_kib(agent.pid, "VmHWM") * 1024
            results["max_sampled_rss_bytes"] = max(s[2] for s in samples)
            # RSS at each quarter of the pull: flat means it does not grow with the size.
            quarters = []
            for q in (0.25, 0.5, 0.75, 1.0):
                hit = next((s for s in samples if s[1] >= q * size), samples[-1])
                quarters.append({"fraction": q, "rss_bytes": hit[2]})
            results["rss_by_progress"] = quarters
        finally:
            agent.send_signal(signal.SIGTERM)
            agent.wait(60)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
