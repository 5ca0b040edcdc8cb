"""Names of agents and fleets as they travel in DNS-SD records: small value classes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from aetherfs.errors import InvalidInput

# One DNS label (the agent id is the service instance name), in characters safe everywhere.
_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")


@dataclass(frozen=True, slots=True, order=True)
class _Token:
    value: str
    kind: ClassVar[str] = "token"

    def __post_init__(self) -> None:
        if not _TOKEN.fullmatch(self.value):
            raise InvalidInput(
                f"not a valid {self.kind} id: {self.value!r} (1 to 63 letters, digits, '-' or '_',"
                " starting with a letter or digit)"
            )

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True, order=True)
class AgentId(_Token):
    """An agent's name on the LAN, unique within its fleet (for example its key's fingerprint)."""

    kind: ClassVar[str] = "agent"


@dataclass(frozen=True, slots=True, order=True)
class FleetId(_Token):
    """The fleet an agent belongs to; agents trade only within one."""

    kind: ClassVar[str] = "fleet"
