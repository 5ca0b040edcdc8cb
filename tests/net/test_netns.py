"""The LAN harness: built and removed fast, nothing left behind, leftovers of crashed runs swept."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import boto3
import httpx
import pytest

from tests.fixtures.netns import LOCK_DIR, Lan, build_lan, run_seaweedfs_in, sweep
from tests.fixtures.seaweedfs import CREDENTIALS


def _names(prefix: str) -> tuple[list[str], list[str]]:
    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    return (
        [line for line in ns.splitlines() if line.startswith(prefix)],
        [line for line in links.splitlines() if f": {prefix}" in line],
    )


def test_six_hosts_shaped_build_and_teardown_fast_and_leave_nothing() -> None:
    start = time.monotonic()
    with build_lan(5, rate="100mbit", store=True) as lan:
        built = time.monotonic() - start
        assert len(lan.hosts) == 6
        h0 = lan["h0"]
        qdisc = lan.run("h0", ["tc", "qdisc", "show", "dev", "eth0"]).stdout
        assert "tbf" in qdisc and "100Mbit" in qdisc
        outer = subprocess.run(
            ["tc", "qdisc", "show", "dev", h0.bridge_port], capture_output=True, text=True
        ).stdout
        assert "100Mbit" in outer  # egress towards the namespace: the other direction
        bridge = subprocess.run(
            ["ip", "-d", "link", "show", lan.bridge], capture_output=True, text=True
        ).stdout
        assert "mcast_snooping 0" in bridge
        assert "UP" in lan.run("h0", ["ip", "link", "show", "lo"]).stdout
        prefix = lan.prefix
        torn = time.monotonic()
    removed = time.monotonic() - torn
    print(f"6-namespace LAN: built in {built:.3f} s, removed in {removed:.3f} s")
    assert built < 2 and removed < 2
    assert _names(prefix) == ([], [])
    assert not (LOCK_DIR / f"{prefix}.lock").exists()


def test_hosts_reach_each_other_and_the_root_side() -> None:
    probe = (
        "import socket,sys; s=socket.create_connection((sys.argv[1], 7070), 5); print(s.recv(9))"
    )
    serve = (
        "import socket; s=socket.create_server(('0.0.0.0', 7070)); print('up', flush=True);"
        " c,_=s.accept(); c.sendall(b'hello')"
    )
    with build_lan(["a", "b"]) as lan:
        server = lan.start("a", [sys.executable, "-c", serve])
        assert server.stdout is not None and server.stdout.readline() == b"up\n"
        out = lan.run("b", [sys.executable, "-c", probe, lan["a"].address]).stdout
        assert out.strip() == "b'hello'"
        assert lan.root_address is not None
        # The test process (root namespace) reaches a host through the bridge's address.
        server = lan.start("b", [sys.executable, "-c", serve])
        assert server.stdout is not None and server.stdout.readline() == b"up\n"
        done = subprocess.run(
            [sys.executable, "-c", probe, lan["b"].address], capture_output=True, text=True
        )
        assert done.stdout.strip() == "b'hello'"


def test_teardown_on_failure_kills_processes_and_removes_everything() -> None:
    prefix = ""
    with pytest.raises(RuntimeError, match="test failed"), build_lan(2) as lan:
        prefix = lan.prefix
        proc = lan.start("h0", ["sleep", "600"])
        raise RuntimeError("test failed")
    assert proc.poll() is not None
    assert _names(prefix) == ([], [])


def test_sweep_removes_what_a_killed_run_left() -> None:
    # A run killed with SIGKILL mid-test: its LAN and its sleeping process stay behind.
    script = (
        "import os, signal, subprocess\n"
        "from tests.fixtures.netns import build_lan\n"
        "with build_lan(2) as lan:\n"
        "    quiet = subprocess.DEVNULL\n"
        "    lan.start('h0', ['sleep', '600'], stdout=quiet, stderr=quiet)\n"
        "    print(lan.prefix, flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    prefix = done.stdout.strip()
    assert done.returncode == -9 and prefix.startswith("af")
    namespaces, links = _names(prefix)
    assert len(namespaces) == 2 and links
    sweep()
    assert _names(prefix) == ([], [])
    assert not (LOCK_DIR / f"{prefix}.lock").exists()


def test_sweep_leaves_a_live_run_alone() -> None:
    with build_lan(1) as lan:
        sweep()
        assert _names(lan.prefix)[0]


def test_factory_fixture_builds_lans_removed_after_the_test(
    netns_lan: Callable[..., Lan],
) -> None:
    lan = netns_lan(["x"])
    assert lan.run("x", ["ip", "-4", "addr", "show", "eth0"]).stdout.count(lan["x"].address) == 1


@pytest.mark.slow
def test_seaweedfs_in_the_store_namespace_serves_hosts_and_the_test(tmp_path: Path) -> None:
    with (
        build_lan(["a"], store=True, store_rate="100mbit") as lan,
        run_seaweedfs_in(lan, tmp_path) as s3,
    ):
        client = boto3.client(
            "s3",
            endpoint_url=s3.endpoint,
            region_name="us-east-1",
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )
        client.put_object(Bucket=s3.bucket, Key="k", Body=b"from the root side")
        assert httpx.get(f"{s3.endpoint}/{s3.bucket}/k").content == b"from the root side"
        url = f"{s3.endpoint}/{s3.bucket}/k"
        get = f"import urllib.request; print(urllib.request.urlopen({url!r}).read())"
        out = lan.run("a", [sys.executable, "-c", get]).stdout
        assert out.strip() == "b'from the root side'"  # anonymous read from a host


def test_without_the_rights_for_namespaces_it_fails_and_says_why() -> None:
    check = "from tests.fixtures.netns import check_netns; check_netns()"
    done = subprocess.run(
        ["setpriv", "--bounding-set=-all", "--inh-caps=-all", sys.executable, "-c", check],
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0
    assert "NetnsUnavailable" in done.stderr and "need root" in done.stderr
