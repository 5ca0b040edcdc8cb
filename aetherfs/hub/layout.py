"""Where the hub keeps its own state on the store, beside the core layout (aetherfs.store.layout).

Everything lives under `hub/`, so a bare-store reader never trips over it and several hubs
over one bucket share it.
"""

from __future__ import annotations

import time

# A name rule, so it lives with the others in core; named here too for the hub's callers.
from aetherfs.core.names import check_agent_id as check_agent_id

HUB = "hub/"
TOKENS = "hub/tokens/"
ACLS = "hub/acl/"
AGENTS = "hub/agents/"
AUDIT = "hub/audit/"
UPLOADS = "hub/uploads/"


def token_key(token_hash: str) -> str:
    return f"{TOKENS}{token_hash}.json"


def acl_key(dataset: str) -> str:
    return f"{ACLS}{dataset}/@acl.json"


def uploads_prefix(dataset: str) -> str:
    return f"{UPLOADS}{dataset}/@packs/"


def upload_key(dataset: str, pack_hex: str) -> str:
    """That a writer of `dataset` sent this pack's bytes through its path (proof it holds them)."""
    return f"{uploads_prefix(dataset)}{pack_hex}"


def agent_status_key(agent_id: str) -> str:
    return f"{AGENTS}{check_agent_id(agent_id)}/status.json"


def audit_key(when: float, unique: str) -> str:
    """One object per entry, named so a lexical listing is chronological."""
    day = time.strftime("%Y/%m/%d", time.gmtime(when))
    return f"{AUDIT}{day}/{int(when * 1e9):020d}-{unique}.json"


FLEET = "hub/fleet/"
JOIN_TOKENS = "hub/fleet/join/"
CERTS = "hub/fleet/certs/"
REVOCATIONS = "hub/fleet/revocations"  # the signed revocation list, replaced by CAS


def join_token_key(token_hash: str) -> str:
    return f"{JOIN_TOKENS}{token_hash}.json"


def cert_key(serial: str) -> str:
    return f"{CERTS}{serial}.json"
