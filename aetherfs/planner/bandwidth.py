"""Bandwidth caps as token buckets driven by `now`, and the agent's one policy for them."""

from __future__ import annotations

from dataclasses import dataclass

from aetherfs.errors import InvalidInput


class TokenBucket:
    """`rate` bytes per second, up to `burst` saved; None is no cap.

    A transfer may start while the balance is not negative and takes its whole size at once,
    so a 4 MiB piece passes a bucket whose burst is smaller: the balance goes into debt and the
    next start waits for it to be repaid. Over any stretch of time, bytes started are thus at
    most burst + rate x time + one transfer.
    """

    __slots__ = ("_at", "_tokens", "burst", "rate")

    def __init__(self, rate: float | None, burst: float = 0.0, now: float = 0.0) -> None:
        if rate is not None and rate <= 0:
            raise InvalidInput("a bandwidth cap is a positive number of bytes per second")
        self.rate = rate
        self.burst = max(0.0, burst)
        self._tokens = self.burst
        self._at = now

    def _refill(self, now: float) -> None:
        if self.rate is not None and now > self._at:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = max(self._at, now)

    def ready(self, now: float) -> bool:
        self._refill(now)
        return self.rate is None or self._tokens >= 0

    def take(self, now: float, size: int) -> None:
        self._refill(now)
        if self.rate is not None:
            self._tokens -= size

    def ready_at(self, now: float) -> float:
        """When the next transfer may start."""
        self._refill(now)
        if self.rate is None or self._tokens >= 0:
            return now
        return now + -self._tokens / self.rate


@dataclass(frozen=True, slots=True)
class BandwidthPolicy:
    """One per agent: caps in bytes per second (None: uncapped), each with `burst_seconds` of
    savings. Priority between subscriptions is given per version (`VersionWanted.priority`)."""

    peer_upload: float | None = None
    peer_download: float | None = None
    store_read: float | None = None
    burst_seconds: float = 1.0

    def bucket(self, rate: float | None, now: float = 0.0) -> TokenBucket:
        return TokenBucket(rate, (rate or 0.0) * self.burst_seconds, now)
