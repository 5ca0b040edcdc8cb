"""Peer exchange in the agent: one `SwarmEngine` and one `Discovery`, started in the daemon's
nursery, and the three seams the engine needs, made of the agent's own parts.

    PeerExchange.run
      ├─ engine      SwarmEngine.run: listens, dials, trades (aetherfs/swarm/)
      ├─ discovery   Discovery.run: mDNS, static peers (aetherfs/net/discovery.py)
      └─ addresses   PeerSeen / PeerGone -> PeerAddress / AddressGone, the engine's channel

A build asks `fetch` first: the version's `PieceTable`, the pieces the cache already holds, and
the engine fetches the rest from peers and the store into the block cache (`CacheBlocks` is
both the engine's `BlockStore` and its `BlockSink`, so a piece is served to peers as soon as it
is verified); the build then takes every block from the cache. The store is read with one
ranged GET per piece through the repository (`RepoStore`), at `fetch_workers` reads at once,
so with no peers the store carries the load as it did before.

Peer exchange never stops the agent: when it cannot start (no fleet secret, an expired
certificate, the port taken) it says why in the log and in status, and builds read the store.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import trio

from aetherfs.agent.config import AgentConfig, Subscription
from aetherfs.agent.identity import AgentId as OwnId
from aetherfs.agent.identity import AgentIdentity, load_identity
from aetherfs.agent.log import Logger
from aetherfs.agent.manifests import (
    ManifestShelf,
    ServedManifests,
    manifest_from_peers,
    stored_base,
    verify_sealed,
)
from aetherfs.agent.membership import (
    CertificateMembership,
    NotEnrolled,
    Reader,
    SecretMembership,
    dataset_accesses,
)
from aetherfs.agent.state import AgentState, ChannelState, Progress
from aetherfs.agent.wakeups import Wakeups
from aetherfs.agent.watch import RepoHandle
from aetherfs.agent.workspace import Workspace
from aetherfs.core.blocks import BlockRef
from aetherfs.core.ids import BlockId, ManifestId
from aetherfs.core.manifest import MAX_DEPTH, Manifest
from aetherfs.core.packs import ReadRange
from aetherfs.errors import AetherError, NotFound
from aetherfs.fetch.metered import RateLimit, Stopped
from aetherfs.net.discovery import Discovery, DiscoveryConfig
from aetherfs.net.discovery import PeerAddress as StaticPeer
from aetherfs.net.ids import AgentId, FleetId
from aetherfs.net.peer_view import PeerGone, PeerSeen
from aetherfs.net.transport import PeerAddress
from aetherfs.planner import (
    BandwidthPolicy,
    Bitfield,
    FetchPlanner,
    PeerId,
    PieceTable,
    PlannerConfig,
    UploadScheduler,
)
from aetherfs.protocol import handshake
from aetherfs.protocol.admission import AccessId, DatasetAccess
from aetherfs.protocol.connection import PeerConfig
from aetherfs.repository import Repository
from aetherfs.swarm import EngineConfig, SwarmEngine
from aetherfs.swarm.interfaces import AddressEvent, AddressGone, StoredBlocks, Swarm
from aetherfs.swarm.status import VersionCounters

REPO_RETRY = 5.0  # seconds between attempts to open the repository before peers start
START_WAIT = 10.0  # a build waits this long for peer exchange to start (or fail) at most
WAKE_EVERY = 1.0  # peers' announcements wake one dataset's loops at most this often (seconds)


class CacheBlocks:
    """The engine's BlockStore and BlockSink. Blocks are served from the block cache as stored,
    else sealed again from a tree on disk (`TreeBlocks`: checked against the manifest and the
    id, NotFound otherwise, so the peer is answered NOT_HAVE and goes elsewhere); fetched
    blocks go into the cache. Both are asked of the workspace (the cache is replaced when the
    data root is lost). A read from the cache keeps the cache's copies a while longer
    (`Workspace.trim`): a rollout is under way."""

    def __init__(self, work: Workspace) -> None:
        self.work = work

    def has(self, block_id: BlockId) -> bool:
        return bool(self.work.cache.has([block_id])) or self.work.trees.has(block_id)

    def read(self, block_ids: Sequence[BlockId]) -> list[bytes]:
        found = self.work.cache.get_many(list(block_ids))
        if found:
            self.work.cache_read_at = time.monotonic()
            self.work.trees.count_cache(list(found.values()))
        missing = [b for b in dict.fromkeys(block_ids) if b not in found]
        if missing:
            found.update(zip(missing, self.work.trees.read(missing), strict=True))
        return [found[b] for b in block_ids]

    def __call__(self, table: PieceTable, index: int, blocks: StoredBlocks) -> None:
        self.work.cache.put_many(blocks)


@dataclass(frozen=True, slots=True)
class _Wanted:
    repo: Repository
    dataset: str


class RepoStore:
    """The engine's StoreReader: one ranged GET per piece through the repository, at the
    agent's store rate, stopped between pieces when the agent stops.

    A piece's reads come from its `PieceTable` alone (pack, offsets, stored sizes and ids are
    all a ranged read needs; the engine checks every id): no per-block object is held, and a
    version is forgotten once its fetch ends, so memory grows neither with a version's size
    nor with the number of versions rolled out."""

    def __init__(self, limit: RateLimit | None, stop: threading.Event) -> None:
        self.limit = limit
        self.stop = stop
        self._versions: dict[ManifestId, _Wanted] = {}
        self._lock = threading.Lock()

    def want(self, table: PieceTable, repo: Repository, dataset: str) -> None:
        with self._lock:
            self._versions[table.id] = _Wanted(repo, dataset)

    def forget(self, table: PieceTable) -> None:
        with self._lock:
            self._versions.pop(table.id, None)

    def read_piece(self, table: PieceTable, index: int) -> StoredBlocks:
        if self.stop.is_set():
            raise Stopped("the agent is stopping")
        with self._lock:
            wanted = self._versions.get(table.id)
        if wanted is None:
            raise NotFound(f"version {table.id.short()} is not one this agent fetches")
        read = table.read(index)
        # Locations only: `read_range` cuts by offset and size and checks each id.
        refs = tuple(
            BlockRef(b.id, b"", 0, b"", b.stored_size, read.pack, b.offset)
            for b in table.blocks(index)
        )
        if self.limit is not None:
            self.limit.take(read.length, self.stop)
        got = wanted.repo.read_range(
            wanted.dataset, ReadRange(read.pack, read.start, read.length, refs)
        )
        return [(ref.id, stored) for ref, stored in got]


def bandwidth_policy(config: AgentConfig) -> BandwidthPolicy:
    """The agent's one policy: the planner holds peer downloads and store reads to it, the
    upload scheduler peer uploads. Store reads stay under `store_rate` twice over: the planner
    assigns no more than the cap lets start (pieces not read yet stay free for peers), and
    `RepoStore`'s limit, shared with builds that read the store themselves, paces the bytes."""
    return BandwidthPolicy(
        peer_upload=config.peers.upload_rate or None,
        peer_download=config.peers.download_rate or None,
        store_read=config.store_rate or None,
    )


