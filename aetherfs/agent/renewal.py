"""When to renew a certificate and when to try again: pure functions of the certificate and
`now`, so the schedule is tested with explicit times.

A certificate is renewed once between 50% and 70% of its lifetime has passed. The point in
that window is fixed per certificate (derived from its serial), so a fleet enrolled at once
does not renew at once, and an agent restarted keeps the same plan. A failed attempt is
retried with doubling waits, never later than the certificate's expiry allows.
"""

from __future__ import annotations

import blake3

from aetherfs.core.fleet_certs import AgentCertificate

RENEW_FROM = 0.5  # fraction of the lifetime after which renewal starts
RENEW_SPREAD = 0.2  # renewal times spread over this much more of the lifetime
FIRST_RETRY = 30.0  # seconds after a failed renewal
MAX_RETRY = 3600.0


def jitter(serial: str) -> float:
    """A number in [0, 1) fixed by the certificate's serial."""
    digest = blake3.blake3(b"aetherfs renewal jitter\0" + serial.encode()).digest(8)
    return int.from_bytes(digest, "big") / 2**64


def renew_at(cert: AgentCertificate) -> float:
    """When this certificate should be replaced by a fresh one."""
    lifetime = max(0.0, cert.expires - cert.issued)
    return cert.issued + lifetime * (RENEW_FROM + RENEW_SPREAD * jitter(cert.serial))


def renewal_due(cert: AgentCertificate, now: float) -> bool:
    return now >= renew_at(cert)


def retry_at(cert: AgentCertificate, now: float, failures: int) -> float:
    """After `failures` failed attempts in a row (at least 1): when to try again. The wait
    doubles from FIRST_RETRY up to MAX_RETRY, and is cut so that a few more attempts fit
    before the certificate expires."""
    wait = min(MAX_RETRY, FIRST_RETRY * 2.0 ** max(0, failures - 1))
    left = cert.expires - now
    if left > 0:
        wait = min(wait, max(FIRST_RETRY / 6, left / 4))
    return now + wait
