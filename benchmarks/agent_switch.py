"""Time from `aetherfs tag ... stable` to the version being live on an agent, against a real
SeaweedFS; a fresh agent, then a 2% delta on an agent holding the previous version; side by
side with `rclone sync` of the plain files from the same server. Reports bytes fetched and the
agent's peak memory (VmHWM).

    .venv/bin/python -m benchmarks.agent_switch --size-mib 1024
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tests.fixtures.ports import free_port
from tests.fixtures.seaweedfs import CREDENTIALS, run_seaweedfs

FILES = 16


def make_dataset(root: Path, size: int, seed: int) -> None:
    rng = random.Random(seed)
    root.mkdir(parents=True)
    per = size // FILES
    for i in range(FILES):
        with (root / f"part-{i:02d}.bin").open("wb") as f:
            left = per
            while left:
                n = min(left, 8 << 20)
                f.write(rng.randbytes(n))
                left -= n


def delta(root: Path, fraction: float, seed: int) -> tuple[int, int]:
    """Overwrite `fraction` of the bytes in 64 KiB runs, in a quarter of the files.

    Returns the bytes changed and the total size of the files touched (what a whole-file
    sync such as rclone moves).
    """
    rng = random.Random(seed)
    files = sorted(root.iterdir())
    total = sum(p.stat().st_size for p in files)
    touched = rng.sample(files, max(1, len(files) // 4))
    changed = 0
    run = 64 << 10
    while changed < total * fraction:
        path = rng.choice(touched)
        with path.open("r+b") as f:
            f.seek(rng.randrange(0, path.stat().st_size - run))
            f.write(rng.randbytes(run))
        changed += run
    return changed, sum(p.stat().st_size for p in touched)


def cli(env: dict[str, str], *args: str) -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "aetherfs.cli.main", *args, "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


def status(sock: Path) -> Any:
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)), base_url="http://a") as c:
        return c.get("/v1/status", timeout=10).json()


def wait_live(sock: Path, manifest: str, timeout: float = 1800) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            snap = status(sock)
            live = snap["subscriptions"][0]["live"]
            if live and live["manifest"] == manifest:
                return snap
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.05)
    raise RuntimeError("not live in time")


def vm_hwm(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def start_agent(
    env: dict[str, str],
    data_root: Path,
    subscription: str,
    cache_limit: int,
    *extra: str,
    log: Path | None = None,
) -> subprocess.Popen[bytes]:
    """An agent process subscribed to one channel, polling fast, REST on a free port; peer
    exchange on loopback only (`extra` may name static peers, or `--no-peers`)."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aetherfs.cli.main",
            "agent",
            "--data-root",
            str(data_root),
            "--subscribe",
            subscription,
            "--poll-interval",
            "0.2",
            "--listen-http",
            f"127.0.0.1:{free_port()}",
            "--listen-grpc",
            "",
            "--cache-limit",
            str(cache_limit),
            # Peers stay on loopback: mDNS would leave the host (LANs: benchmarks/rollout.py).
            "--no-mdns",
            "--peer-listen",
            f"127.0.0.1:{free_port()}",
            *extra,
        ],
        env=env,
        stderr=log.open("ab") if log is not None else subprocess.DEVNULL,
    )


def rclone(env: dict[str, str], *args: str) -> float:
    started = time.monotonic()
    done = subprocess.run(["rclone", *args], env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"rclone {args}: {done.stderr[-2000:]}")
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--delta", type=float, default=0.02)
    args = parser.parse_args()
    size = args.size_mib << 20
    work = Path(tempfile.mkdtemp(prefix="agent-bench-"))
    results: dict[str, Any] = {"size_bytes": size}
    try:
        (work / "weed").mkdir()
        with run_seaweedfs(work / "weed") as server:
            store = server.store_url()
            env = {
                **os.environ,
                **CREDENTIALS,
                "HOME": str(work / "home"),
                "XDG_CONFIG_HOME": str(work / "home/config"),
                "XDG_CACHE_HOME": str(work / "home/cache"),
                "AETHERFS_STORE": store,
                "AETHERFS_S3_ENDPOINT": server.endpoint,
            }
            src = work / "src"
            make_dataset(src, size, 1)
            v1 = cli(env, "push", str(src), "team/bench:1.0.0", "--no-latest")["manifest"]
            sock = work / "root/.agent/agent.sock"
            agent = start_agent(env, work / "root", "team/bench:stable", size * 3)
            try:
                started = time.monotonic()
                cli(env, "tag", "team/bench:1.0.0", "stable")
                snap = wait_live(sock, v1)
                results["fresh"] = {
                    "seconds": round(time.monotonic() - started, 2),
                    "store_bytes": snap["bytes_by_source"]["store"],
                }
                changed, _ = delta(src, args.delta, 2)
                v2 = cli(env, "push", str(src), "team/bench:1.1.0", "--no-latest")["manifest"]
                before = snap["bytes_by_source"]["store"]
                started = time.monotonic()
                cli(env, "tag", "team/bench:1.1.0", "stable")
                snap = wait_live(sock, v2)
                results["delta"] = {
                    "changed_bytes": changed,
                    "seconds": round(time.monotonic() - started, 2),
                    "store_bytes": snap["bytes_by_source"]["store"] - before,
                }
                results["agent_peak_rss_bytes"] = vm_hwm(agent.pid)
            finally:
                agent.send_signal(signal.SIGTERM)
                agent.wait(30)

            # rclone: the same files, plain, in the same server; then sync each version.
            rc_env = {
                **env,
                "RCLONE_CONFIG_W_TYPE": "s3",
                "RCLONE_CONFIG_W_PROVIDER": "Other",
                "RCLONE_CONFIG_W_ENDPOINT": server.endpoint,
                "RCLONE_CONFIG_W_ACCESS_KEY_ID": CREDENTIALS["AWS_ACCESS_KEY_ID"],
                "RCLONE_CONFIG_W_SECRET_ACCESS_KEY": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            }
            for name in ("AWS_CA_BUNDLE", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
                rc_env.pop(name, None)  # rclone's S3 client rejects a CA bundle on plain HTTP
            remote = f"w:{server.bucket}/rclone-{server.new_prefix()}"
            shutil.rmtree(src)
            make_dataset(src, size, 1)
            rclone(rc_env, "sync", str(src), remote)
            fresh = rclone(rc_env, "sync", "--checksum", remote, str(work / "rc"))
            _, whole_files = delta(src, args.delta, 2)
            rclone(rc_env, "sync", "--checksum", str(src), remote)
            again = rclone(rc_env, "sync", "--checksum", remote, str(work / "rc"))
            results["rclone"] = {
                "fresh_seconds": round(fresh, 2),
                "delta_seconds": round(again, 2),
                "delta_bytes": whole_files,  # rclone moves every changed file whole
            }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