def bandwidth_caps(config: AgentConfig) -> dict[str, int | None]:
    """The caps as status shows them: bytes per second, None for uncapped."""
    policy = bandwidth_policy(config)
    return {
        "peer_upload": _whole(policy.peer_upload),
        "peer_download": _whole(policy.peer_download),
        "store_read": _whole(policy.store_read),
    }


def _whole(rate: float | None) -> int | None:
    return int(rate) if rate is not None else None


def held_pieces(table: PieceTable, work: Workspace) -> tuple[Bitfield, int, int]:
    """The pieces whose every block the cache or a tree holds, and the stored bytes of their
    blocks the build will read from the cache, and from the trees (local)."""
    held: list[int] = []
    cached_bytes = tree_bytes = 0
    for i in range(len(table)):  # a piece at a time: a version's ids are never listed whole
        blocks = table.blocks(i)
        ids = [b.id for b in blocks]
        in_tree = work.trees.known(ids)
        cached = work.cache.has(b for b in ids if b not in in_tree)
        if all(b in in_tree or b in cached for b in ids):
            held.append(i)
            cached_bytes += sum(b.stored_size for b in blocks if b.id in cached)
            tree_bytes += sum(b.stored_size for b in blocks if b.id in in_tree)
    return Bitfield.of(len(table), held), cached_bytes, tree_bytes


