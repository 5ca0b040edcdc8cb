"""The agent's peak memory during a fresh pull of N GiB from a local store.

Generates N GiB of incompressible bytes (agent_switch.make_dataset: 16 files, seeded),
pushes them to a `file://` store, deletes the source, starts an agent and moves `stable` to the
version. While the agent pulls, its RSS is sampled from /proc/PID/status; at the end its
VmHWM (the kernel's peak resident set) is read. Everything is removed afterwards.

    .venv/bin/python -m benchmarks.agent_memory --size-gib 1
    .venv/bin/python -m benchmarks.agent_memory --size-gib 10 --work-dir /tmp
    .venv/bin/python -m benchmarks.agent_memory --size-gib 4 --agents 2   # while trading

With `--agents 2`, two agents on loopback (each the other's static peer, no mDNS) are moved to
the version at once, so they split the store reads and trade the rest: each one's peak is
its memory while it trades.

Needs about three times the size in free disk (store, cache, data root).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.agent_switch import cli, make_dataset, start_agent, status
from tests.fixtures.ports import free_port


def proc_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


def sample(sock: Path, manifest: str) -> tuple[int, bool]:
    """(bytes done, live) of the agent's one subscription; (0, False) while it cannot answer."""
    snap: Any = None
    with contextlib.suppress(httpx.HTTPError, OSError):
        snap = status(sock)
    ch = snap["subscriptions"][0] if snap else None
    if ch is None:
        return 0, False
    done = (ch.get("progress") or {}).get("bytes_done", 0)
    return done, bool(ch["live"] and ch["live"]["manifest"] == manifest)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-gib", type=float, default=1.0)
    parser.add_argument("--work-dir", default=None, help="where to put the data (default: TMPDIR)")
    parser.add_argument("--fetch-workers", type=int, default=None)
    parser.add_argument(
        "--agents",
        type=int,
        choices=(1, 2),
        default=1,
        help="agents' logs are kept beside the work directory (WORK-agentN.log). "
        "2: two agents on loopback, each the other's static peer, trade while they pull "
        "(the memory of an agent while it trades); 1: one agent, peers off",
    )
    args = parser.parse_args()
    size = int(args.size_gib * (1 << 30))
    work = Path(tempfile.mkdtemp(prefix="agent-mem-", dir=args.work_dir)).absolute()
    results: dict[str, Any] = {"size_bytes": size, "agents": args.agents}
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
        extra = ["--fetch-workers", str(args.fetch_workers)] if args.fetch_workers else []
        ports = [free_port() for _ in range(args.agents)]
        agents: list[subprocess.Popen[bytes]] = []
        socks = [work / f"root{i}/.agent/agent.sock" for i in range(args.agents)]
        try:
            for i in range(args.agents):
                peering = (
                    ["--no-peers"]
                    if args.agents == 1
                    else [
                        "--peer-listen", f"127.0.0.1:{ports[i]}",
                        *(a for j, p in enumerate(ports) if j != i
                          for a in ("--peer", f"127.0.0.1:{p}")),
                    ]
                )  # fmt: skip
                agents.append(
                    start_agent(
                        env,
                        work / f"root{i}",
                        "team/mem:stable",
                        size * 2,
                        *extra,
                        *peering,
                        log=work.parent / f"{work.name}-agent{i}.log",
                    )
                )
            deadline = time.monotonic() + 60
            while not all(s.exists() for s in socks) and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(2.0)  # peers connect
            results["idle_rss_bytes"] = [proc_kib(a.pid, "VmRSS") * 1024 for a in agents]
            started = time.monotonic()
            cli(env, "tag", "team/mem:1.0.0", "stable")
            # (seconds, rss) per agent; bytes done is not used: it counts the build, which
            # starts only once the swarm has fetched every block.
            samples: list[list[tuple[float, int]]] = [[] for _ in agents]
            live = [False] * len(agents)
            while not all(live):
                for i, agent in enumerate(agents):
                    if agent.poll() is not None:
                        raise RuntimeError(f"agent {i} exited {agent.returncode}")
                    _, live[i] = sample(socks[i], manifest)
                    at = time.monotonic() - started
                    samples[i].append((at, proc_kib(agent.pid, "VmRSS") * 1024))
                if time.monotonic() - started > 3600:
                    raise RuntimeError("not live within an hour")
                time.sleep(0.5)
            took = time.monotonic() - started
            results["pull_seconds"] = round(took, 1)
            per_agent = []
            for i, agent in enumerate(agents):
                snap = status(socks[i])
                quarters = []  # RSS at each quarter of the pull's time: flat means no growth
                for q in (0.25, 0.5, 0.75, 1.0):
                    hit = next((s for s in samples[i] if s[0] >= q * took), samples[i][-1])
                    quarters.append({"fraction": q, "rss_bytes": hit[1]})
                per_agent.append(
                    {
                        "bytes_by_source": snap["bytes_by_source"],
                        "bytes_sent_to_peers": sum(p["bytes_sent"] for p in snap["peers"]),
                        "peak_rss_bytes": proc_kib(agent.pid, "VmHWM") * 1024,
                        "max_sampled_rss_bytes": max(s[1] for s in samples[i]),
                        "rss_by_progress": quarters,
                    }
                )
            results["per_agent"] = per_agent
            results["peak_rss_bytes"] = max(a["peak_rss_bytes"] for a in per_agent)
        finally:
            for agent in agents:
                agent.send_signal(signal.SIGTERM)
            for agent in agents:
                agent.wait(60)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
