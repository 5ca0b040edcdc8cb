"""protocol/peer.md's state tables are the connection's tables: rendered here from the code,
they must appear in the spec word for word (so the two cannot drift apart)."""

from __future__ import annotations

from pathlib import Path

from aetherfs.protocol.connection import FRAME_KINDS, RECEIVE, SEND, State
from aetherfs.protocol.messages import SPECS

SPEC = Path(__file__).parents[2] / "protocol" / "peer.md"


def render() -> str:
    lines = [
        "| state | frame kinds accepted | message received | next state |",
        "| --- | --- | --- | --- |",
    ]
    for state in State:
        kinds = ", ".join(k.name for k in sorted(FRAME_KINDS.get(state, ())))
        received = sorted((t, nxt) for (s, t), nxt in RECEIVE.items() if s is state)
        if not received:
            lines.append(f"| {state.value} | {kinds or '-'} | - | - |")
        for t, nxt in received:
            lines.append(
                f"| {state.value} | {kinds} | {t.name} (since v{SPECS[t].since}) | {nxt.value} |"
            )
    lines += ["", "| state | a caller may send |", "| --- | --- |"]
    for state in State:
        sendable = ", ".join(t.name for t in sorted(SEND.get(state, ())))
        lines.append(f"| {state.value} | {sendable or '-'} |")
    return "\n".join(lines)


def test_spec_tables_match_the_code() -> None:
    assert render() in SPEC.read_text(), "re-render the tables into protocol/peer.md:\n" + render()