def announce_address(host: str) -> str:
    """The IPv4 address peers reach us at: `host` unless it is the wildcard, else the address
    of the interface that multicast (mDNS) leaves by, else the host name's."""
    if host not in ("0.0.0.0", ""):
        return host
    for target in ("224.0.0.251", "10.255.255.255"):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.connect((target, 5353))  # no packet is sent: only a route is chosen
                found = str(s.getsockname()[0])
            except OSError:
                continue
            if found != "0.0.0.0":
                return found
    return socket.gethostbyname(socket.gethostname())


class AnnounceWakes:
    """A peer announced a version of a subscribed dataset that is not live here: its channel
    has likely moved and that peer saw it first, so the dataset's loops look now rather than
    at their next poll, and the fleet starts fetching together. Only a look: the loop reads
    and verifies the tag from the store as always, the peer's claim is never trusted. At most
    one wake per dataset each `every` seconds, so a peer announcing made-up versions costs
    the store at most one tag read a second; one dropped is made good by the next HAVE."""

    def __init__(
        self,
        wakeups: Wakeups,
        channels: Mapping[Subscription, ChannelState],
        every: float = WAKE_EVERY,
    ) -> None:
        self.wakeups, self.channels, self.every = wakeups, channels, every
        self._last: dict[str, float] = {}

    def announced(self, dataset: str, manifest_id: ManifestId, now: float) -> bool:
        """Wake the loops of `dataset` whose live version is not `manifest_id`; True if any
        was woken (False: none is behind, or the dataset was woken under `every` ago)."""
        last = self._last.get(dataset)
        if last is not None and now - last < self.every:
            return False
        behind = [
            sub
            for sub in self.wakeups.subscriptions
            if sub.dataset == dataset and self._live(sub) != manifest_id.hex()
        ]
        if not behind:
            return False
        self._last[dataset] = now
        for sub in behind:
            self.wakeups.wake(sub)
        return True

    def _live(self, sub: Subscription) -> str | None:
        channel = self.channels.get(sub)
        return channel.live_manifest if channel is not None else None


