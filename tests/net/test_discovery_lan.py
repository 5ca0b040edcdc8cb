"""Discovery across real network namespaces with real mDNS: `python -m aetherfs.net.discovery`
in each host, its JSON events read back here."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.fixtures.netns import Lan, build_lan, wait_for

PORT = 7070


@dataclass
class Agent:
    """One discovery process and the events it printed, with the time each arrived."""

    name: str
    proc: subprocess.Popen[bytes]
    events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)

    def read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.events.append((time.monotonic(), json.loads(line)))

    def seen(self) -> set[str]:
        """Agents currently seen: seen and not gone since."""
        now: set[str] = set()
        for _, e in list(self.events):
            if e["event"] == "seen":
                now.add(e["agent"])
            elif e["event"] == "gone":
                now.discard(e["agent"])
        return now

    def first(self, kind: str, agent: str, after: float = 0) -> tuple[float, dict[str, Any]] | None:
        for t, e in list(self.events):
            if t >= after and e["event"] == kind and e.get("agent") == agent:
                return t, e
        return None


def start(lan: Lan, host: str, fleet: str = "f1", *extra: str) -> Agent:
    argv = [
        sys.executable, "-m", "aetherfs.net.discovery",
        "--agent-id", f"agent-{host}", "--fleet", fleet,
        "--listen", lan[host].address, "--port", str(PORT), *extra,
    ]  # fmt: skip
    agent = Agent(host, lan.start(host, argv))
    threading.Thread(target=agent.read, daemon=True).start()
    return agent


@pytest.mark.slow
def test_agents_find_each_other_a_killed_one_is_gone_within_10_s_and_comes_back() -> None:
    with build_lan(["a", "b", "c", "other"]) as lan:
        start_at = time.monotonic()
        agents = {h: start(lan, h) for h in ("a", "b", "c")}
        other = start(lan, "other", "f2")  # another fleet's agent on the same LAN
        everyone = {f"agent-{h}" for h in agents}
        assert wait_for(
            lambda: all(a.seen() == everyone - {f"agent-{n}"} for n, a in agents.items()), 10
        ), {n: a.seen() for n, a in agents.items()}
        found = time.monotonic() - start_at  # process start and zeroconf's probing included
        seen = agents["a"].first("seen", "agent-b")
        assert seen is not None and seen[1] == {
            "event": "seen",
            "agent": "agent-b",
            "fleet": "f1",
            "version": 1,
            "addresses": [lan["b"].address],
            "port": PORT,
            "source": "mdns",
        }

        killed_at = time.monotonic()
        lan.kill(agents["c"].proc)  # SIGKILL: no goodbye
        assert wait_for(lambda: "agent-c" not in agents["a"].seen() | agents["b"].seen(), 11)
        gone = [agents[h].first("gone", "agent-c") for h in ("a", "b")]
        delays = [g[0] - killed_at for g in gone if g is not None]
        assert len(delays) == 2 and max(delays) < 10, delays
        assert all(g is not None and g[1]["reason"] == "silent" for g in gone)

        restarted_at = time.monotonic()
        agents["c"] = start(lan, "c")
        assert wait_for(lambda: "agent-c" in agents["a"].seen() & agents["b"].seen(), 8)
        back = time.monotonic() - restarted_at

        # Another fleet's agent is never reported, and sees none of ours.
        assert not any(
            e.get("agent") == "agent-other" for a in agents.values() for _, e in a.events
        )
        assert other.seen() == set()
        print(f"found {found:.2f} s, gone {max(delays):.2f} s after SIGKILL, back {back:.2f} s")


@pytest.mark.slow
def test_a_graceful_stop_says_goodbye() -> None:
    with build_lan(["a", "b"]) as lan:
        a, b = start(lan, "a"), start(lan, "b")
        assert wait_for(lambda: "agent-b" in a.seen(), 10)
        stopped_at = time.monotonic()
        assert lan.stop(b.proc) == 0
        assert wait_for(lambda: a.first("gone", "agent-b") is not None, 5)
        got = a.first("gone", "agent-b")
        assert got is not None and got[1]["reason"] == "goodbye"
        # Faster than silence could tell (gone_after is 6 s): the goodbye did it.
        assert got[0] - stopped_at < 3
        print(f"gone {got[0] - stopped_at:.2f} s after SIGTERM")


@pytest.mark.slow
def test_with_multicast_blocked_static_peers_and_hub_hints_are_still_seen() -> None:
    with build_lan(["a", "b", "c", "x"]) as lan:
        lan.block_multicast("x")
        hints = [f"--static={lan['a'].address}:{PORT}", f"--hub-hint={lan['b'].address}:{PORT}"]
        x = start(lan, "x", "f1", *hints)
        agents = [start(lan, h) for h in ("a", "b", "c")]
        assert wait_for(lambda: x.seen() == {"agent-a", "agent-b"}, 10), x.events
        sources = {e["agent"]: e["source"] for _, e in x.events if e["event"] == "seen"}
        assert sources == {"agent-a": "static", "agent-b": "hub"}
        # c is not static for x, and multicast is blocked: x must not know it, nor c know x.
        time.sleep(2)  # a few probe rounds more
        assert "agent-c" not in x.seen() and "agent-x" not in agents[2].seen()
        assert agents[2].seen() == {"agent-a", "agent-b"}  # mDNS works for the others
