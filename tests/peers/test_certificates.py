"""The hub-enrolled deployment on the LAN: a hub in its own namespace, agents enrolled with join
tokens (`aetherfs agent --hub URL --join-token T`) in theirs. They admit each other by the
certificates the hub signed and trade; a peer presenting an expired certificate and one whose
certificate was revoked are refused by every one of them.

The revoked case holds whether or not agents pass revocation lists to each other: each agent
fetches the hub's list (every 0.5 s here) and is restarted once it holds it, so the list is in
use from its first connection either way."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from aetherfs.agent.identity import load_identity
from aetherfs.agent.membership import Enrolment, load_enrolment, save_enrolment
from aetherfs.config import Settings
from aetherfs.core.fleet_certs import AgentCertificate
from aetherfs.hub.fleet import fleet_signing_key
from aetherfs.repository.store_backed import open_keyring
from aetherfs.store.open import open_store
from tests.conftest import Cli
from tests.fixtures.netns import wait_for
from tests.peers.conftest import (
    DATASET,
    PEER_PORT,
    STABLE,
    Fleet,
    StoreLan,
    converged,
    new_fleet,
    write_version,
)

HONEST = ["c0", "c1", "c2"]
HUB_PORT = 8440
DAY = 86400.0
pytestmark = pytest.mark.slow


@dataclass
class HubFleet:
    fleet: Fleet
    url: str
    admin: dict[str, str]

    def join_token(self) -> str:
        made = httpx.post(f"{self.url}/v1/fleet/join-tokens", json={}, headers=self.admin)
        made.raise_for_status()
        return str(made.json()["join_token"])

    def grant_read(self, subject: str) -> None:
        done = httpx.put(
            f"{self.url}/v1/datasets/{DATASET}/-/grants",
            json={"subject": subject, "role": "read"},
            headers=self.admin,
        )
        assert done.status_code == 200, done.text

    def enrol(self, state: Path, name: str) -> Enrolment:
        """Enrol an identity made in `state` the way an agent does, and keep it there."""
        identity = load_identity(state)
        doc = httpx.post(
            f"{self.url}/v1/fleet/enrol",
            json={
                "join_token": self.join_token(),
                "agent": name,
                "public_key": identity.public_key.hex(),
            },
        ).json()
        enrolment = Enrolment(
            hub=self.url,
            fleet=doc["fleet"],
            fleet_public=bytes.fromhex(doc["fleet_public_key"]),
            certificate=base64.b64decode(doc["certificate"]),
            token=doc["token"],
        )
        save_enrolment(state, enrolment)
        return enrolment


def hub_agent_cli(fleet: Fleet, url: str, name: str) -> Cli:
    """A host with no store and no keyring: only the hub's address."""
    home = fleet.root / f"{name}-home"
    env = {k: v for k, v in fleet.cli.env.items() if k != "AETHERFS_STORE"}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / "config"),
        XDG_DATA_HOME=str(home / "data"),
        XDG_CACHE_HOME=str(home / "cache"),
        AETHERFS_HUB=url,
    )
    return Cli(env, home)


@pytest.fixture(scope="module")
def hub_fleet(store_lan: StoreLan, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubFleet]:
    fleet = new_fleet(store_lan, tmp_path_factory.mktemp("hub-fleet"))
    admin = fleet.cli("hub", "token", "create", "--name", "ops", "--admin").out.strip()
    address = f"{fleet.lan['hub'].address}:{HUB_PORT}"
    hub = fleet.lan.start(
        "hub",
        [sys.executable, "-m", "aetherfs.cli.main", "hub", "--listen", address, "--insecure"],
        env=fleet.cli.env,
        stderr=subprocess.STDOUT,
    )
    assert hub.stdout is not None
    lines = []
    while not (lines and lines[-1].startswith(b"hub listening on ")):
        line = hub.stdout.readline()
        assert line, b"".join(lines)
        lines.append(line)
    running = HubFleet(fleet, lines[-1].split()[-1].decode(), {"Authorization": f"Bearer {admin}"})
    for i in range(len(HONEST)):
        running.grant_read(f"agent:edge-{i}")
    yield running
    fleet.lan.stop(hub)


def refused(snap: dict[str, Any], address: str, text: str) -> bool:
    """Whether `snap` (an agent's status) lists a refusal of `address` that says `text`."""
    return any(
        r["address"].startswith(f"{address}:")
        and r["reason"] == "not_admitted"
        and text in r["text"]
        for r in snap["peer_exchange"]["refused"]
    )


