"""Synthetic versions and a tiny discrete-event LAN that drives real planners."""

from __future__ import annotations

import functools
import hashlib
import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from aetherfs.core.blocklist import BlockList, pack_record
from aetherfs.core.blocks import BlockRef
from aetherfs.core.chunking import ChunkParams
from aetherfs.core.ids import BlockId, ManifestId, PackId
from aetherfs.core.manifest import FILE, FileEntry, Manifest
from aetherfs.planner import (
    STORE,
    Action,
    Assign,
    Bitfield,
    Cancel,
    DropPeer,
    Event,
    FetchPlanner,
    PeerBitfield,
    PeerGone,
    PeerHave,
    PeerId,
    PeerJoined,
    PieceArrived,
    PieceFailed,
    PieceRef,
    PieceTable,
    PlannerConfig,
    VersionWanted,
)

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB


def digest(*parts: object) -> bytes:
    return hashlib.blake2b(repr(parts).encode(), digest_size=32).digest()


def ref(pack: int, offset: int, size: int, name: object = None) -> BlockRef:
    block = name if name is not None else (pack, offset)
    return BlockRef(
        BlockId(digest("block", block)),
        digest("key", block),
        size,
        digest("plain", block),
        size,
        PackId(digest("pack", pack)),
        offset,
    )


def contiguous_refs(packs: int, per_pack: int, size: int = 64 * KiB) -> list[BlockRef]:
    return [ref(p, i * size, size) for p in range(packs) for i in range(per_pack)]


def table_of(pieces: int, manifest: str = "v1", piece_blocks: int = 4) -> PieceTable:
    """A version of `pieces` pieces of `piece_blocks` 1 MiB blocks each (4 MiB pieces)."""
    refs = contiguous_refs(1, pieces * piece_blocks, size=1 * MiB)
    return PieceTable.of_refs(ManifestId(digest("manifest", manifest)), refs)


@functools.cache
def big_manifest(total: int, block: int = 64 * KiB, pack: int = 16 * MiB) -> Manifest:
    """One file of `total` bytes in `block`-sized blocks, packed `pack` bytes a pack, its
    records built straight as bytes (no BlockRef per block). Made once per session."""
    per_pack = pack // block

    def tagged(tag: bytes, n: int) -> bytes:
        return tag + n.to_bytes(31, "big")

    records = b"".join(
        pack_record(
            tagged(b"b", i),
            tagged(b"k", i),
            tagged(b"d", i),
            tagged(b"p", i // per_pack),
            block,
            block,
            (i % per_pack) * block,
        )
        for i in range(total // block)
    )
    entry = FileEntry("big.bin", FILE, size=total, blocks=BlockList.from_records(records))
    return Manifest("team/big", 0.0, ChunkParams(), (entry,))


def peer(n: int) -> PeerId:
    return PeerId(digest("peer", n))


@dataclass
class Lan:
    """N agents on one LAN: each a real FetchPlanner; transfers take modelled time.

    The store serves one piece in `store_time` seconds per read (reads run in parallel up to
    each planner's limit); a peer sends a piece in `peer_time`. An agent announces each piece
    it gets to every other agent `announce_delay` later. Agents in `silent` never answer peer
    requests; agents in `corrupt` answer with bad blocks.
    """

    table: PieceTable
    agents: int
    config: PlannerConfig = field(default_factory=PlannerConfig)
    store_time: float = 0.5
    peer_time: float = 0.2
    announce_delay: float = 0.01
    silent: set[int] = field(default_factory=set)
    corrupt: set[int] = field(default_factory=set)
    gone: set[int] = field(default_factory=set)
    stuck: set[int] = field(default_factory=set)  # their store reads never finish

    def __post_init__(self) -> None:
        self.ids = [peer(n) for n in range(self.agents)]
        self.index = {pid: n for n, pid in enumerate(self.ids)}
        self.planners = [FetchPlanner(pid, self.config) for pid in self.ids]
        self.queue: list[tuple[float, int, int, Callable[[], list[Action]]]] = []
        self.seq = itertools.count()
        self.store_reads: dict[PieceRef, int] = {}
        self.log: list[tuple[float, int, Action]] = []
        self.now = 0.0
        self.done_at: dict[int, float] = {}

    def at(self, when: float, agent: int, call: Callable[[], list[Action]]) -> None:
        heapq.heappush(self.queue, (when, next(self.seq), agent, call))

    def tell(self, when: float, agent: int, event: Event) -> None:
        planner = self.planners[agent]
        self.at(when, agent, lambda: planner.handle(event, self.now))

    def start(self, at: float = 0.0, starts: list[float] | None = None) -> None:
        """Everyone knows everyone at `at`; agent n wants the version at `starts[n]` (all at
        `at` by default) and announces that it does."""
        empty = Bitfield(len(self.table))
        starts = starts or [at] * self.agents
        for a in range(self.agents):
            for b in range(self.agents):
                if a != b:
                    self.tell(at, a, PeerJoined(self.ids[b]))
        for a in range(self.agents):
            self.tell(starts[a], a, VersionWanted(self.table))
            announce = PeerBitfield(self.ids[a], self.table.id, empty)
            for b in range(self.agents):
                if a != b:
                    self.tell(starts[a] + self.announce_delay, b, announce)

    def vanish(self, when: float, agent: int) -> None:
        def go() -> list[Action]:
            self.gone.add(agent)
            for other in range(self.agents):
                if other != agent:
                    self.tell(self.now + 1.0, other, PeerGone(self.ids[agent]))
            return []

        self.at(when, agent, go)

    def run(self, until: float = 10_000.0) -> None:
        while self.queue:
            when, _, agent, call = heapq.heappop(self.queue)
            if when > until:
                break
            self.now = when
            if agent in self.gone:
                continue
            self._act(agent, call())
            planner = self.planners[agent]
            if planner.complete(self.table.id) and agent not in self.done_at:
                self.done_at[agent] = when
            timer = planner.get_timer()
            if timer is not None:
                self.at(max(timer, when), agent, lambda p=planner: p.handle_timer(self.now))

    def _act(self, agent: int, actions: list[Action]) -> None:
        for action in actions:
            self.log.append((self.now, agent, action))
            if isinstance(action, Assign):
                self._transfer(agent, action)
            elif isinstance(action, Cancel | DropPeer):
                pass  # the in-test transport just lets late pieces arrive (and be ignored)

    def _transfer(self, agent: int, action: Assign) -> None:
        piece = action.piece
        if action.source == STORE:
            self.store_reads[piece] = self.store_reads.get(piece, 0) + 1
            if agent in self.stuck:
                return
            self.at(self.now + self.store_time, agent, lambda: self._got(agent, piece, STORE))
            return
        server = self.index[action.source]  # type: ignore[index]
        if server in self.silent or server in self.gone:
            return  # never answers: the deadline must catch it
        if server in self.corrupt:
            failed = PieceFailed(piece, self.ids[server], bad_block=True)
            self.tell(self.now + self.peer_time, agent, failed)
            return
        self.at(self.now + self.peer_time, agent, lambda: self._got(agent, piece, self.ids[server]))

    def _got(self, agent: int, piece: PieceRef, source: object) -> list[Action]:
        planner = self.planners[agent]
        needed = not planner.complete(piece.version)
        actions = planner.handle(PieceArrived(piece, source), self.now)  # type: ignore[arg-type]
        if needed:
            for other in range(self.agents):
                if other != agent:
                    have = PeerHave(self.ids[agent], piece.version, (piece.index,))
                    self.tell(self.now + self.announce_delay, other, have)
        return actions
