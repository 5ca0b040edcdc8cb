"""The LAN harness: built and removed fast, nothing left behind, leftovers of crashed runs swept."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from tests.fixtures.netns import (
    LOCK_DIR,
    WEED_BASE,
    Lan,
    WeedPorts,
    build_lan,
    run_seaweedfs_in,
    sweep,
    weed_ports,
    weed_sockets,
)
from tests.fixtures.seaweedfs import CREDENTIALS, SeaweedFS


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
        # Its lock names its /24: a LAN built meanwhile picks another.
        assert (LOCK_DIR / f"{prefix}.lock").read_text().strip() == str(lan.network)
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


def test_an_isolated_host_goes_silent_and_rejoins() -> None:
    serve = (
        "import socket; s=socket.create_server(('0.0.0.0', 7070)); print('up', flush=True)\n"
        "while True: c,_=s.accept(); c.sendall(b'hello'); c.close()"
    )
    probe = (
        "import socket,sys\n"
        "try: print(socket.create_connection((sys.argv[1], 7070), 1).recv(9))\n"
        "except OSError as e: print(type(e).__name__)"
    )
    with build_lan(["a", "b"]) as lan:
        server = lan.start("a", [sys.executable, "-c", serve])
        assert server.stdout is not None and server.stdout.readline() == b"up\n"
        address = lan["a"].address

        def ask() -> str:
            return lan.run("b", [sys.executable, "-c", probe, address]).stdout.strip()

        assert ask() == "b'hello'"
        lan.isolate("a")
        assert ask() == "TimeoutError"  # no answer at all, not a refusal
        lan.rejoin("a")
        assert ask() == "b'hello'"


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
def test_two_lans_each_with_seaweedfs_at_once_keep_their_own_objects(tmp_path: Path) -> None:
    """Each LAN's SeaweedFS is its own: on shared default ports the second server took the
    first's sockets in /tmp, and the first then sent its writes to the other LAN's volume
    server (every PUT failed). Both serve the test (root side) and their own hosts."""
    with contextlib.ExitStack() as stack:
        servers = []
        for name in ("one", "two"):
            lan = stack.enter_context(build_lan(["a"], store=True, store_rate="100mbit"))
            (tmp_path / name).mkdir()
            s3 = stack.enter_context(run_seaweedfs_in(lan, tmp_path / name))
            servers.append((name, lan, s3))
        ports = [_ports_of(s3) for _, _, s3 in servers]
        assert ports[0] != ports[1]
        for name, _, s3 in servers:  # both written while both run
            for i in range(3):
                s3_client(s3).put_object(Bucket=s3.bucket, Key=f"{name}-{i}", Body=name.encode())
        for name, lan, s3 in servers:
            listed = s3_client(s3).list_objects_v2(Bucket=s3.bucket)["Contents"]
            assert sorted(o["Key"] for o in listed) == sorted(
                [f"{name}-{i}" for i in range(3)] + ["probe"]
            )
            url = f"{s3.endpoint}/{s3.bucket}/{name}-1"
            assert httpx.get(url).content == name.encode()  # from the root side
            get = f"import urllib.request; print(urllib.request.urlopen({url!r}).read())"
            out = lan.run("a", [sys.executable, "-c", get]).stdout
            assert out.strip() == repr(name.encode())  # anonymous read from a host
        # A host of one LAN does not reach the other LAN's store.
        other = f"{servers[1][2].endpoint}/{servers[1][2].bucket}/two-1"
        get = f"import urllib.request; urllib.request.urlopen({other!r}, timeout=2)"
        done = servers[0][1].run("a", [sys.executable, "-c", get], check=False)
        assert done.returncode != 0 and "unreachable" in done.stderr
        assert all(weed_sockets(p) for p in ports)
        assert all((LOCK_DIR / f"weed{_slot(p)}.lock").exists() for p in ports)
    for p in ports:  # stopped: its sockets and its slot are gone
        assert weed_sockets(p) == []
        assert not (LOCK_DIR / f"weed{_slot(p)}.lock").exists()


def _ports_of(s3: SeaweedFS) -> WeedPorts:
    return weed_ports(_slot_of(int(s3.endpoint.rsplit(":", 1)[1])))


def _slot_of(s3_port: int) -> int:
    return (s3_port - WEED_BASE) // 10


def _slot(ports: WeedPorts) -> int:
    return _slot_of(ports.s3)


def s3_client(s3: SeaweedFS) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=s3.endpoint,
        region_name="us-east-1",
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


def test_without_the_rights_for_namespaces_it_fails_and_says_why() -> None:
    check = "from tests.fixtures.netns import check_netns; check_netns()"
    done = subprocess.run(
        ["setpriv", "--bounding-set=-all", "--inh-caps=-all", sys.executable, "-c", check],
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0
    assert "NetnsUnavailable" in done.stderr and "need root" in done.stderr
