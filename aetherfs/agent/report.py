"""Report the agent's status to its hub, so the hub's fleet page is true.

Only when the agent works through a hub with an agent's token (subject `agent:ID`); each
report is the status document without the per-file read table. Failures are logged and shown
in status, and retried at the next interval: the agent keeps serving regardless.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import time
from collections.abc import Callable
from typing import Any

import trio

from aetherfs.agent.log import Logger
from aetherfs.agent.ports import RepoSource, StatusView

REPORT_EVERY = 15.0

# Told how reporting goes (`hub_report` in status).
Outcome = Callable[[dict[str, Any]], None]


def _report(snap: dict[str, Any]) -> dict[str, Any]:
    """The status document the hub keeps, each live version carrying the bytes its fetch took
    from each source (the fleet page draws a rollout's store and peer bytes from these)."""
    doc = {k: v for k, v in snap.items() if k not in ("file_reads",)}
    by_manifest = {f["manifest"]: f["bytes"] for f in snap.get("fetches", []) if "bytes" in f}
    for sub in doc.get("subscriptions", []):
        live = sub.get("live")
        if live and live.get("manifest") in by_manifest:
            live["bytes_by_source"] = dict(by_manifest[live["manifest"]])
    peer = _peer(snap.get("peer_exchange") or {})
    if peer is not None:
        doc["peer"] = peer  # the hub hands it to our fleet's other agents as a hint
    return doc


_FLEET = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")


def _peer(exchange: dict[str, Any]) -> dict[str, Any] | None:
    """Where peers reach this agent, in the shape the hub accepts (docs/hub.md, "Peer hints"),
    or None: a field the hub would refuse would cost the whole report."""
    address, port, fleet = exchange.get("address"), exchange.get("port"), exchange.get("fleet")
    if not (exchange.get("enabled") and isinstance(port, int) and isinstance(fleet, str)):
        return None
    try:
        ip = ipaddress.ip_address(str(address))
    except ValueError:
        return None
    usable = ip.version == 4 and not (ip.is_unspecified or ip.is_multicast or ip == _BROADCAST)
    if not usable or not 0 < port < 65536 or not _FLEET.fullmatch(fleet):
        return None
    return {"addresses": [str(ip)], "port": port, "fleet": fleet}


_BROADCAST = ipaddress.ip_address("255.255.255.255")


async def report_to_hub(
    status: StatusView,
    repos: RepoSource,
    log: Logger,
    outcome: Outcome,
    every: float = REPORT_EVERY,
) -> None:
    who: dict[str, Any] | None = None
    client: Any = None
    while who is None:
        try:
            repo = await repos.get()
            client = getattr(repo, "client", None)
            if client is None:
                return  # a store, not a hub: nobody to report to
            who = await trio.to_thread.run_sync(client.whoami)
        except Exception as exc:  # the hub is out of reach: try again later
            outcome({"last_error": str(exc)})
            await trio.sleep(every)
    subject = str(who.get("subject", ""))
    if not subject.startswith("agent:"):
        log.info("hub.report.off", why=f"the token is {subject}, not an agent's")
        return
    agent_id = subject.removeprefix("agent:")
    path = f"/v1/agents/{agent_id}/status"
    last: dict[str, Any] = {}
    while True:
        try:
            taken = time.time()
            doc = _report(status.snapshot())
            await trio.to_thread.run_sync(functools.partial(client.request, "PUT", path, json=doc))
            last = {
                "agent": agent_id,
                "last_ok": time.time(),
                "state_of": taken,  # the moment the reported state was read
                "last_error": None,
            }
        except Exception as exc:  # reported in status; the next interval retries
            last = {**last, "agent": agent_id, "last_error": str(exc)}
            log.warning("hub.report.failed", error=str(exc))
        outcome(last)
        await trio.sleep(every)