class PeerExchange:
    """The agent's swarm, once started; builds read the store alone until then."""

    def __init__(
        self,
        config: AgentConfig,
        log: Logger,
        state: AgentState,
        work: Workspace,
        repos: RepoHandle,
        certificate: CertificateMembership | None = None,
        wakeups: Wakeups | None = None,
    ) -> None:
        self.config, self.log, self.state, self.work, self.repos = config, log, state, work, repos
        self.certificate = certificate
        self.wakes = AnnounceWakes(wakeups, state.channels) if wakeups is not None else None
        self.blocks = CacheBlocks(work)
        self.store = RepoStore(work.store_limit, work.stopping)
        self.engine: Swarm | None = None
        self.membership: Reader | None = None
        self.identity: AgentIdentity | None = None
        self.accesses: dict[str, DatasetAccess] = {}
        self.problem: str | None = None
        self.address: str | None = None
        self.offered: set[ManifestId] = set()
        self.fetches: dict[ManifestId, dict[str, Any]] = {}  # per version: bytes by source
        self.shelf = ManifestShelf(config.state_dir / "manifests")
        self.served = ServedManifests(self.shelf, self._access_id)
        self._manifest_source: dict[ManifestId, str] = {}  # where a build's manifest came from
        work.on_removed.append(self._collected)
        repos.on_open.append(self.shelf.share_with)  # before any manifest is read
        self.settled = trio.Event()  # started, or off for good: builds need not wait
        state.peer_view = self.status

    # --- start ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Start when the repository opens (its keyring holds the fleet secret), then trade
        until cancelled. Never raises an AetherError or OSError: it says why peers are off."""
        repo = await self._repo()
        try:
            await self._run(repo)
        except (AetherError, OSError) as exc:
            self._off(f"{type(exc).__name__}: {exc}")

    def _off(self, why: str) -> None:
        self.settled.set()
        self.engine = None
        self.problem = why
        self.log.warning("peers.off", why=why, fallback="every block is read from the store")

    async def _repo(self) -> Repository:
        while True:
            try:
                return await self.repos.get()
            except AetherError:
                await trio.sleep(REPO_RETRY)  # the channel loops report why

    async def _run(self, repo: Repository) -> None:
        config, peers = self.config, self.config.peers
        identity = await trio.to_thread.run_sync(load_identity, config.state_dir)
        membership: Reader
        if self.certificate is not None:
            membership = self.certificate
        else:
            try:
                membership = SecretMembership.from_keyring(repo.keyring)  # type: ignore[arg-type]
            except NotEnrolled as exc:
                self._off(str(exc))
                return
        admission = membership.admission(time.time())
        if admission is None:
            self._off(membership.problem(time.time()) or "this agent cannot join peers")
            return
        self.identity, self.membership = identity, membership
        datasets = [s.dataset for s in config.subscriptions]
        granted = await trio.to_thread.run_sync(dataset_accesses, repo.keyring, datasets)
        for name, why in granted.missing.items():
            self.log.warning("peers.dataset_unproved", dataset=name, why=why)
        self.accesses = dict(granted.granted)
        now = trio.current_time()
        self_id = PeerId(identity.public_key)
        bandwidth = bandwidth_policy(config)
        engine = SwarmEngine(
            EngineConfig(
                listen_host=peers.listen_host,
                listen_port=peers.listen_port,
                static_peers=tuple(PeerAddress.parse(p) for p in peers.static),
                store_threads=config.fetch_workers,
            ),
            # The engine sets each connection's wall_offset (certificates are dated in Unix time).
            PeerConfig(identity.signing_key, admission, agent=str(identity.agent_id)),
            granted.accesses(),
            FetchPlanner(
                self_id, PlannerConfig(store_reads=config.fetch_workers), bandwidth, now=now
            ),
            UploadScheduler(bandwidth=bandwidth, now=now),
            self.blocks,
            self.store,
            self.blocks,
            on_announce=self._announced,
            records=self.served,
        )
        send, receive = trio.open_memory_channel[AddressEvent](64)
        async with trio.open_nursery() as nursery:
            if isinstance(membership, CertificateMembership):
                # Renewed certificates and revocation lists reach the running engine.
                membership.link_engine(engine, nursery)
            port = await nursery.start(engine.run, receive)
            self.address = announce_address(peers.listen_host)
            discovery = Discovery(
                DiscoveryConfig(
                    AgentId(str(identity.agent_id)),
                    FleetId(membership.fleet_id),
                    handshake.MAX_VERSION,
                    self.address,
                    port,
                    static_peers=tuple(StaticPeer.parse(p) for p in peers.static),
                    mdns=peers.mdns,
                )
            )
            await nursery.start(discovery.run)
            nursery.start_soon(_forward, discovery, send)
            client = getattr(repo, "client", None)
            if client is not None and hasattr(client, "peer_hints"):
                nursery.start_soon(_hub_hints, client, discovery, self.log)
            self.engine = engine
            self.settled.set()
            self.log.info(
                "peers.started",
                agent_id=str(identity.agent_id),
                fleet=membership.fleet_id,
                address=f"{self.address}:{port}",
                mdns=peers.mdns,
                static=",".join(peers.static) or None,
            )

    def _announced(self, access_id: AccessId, manifest_id: ManifestId) -> None:
        """The engine's hook: a peer announced a version (trio thread, must not block)."""
        if self.wakes is None or manifest_id in self.offered or manifest_id in self.fetches:
            return  # a version this agent already holds or fetches: nothing to look for
        dataset = next((d for d, a in self.accesses.items() if a.access_id == access_id), None)
        if dataset is not None:
            self.wakes.announced(dataset, manifest_id, trio.current_time())

    # --- what the channel loops ask ---------------------------------------------------------

    async def _access(self, repo: Repository, dataset: str) -> AccessId | None:
        access = self.accesses.get(dataset)
        if access is None and self.engine is not None:
            granted = await trio.to_thread.run_sync(dataset_accesses, repo.keyring, [dataset])
            access = granted.granted.get(dataset)
            if access is not None:
                self.accesses[dataset] = access
                self.engine.add_dataset(access)
        return access.access_id if access is not None else None

    async def _table(self, manifest_id: ManifestId, manifest: Manifest) -> PieceTable:
        return await trio.to_thread.run_sync(PieceTable.of_manifest, manifest_id, manifest)

    async def fetch(
        self,
        repo: Repository,
        manifest_id: ManifestId,
        manifest: Manifest,
        progress: Progress,
        priority: int = 0,
    ) -> VersionCounters | None:
        """Every block of the version into the cache, from peers and the store; None when peer
        exchange is off (the build then reads the store itself). Just after the agent starts
        (a restart mid-rollout), waits a moment for the swarm, so the build trades too.
        `priority`: the subscription's (higher versions are served first by the planner)."""
        with trio.move_on_after(START_WAIT):
            await self.settled.wait()
        engine = self.engine
        if engine is None:
            return None
        access = await self._access(repo, manifest.dataset)
        if access is None:
            return None
        table = await self._table(manifest_id, manifest)
        held, held_bytes, tree_bytes = await self.work.disk(held_pieces, table, self.work)
        self.store.want(table, repo, manifest.dataset)
        record = self.fetches.setdefault(
            manifest_id,
            {
                "manifest": manifest_id.hex(),
                "dataset": manifest.dataset,
                "cache": held_bytes,
                "local": tree_bytes,  # held by a tree on disk (stored size): the build reads it
            },
        )
        record["started"], record["priority"] = time.time(), priority
        source = self._manifest_source.pop(manifest_id, None)
        if source is not None:
            record["manifest_from"] = {source: await self.work.disk(self.shelf.size, manifest_id)}
        try:
            counters = await engine.fetch(table, access, held=held, priority=priority)
        finally:
            self.store.forget(table)
        record["finished"] = time.time()
        self.offered.add(manifest_id)
        self.state.count_swarm(held_bytes, counters.bytes_from_peers, counters.bytes_from_store)
        return counters

    # --- manifests: asked of peers first, served to them --------------------------------------

    def _access_id(self, dataset: str) -> AccessId | None:
        access = self.accesses.get(dataset)
        return access.access_id if access is not None else None

    async def fetch_manifest(self, repo: Repository, dataset: str, manifest_id: ManifestId) -> None:
        """Before a build opens a version's manifest: each manifest of its chain (a delta,
        its base, ...) not on the shelf is asked of peers (MANIFEST_TIMEOUT) and kept once
        verified as a store read is; a copy that fails is logged and counted against the
        peer. What peers did not send, the build reads from the store."""
        if await self.work.disk(self.shelf.has, manifest_id):
            self._manifest_source[manifest_id] = "local"
            return
        self._manifest_source[manifest_id] = "store"
        with trio.move_on_after(START_WAIT):
            await self.settled.wait()
        engine = self.engine
        access = await self._access(repo, dataset) if engine is not None else None
        if engine is None or access is None:
            return
        wanted: ManifestId | None = manifest_id
        for _ in range(MAX_DEPTH + 1):
            if wanted is None or await self.work.disk(self.shelf.has, wanted):
                return
            base = await self._manifest_from_peers(engine, repo, access, dataset, wanted)
            if base is False:
                return
            if wanted == manifest_id:
                self._manifest_source[manifest_id] = "peers"
            wanted = base

    async def _manifest_from_peers(
        self,
        engine: Swarm,
        repo: Repository,
        access: AccessId,
        dataset: str,
        manifest_id: ManifestId,
    ) -> ManifestId | Literal[False] | None:
        """One manifest from a peer, verified and kept: its base (None for a full one), or
        False if no peer sent a true copy in time."""

        async def verify(sealed: bytes) -> Manifest:
            return await self.work.disk(verify_sealed, repo, dataset, manifest_id, sealed)

        def refused(why: str) -> None:
            self.log.warning("peers.manifest_refused", manifest=manifest_id.hex(), why=why)

        got = await manifest_from_peers(engine, access, manifest_id, verify, refused)
        if got is None:
            return False
        sealed, manifest = got
        await self.work.disk(self.shelf.keep, manifest_id, sealed)
        self.served.add(manifest_id, dataset, manifest.base)
        return manifest.base

    async def serve_manifest(self, repo: Repository, manifest_id: ManifestId, dataset: str) -> None:
        """The version was opened (so verified) as `dataset`'s: its manifest and the chain it
        is a delta on are served to peers from now on (each learnt once)."""
        wanted: ManifestId | None = manifest_id
        for _ in range(MAX_DEPTH + 1):
            if wanted is None:
                return
            if not self.served.knows(wanted):
                base = await self.work.disk(stored_base, repo, dataset, wanted)
                self.served.add(wanted, dataset, base)
            wanted = self.served.bases.get(wanted)

    def _collected(self, removed: list[ManifestId]) -> None:
        """Versions collected: their manifests leave the shelf, unless a kept chain needs them."""
        self.shelf.drop(self.served.collected(removed))

    async def offer(self, repo: Repository, manifest_id: ManifestId, dataset: str) -> None:
        """Serve a version this agent holds (a live one at start, say) to its peers."""
        if self.engine is None or manifest_id in self.offered:
            return
        access = await self._access(repo, dataset)
        if access is None:
            return
        manifest = await self.work.disk(repo.get_manifest, dataset, manifest_id)
        await self.serve_manifest(repo, manifest_id, dataset)
        table = await self._table(manifest_id, manifest)
        await self.engine.offer(table, access)  # served from what it holds: no store reads
        self.offered.add(manifest_id)

    # --- status ------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """`peer_exchange`, `peers` and `fetches` of the status document."""
        engine, peers = self.engine, self.config.peers
        doc: dict[str, Any] = {
            "enabled": engine is not None,
            "problem": self.problem,
            "agent_id": str(self.identity.agent_id) if self.identity else None,
            "fleet": self.membership.fleet_id if self.membership else None,
            "address": self.address,
            "port": None,
            "mdns": peers.mdns,
            "static": list(peers.static),
            "connections": 0,
            "uploads_running": 0,
            "refused": [],
            "bandwidth": bandwidth_caps(self.config),
        }
        if engine is None:
            return {"peer_exchange": doc, "peers": [], "fetches": []}
        s = engine.status()
        now, wall = trio.current_time(), time.time()
        doc.update(
            port=s.port,
            connections=s.connections,
            uploads_running=s.uploads_running,
            refused=[{"address": r.address, "reason": r.reason, "text": r.text} for r in s.refused],
        )
        peer_rows = [
            {
                "id": str(OwnId.of(p.peer.raw)),
                "key": p.peer.hex(),
                "agent": p.agent,
                "address": p.address,
                "state": p.state,
                "bytes_sent": p.bytes_sent,
                "bytes_received": p.bytes_received,
                "errors": p.errors,
                "last_error": p.last_error or None,
                "last_seen": wall - (now - p.last_seen) if p.last_seen else None,
            }
            for p in s.peers
        ]
        fetches = []
        for v in s.versions:
            record = self.fetches.get(v.version, {})
            fetches.append(
                {
                    "manifest": v.version.hex(),
                    "dataset": record.get("dataset"),
                    "pieces": v.pieces,
                    "pieces_needed": v.pieces_needed,
                    "bytes_needed": v.bytes_needed,
                    "bytes": {
                        "local": record.get("local", 0),
                        "cache": record.get("cache", 0),
                        "peers": v.bytes_from_peers,
                        "store": v.bytes_from_store,
                    },
                    "store_reads": v.store_reads,
                    # The version's own sealed manifest: {"peers" | "store" | "local": bytes}.
                    "manifest_from": record.get("manifest_from", {}),
                    "priority": record.get("priority", 0),
                    "complete": v.complete,
                    "started": record.get("started"),
                    "finished": record.get("finished"),
                }
            )
        return {"peer_exchange": doc, "peers": peer_rows, "fetches": fetches}


