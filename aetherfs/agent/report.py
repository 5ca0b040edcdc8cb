"""Report the agent's status to its hub, so the hub's fleet page is true.

Only when the agent works through a hub with an agent's token (subject `agent:ID`); each
report is the status document without the per-file read table. Failures are logged and shown
in status, and retried at the next interval: the agent keeps serving regardless.
"""

from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:
    from aetherfs.agent.daemon import Agent

REPORT_EVERY = 15.0


def _report(snap: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in snap.items() if k not in ("file_reads",)}


async def report_to_hub(agent: Agent, every: float = REPORT_EVERY) -> None:
    state = agent.state
    who: dict[str, Any] | None = None
    client: Any = None
    while who is None:
        try:
            repo = await agent.repos.get()
            client = getattr(repo, "client", None)
            if client is None:
                return  # a store, not a hub: nobody to report to
            who = await agent.disk(client.whoami)
        except Exception as exc:  # the hub is out of reach: try again later
            state.hub_report = {"last_error": str(exc)}
            await trio.sleep(every)
    subject = str(who.get("subject", ""))
    if not subject.startswith("agent:"):
        agent.log.info("hub.report.off", why=f"the token is {subject}, not an agent's")
        return
    agent_id = subject.removeprefix("agent:")
    path = f"/v1/agents/{agent_id}/status"
    while True:
        try:
            taken = time.time()
            doc = _report(state.snapshot())
            await agent.disk(functools.partial(client.request, "PUT", path, json=doc))
            state.hub_report = {
                "agent": agent_id,
                "last_ok": time.time(),
                "state_of": taken,  # the moment the reported state was read
                "last_error": None,
            }
        except Exception as exc:  # reported in status; the next interval retries
            state.hub_report = {**state.hub_report, "agent": agent_id, "last_error": str(exc)}
            agent.log.warning("hub.report.failed", error=str(exc))
        await trio.sleep(every)