def test_enrolled_agents_trade_and_refuse_a_revoked_and_an_expired_certificate(
    hub_fleet: HubFleet, tmp_path: Path
) -> None:
    fleet, lan = hub_fleet.fleet, hub_fleet.fleet.lan
    # A peer's certificate, then revoked by a hub admin: the hub's list is at seq 1.
    revoked_state = tmp_path / "revoked"
    hub_fleet.enrol(revoked_state, "edge-revoked")
    done = httpx.post(
        f"{hub_fleet.url}/v1/fleet/revocations",
        json={"agent": "edge-revoked"},
        headers=hub_fleet.admin,
    )
    assert done.status_code == 200, done.text
    # A certificate of this fleet, signed with its key, that expired a day ago (no clock is
    # moved: it is dated so).
    expired_state = tmp_path / "expired"
    fresh = hub_fleet.enrol(expired_state, "edge-expired")
    settings = Settings.from_env(fleet.cli.env)
    keyring = open_keyring(
        open_store(settings.store_url, settings.s3_endpoint, settings.s3_region),
        settings.keys_dir,
        settings.keys_path,
        create=False,
    )
    cert = fresh.cert
    old = AgentCertificate(
        cert.fleet,
        cert.agent,
        cert.key,
        cert.serial + "-old",
        time.time() - 2 * DAY,
        time.time() - DAY,
    )
    save_enrolment(
        expired_state,
        Enrolment(
            fresh.hub,
            fresh.fleet,
            fresh.fleet_public,
            old.sign(fleet_signing_key(keyring)),
            fresh.token,
        ),
    )

    honest = []
    for i, host in enumerate(HONEST):
        cli = hub_agent_cli(fleet, hub_fleet.url, host)
        honest.append(
            fleet.agent(
                host,
                *("--join-token", hub_fleet.join_token(), "--agent-name", f"edge-{i}"),
                *("--subscribe", STABLE, "--revocation-interval", "0.5"),
                cli=cli,
            )
        )
    for agent in honest:
        agent.start(wait=False)
    for agent in honest:  # enrolled, and holding the hub's list (kept in fleet.json)
        assert wait_for(partial(holds_revocations, agent.data_root / ".agent"), 30), agent.log()
    for agent in honest:  # restarted on the kept certificate and list: no join token
        lan.stop(agent.proc)  # type: ignore[arg-type]
        agent.args[:2] = []
    for agent in honest:
        agent.start(wait=False)
    for agent in honest:
        agent.wait_started()
        assert agent.status()["peer_exchange"]["enabled"], agent.status()["peer_exchange"]
    assert wait_for(lambda: all(a.open_peers() >= 2 for a in honest), 30), {
        a.host: a.status()["peers"] for a in honest
    }

    peers = [a for agent in honest for a in ("--peer", f"{agent.address}:{PEER_PORT}")]
    presenters = {}
    for host, state in (("r", revoked_state), ("e", expired_state)):
        argv = [
            sys.executable, "-m", "tests.fixtures.hostile_peer", "--enrolment", str(state),
            "--listen", f"{lan[host].address}:{PEER_PORT}", *peers,
        ]  # fmt: skip
        presenters[host] = lan.start(host, argv, env=fleet.cli.env, stderr=subprocess.STDOUT)
    for proc in presenters.values():
        assert proc.stdout is not None
        assert json.loads(proc.stdout.readline())["port"] == PEER_PORT
    for agent in honest:
        agent.wait_for(
            lambda s: (
                refused(s, lan["r"].address, "was revoked")
                and refused(s, lan["e"].address, "has expired")
            ),
            "the revoked and the expired certificate refused",
        )

    src = tmp_path / "v1"
    write_version(src, 11, 12)
    manifest = fleet.push(src, f"{DATASET}:1.0.0", "stable")
    converged(honest, manifest, src)
    fetched = [a.fetch(manifest) for a in honest]
    assert sum(f["bytes"]["peers"] for f in fetched if f) > 0, fetched  # they traded
    for agent in honest:
        agents = {p["agent"] for p in agent.status()["peers"] if p["state"] == "open"}
        assert agents == {f"edge-{i}" for i in range(len(HONEST))} - {agent.args[1]}, agents
    for proc in presenters.values():
        assert proc.poll() is None
        lan.kill(proc)
    for agent in honest:
        lan.stop(agent.proc)  # type: ignore[arg-type]


def holds_revocations(state: Path) -> bool:
    try:
        kept = load_enrolment(state)
    except Exception:
        return False  # being written
    return kept is not None and kept.revocation_list is not None and kept.revocation_list.seq >= 1