HINTS_EVERY = 30.0  # seconds between asks for the hub's peer hints (each wait jittered)


async def _hub_hints(
    client: Any, discovery: Discovery, log: Logger, every: float = HINTS_EVERY
) -> None:
    """Through a hub, the addresses of our fleet's other agents that reported lately: peers
    multicast cannot reach (another VLAN, a Docker bridge) are probed there too."""
    jitter = random.Random()
    while True:
        try:
            hints = await trio.to_thread.run_sync(client.peer_hints)
            discovery.set_hub_hints(StaticPeer(h.host, h.port) for h in hints)
        except AetherError as exc:
            log.info("peers.hints_failed", why=str(exc))
        await trio.sleep(every * jitter.uniform(0.8, 1.2))


async def _forward(discovery: Discovery, send: trio.MemorySendChannel[AddressEvent]) -> None:
    """Discovery's events as the engine's address channel."""
    known: dict[AgentId, PeerAddress] = {}
    async for event in discovery.events:
        match event:
            case PeerSeen(agent_id=agent, addresses=addresses, port=port) if addresses:
                address = PeerAddress(addresses[0], port)
                old = known.get(agent)
                if old is not None and old != address:
                    await send.send(AddressGone(old))
                known[agent] = address
                await send.send(address)
            case PeerGone(agent_id=agent):
                gone = known.pop(agent, None)
                if gone is not None:
                    await send.send(AddressGone(gone))
