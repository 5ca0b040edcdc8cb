"""The agent CPU benchmark: its shaping relay (a real process on loopback), and one tiny run
end to end so it cannot rot."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from benchmarks.agent_cpu import SHAPER_BURST, rate_bytes, shaper

ROOT = Path(__file__).resolve().parents[2]


def test_rates_read_as_tc_writes_them() -> None:
    assert rate_bytes("100mbit") == 12_500_000
    assert rate_bytes("12m") == 12_000_000
    assert rate_bytes("500kbit") == 62_500


def test_the_relay_carries_every_byte_at_its_rate() -> None:
    payload = os.urandom(2_000_000)
    received = bytearray()
    with socket.create_server(("127.0.0.1", 0)) as server:
        target = f"127.0.0.1:{server.getsockname()[1]}"

        def drain() -> None:
            conn, _ = server.accept()
            with conn:
                while data := conn.recv(1 << 20):
                    received.extend(data)

        reader = threading.Thread(target=drain)
        reader.start()
        rate = 10_000_000.0
        with shaper(["127.0.0.1:1", target], rate) as relays:
            started = time.monotonic()
            with socket.create_connection(("127.0.0.1", relays[(0, 1)])) as out:
                out.sendall(payload)
                out.shutdown(socket.SHUT_WR)
                reader.join(30)
            took = time.monotonic() - started
    assert bytes(received) == payload
    assert took >= (len(payload) - SHAPER_BURST) / rate * 0.9


def test_a_tiny_rollout_reports_every_agent(tmp_path: Path) -> None:
    out = tmp_path / "report.md"
    args = ["--agents", "2", "--mib", "4", "--repeat", "1", "--idle", "0.5"]
    args += ["--work", str(tmp_path), "--out", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.agent_cpu", *args],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line for line in out.read_text().splitlines() if line.startswith("| 1 | now |")]
    assert len(rows) == 1 and len(rows[0].split("|")[3].split()) == 2  # a CPU figure per agent
