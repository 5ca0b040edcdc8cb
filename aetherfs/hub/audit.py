"""An audit log of writes and grants, on the store: one immutable object per entry.

Writing a fresh object per entry needs no compare-and-swap, so hubs never contend on it, and
the keys sort by time (see layout.audit_key).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from aetherfs.errors import NotFound
from aetherfs.hub import layout
from aetherfs.hub.auth import Principal
from aetherfs.store.base import Store


class AuditLog:
    def __init__(self, store: Store) -> None:
        self.store = store

    def record(
        self, principal: Principal | None, action: str, dataset: str | None = None, **detail: Any
    ) -> None:
        now = time.time()
        entry = {
            "time": now,
            "subject": principal.subject if principal else "cli",
            "via": principal.via if principal else "store",
            "action": action,
            "dataset": dataset,
            "detail": detail,
        }
        self.store.put(layout.audit_key(now, uuid.uuid4().hex[:12]), json.dumps(entry).encode())

    def entries(self, day: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        """Newest last; `day` as YYYY-MM-DD narrows the listing (default: today, UTC)."""
        day = day or time.strftime("%Y-%m-%d", time.gmtime())
        prefix = f"{layout.AUDIT}{day.replace('-', '/')}/"
        keys = list(self.store.list(prefix))[-limit:]
        found = []
        for key in keys:
            try:
                found.append(json.loads(self.store.get(key)))
            except NotFound:
                continue
        return found
