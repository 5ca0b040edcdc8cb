"""What one channel loop decides, without I/O: when to look at the tag, what to do with the
record it finds, and when to look again after a success, a missing channel or a failure.

Shaped like aioquic's connection and the peer planner (`aetherfs/planner/`): every entry point
takes `now` (seconds on the driver's clock: `trio.current_time()` in the agent, the model's in
the fleet simulator), `get_timer()` says when it next wants to be woken, and randomness (the
jitter that keeps a fleet from polling in step) comes from a `random.Random` passed in. It never
reads a clock, sleeps or touches a store, so tests run hours of loop time in milliseconds.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from aetherfs.core.ids import ManifestId

POLL_JITTER = 0.2  # each poll waits the interval +-20%: a fleet started together drifts apart
BACKOFF_LIMIT = 20  # doublings at most (the cap, retry_max, is reached long before)

# What a channel is doing, as status shows it.
STARTING, IDLE, WAITING, RETRYING = "starting", "idle", "waiting", "retrying"


@dataclass(frozen=True, slots=True)
class Timing:
    """The loop's intervals (from `AgentConfig`), in seconds."""

    poll_interval: float
    retry_max: float
    jitter: float = POLL_JITTER


@dataclass(frozen=True, slots=True)
class Wake:
    """Wake-ups gathered since the loop last looked: `look` asks for a check whatever the tag
    holds (an API call, a reconnect); `seq` is the highest tag seq a watcher saw move."""

    look: bool = False
    seq: int = 0

    def merge(self, other: Wake) -> Wake:
        return Wake(self.look or other.look, max(self.seq, other.seq))


@dataclass(frozen=True, slots=True)
class UpToDate:
    """The channel's link already names the record's manifest."""


@dataclass(frozen=True, slots=True)
class MakeLive:
    """Build the version (or check the one retained on disk), then switch the channel to it."""

    manifest_id: ManifestId
    # False: a retained version is on disk; check it before it goes live. The driver asks the
    # disk again under the manifest's lock (another loop may be building the same version).
    build: bool


Action = UpToDate | MakeLive


@dataclass(frozen=True, slots=True)
class Next:
    """When the loop looks again, and what it is doing until then."""

    at: float
    state: str
    attempt: int  # failures in a row (0 after a clean check or a missing channel)


class ChannelDecisions:
    """One subscription's decisions. The first check is due at once."""

    def __init__(self, timing: Timing, rng: random.Random, now: float) -> None:
        self.timing = timing
        self.rng = rng
        self.failures = 0
        self.highest_seq = 0  # of the record last accepted: older watch events are ignored
        self.state = STARTING
        self._timer: float | None = now

    def get_timer(self) -> float | None:
        """When a check is due next; None while one is running (its outcome sets the next)."""
        return self._timer

    def handle_wake(self, wake: Wake, now: float) -> bool:
        """A watcher or the API woke the loop. True if that makes a check due now."""
        if not (wake.look or wake.seq > self.highest_seq):
            return False  # an event for a record this loop already has
        if self._timer is not None:
            self._timer = min(self._timer, now)
        return True

    def handle_timer(self, now: float) -> bool:
        """True if a check is due: the driver runs it and reports its outcome."""
        if self._timer is None or now < self._timer:
            return False
        self._timer = None
        return True

    def handle_record(
        self, seq: int, manifest_id: ManifestId, live: ManifestId | None, on_disk: bool
    ) -> Action:
        """The tag's record, once the trusted tag state accepted it (signature checked, seq
        never back): what to do about it."""
        self.highest_seq = max(self.highest_seq, seq)
        if live == manifest_id:
            return UpToDate()
        return MakeLive(manifest_id, build=not on_disk)

    def handle_checked(self, now: float) -> Next:
        """The check (and any switch) went through: poll again in about one interval."""
        self.failures = 0
        return self._wait(now + self._poll_delay(), IDLE)

    def handle_missing(self, now: float) -> Next:
        """The channel (or its dataset) does not exist yet: nothing is wrong, so no backoff;
        look again in about one interval (a watcher's event for it wakes the loop sooner)."""
        self.failures = 0
        return self._wait(now + self._poll_delay(), WAITING)

    def handle_failure(self, now: float) -> Next:
        """A check failed: retry after a backoff doubling from the poll interval up to
        `retry_max`, each wait drawn in its upper half so that a fleet the same outage hit
        does not come back in one burst."""
        self.failures += 1
        t = self.timing
        ceiling = min(
            t.retry_max, t.poll_interval * math.pow(2, min(self.failures - 1, BACKOFF_LIMIT))
        )
        return self._wait(now + ceiling * self.rng.uniform(0.5, 1.0), RETRYING)

    def _poll_delay(self) -> float:
        t = self.timing
        return t.poll_interval * (1.0 + t.jitter * self.rng.uniform(-1.0, 1.0))

    def _wait(self, at: float, state: str) -> Next:
        self._timer, self.state = at, state
        return Next(at, state, self.failures)
