"""Peer discovery on the LAN under trio: mDNS (zeroconf), static peers and hub hints, one view.

    discovery = Discovery(DiscoveryConfig(agent_id, fleet_id, 1, "10.0.0.2", 7000, static_peers))
    async with trio.open_nursery() as nursery:
        await nursery.start(discovery.run)
        async for event in discovery.events:    # PeerSeen | PeerGone
            ...

Tasks (all in `run`'s nursery; zeroconf keeps its own threads):

    run
    ├── zeroconf (its threads)   registers our service; its browser's callbacks reach trio
    │                            through the trio token (`run_sync_soon`), never blocking it
    ├── _browse                  a browsed instance's address becomes a probe target
    ├── _probe                   every probe_interval: a unicast DNS-SD query to each target,
    │                            and peers silent for gone_after are reported gone
    └── _receive                 answers to those queries feed the view (peer_view.py)

Every PeerSeen comes from a peer's own answer to a unicast query, whichever source named its
address, so mDNS, static peers and hub hints are checked the same way, and a killed agent (no
goodbye) stops answering and is reported gone within gone_after + probe_interval. Leaving `run`
(cancellation) unregisters the service: zeroconf multicasts a goodbye.

`python -m aetherfs.net.discovery --agent-id A --fleet F --listen ADDR --port P` runs discovery
alone and prints its events as JSON lines (used by the LAN tests; SIGTERM stops it with goodbye).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import ipaddress
import json
import logging
import math
import secrets
import signal
import socket
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import trio
from zeroconf import (
    IPVersion,
    NonUniqueNameException,
    ServiceBrowser,
    ServiceInfo,
    ServiceStateChange,
    Zeroconf,
)

from aetherfs.errors import Conflict, InvalidInput
from aetherfs.net.dns_sd import (
    MDNS_PORT,
    SERVICE_TYPE,
    ServiceRecord,
    agent_of,
    instance_name,
    parse_reply,
    probe_query,
)
from aetherfs.net.ids import AgentId, FleetId
from aetherfs.net.peer_view import Peer, PeerEvent, PeerGone, PeerView, Source

log = logging.getLogger(__name__)

# A gone peer is noticed within gone_after + probe_interval: 8 s, under the 10 s promised.
PROBE_INTERVAL = 2.0
GONE_AFTER = 6.0
# How long the browser thread waits for a newly browsed instance's address.
RESOLVE_TIMEOUT_MS = 2000


@dataclass(frozen=True, slots=True)
class PeerAddress:
    """A static peer or a hub hint: an IPv4 address and the peer protocol port there."""

    host: str
    port: int

    def __post_init__(self) -> None:
        try:
            ipaddress.IPv4Address(self.host)
        except ValueError:
            raise InvalidInput(f"a peer address needs an IPv4 address, got {self.host!r}") from None
        if not 0 < self.port < 65536:
            raise InvalidInput(f"a peer port is 1 to 65535, got {self.port}")

    @classmethod
    def parse(cls, text: str) -> PeerAddress:
        host, sep, port = text.rpartition(":")
        if not sep or not port.isdigit():
            raise InvalidInput(f"a peer is ADDRESS:PORT (like 10.0.0.7:7070), got {text!r}")
        return cls(host, int(port))


@dataclass(frozen=True, slots=True)
class DiscoveryConfig:
    """What discovery needs, parsed from the agent's configuration elsewhere."""

    agent_id: AgentId
    fleet_id: FleetId
    protocol_version: int
    listen_address: str  # IPv4 address announced and used for mDNS
    port: int  # the peer protocol's port at that address
    static_peers: tuple[PeerAddress, ...] = ()
    mdns: bool = True
    probe_interval: float = PROBE_INTERVAL
    gone_after: float = GONE_AFTER

    def __post_init__(self) -> None:
        PeerAddress(self.listen_address, self.port)  # same checks
        if self.probe_interval <= 0 or self.gone_after < self.probe_interval:
            raise InvalidInput("probe_interval must be > 0 and gone_after at least probe_interval")


@dataclass(frozen=True, slots=True)
class _Browsed:
    agent_id: AgentId
    addresses: tuple[str, ...]  # empty: removed (a goodbye, or its records expired)


@dataclass
class _Targets:
    """The addresses probed each round, and which source named each."""

    static: set[str] = field(default_factory=set)
    hub: set[str] = field(default_factory=set)
    browsed: dict[AgentId, str] = field(default_factory=dict)

    def source_of(self, host: str) -> Source:
        if host in self.static:
            return Source.STATIC
        if host in self.hub:
            return Source.HUB
        return Source.MDNS

    def all(self, peers: Iterable[Peer]) -> set[str]:
        known = {p.record.addresses[0] for p in peers if p.record.addresses}
        return self.static | self.hub | set(self.browsed.values()) | known


class Discovery:
    """Finds the agents of our fleet; `events` yields PeerSeen and PeerGone (see module doc)."""

    def __init__(self, config: DiscoveryConfig) -> None:
        self.config = config
        self.incarnation = secrets.token_hex(4)
        self.view = PeerView(config.agent_id, config.fleet_id, config.gone_after)
        self._targets = _Targets(static={p.host for p in config.static_peers})
        self._send_event, self.events = trio.open_memory_channel[PeerEvent](math.inf)
        self._send_browsed, self._browsed = trio.open_memory_channel[_Browsed](math.inf)
        self._query_id = secrets.randbelow(0xFFFF) + 1
        self._sock: trio.socket.SocketType | None = None

    @property
    def record(self) -> ServiceRecord:
        c = self.config
        addresses = (c.listen_address,)
        return ServiceRecord(
            c.agent_id, c.fleet_id, c.protocol_version, c.port, self.incarnation, addresses
        )

    def peers(self) -> dict[AgentId, Peer]:
        """The merged view now: every live peer of our fleet, by agent id."""
        return self.view.peers

    def set_hub_hints(self, hints: Iterable[PeerAddress]) -> None:
        """Addresses the hub says our peers have; replaces the previous hints."""
        self._targets.hub = {h.host for h in hints}

    def heard_from(self, agent_id: AgentId) -> None:
        """The transport heard from this peer: it is alive whatever its DNS-SD answers."""
        self.view.heard(agent_id, trio.current_time())

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Discover until cancelled; on the way out, say goodbye."""
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        await sock.bind((self.config.listen_address, 0))
        self._sock = sock
        zc = await self._start_zeroconf() if self.config.mdns else None
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._receive, sock)
                nursery.start_soon(self._browse)
                nursery.start_soon(self._probe)
                task_status.started()
        finally:
            sock.close()
            self._send_event.close()
            if zc is not None:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(_close_zeroconf, zc)

    async def _start_zeroconf(self) -> Zeroconf | None:
        token = trio.lowlevel.current_trio_token()
        send = self._send_browsed

        def post(item: _Browsed) -> None:
            # Runs in trio's thread, called from the browser's: must not raise.
            with contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError):
                send.send_nowait(item)

        def on_change(
            zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
        ) -> None:
            # The browser's own thread: blocking here blocks neither trio nor zeroconf's loop.
            agent = agent_of(name)
            if agent is None or agent == self.config.agent_id:
                return
            addresses: tuple[str, ...] = ()
            if state_change is not ServiceStateChange.Removed:
                info = zeroconf.get_service_info(service_type, name, RESOLVE_TIMEOUT_MS)
                if info is None:
                    return
                addresses = tuple(info.parsed_addresses(IPVersion.V4Only))
                if not addresses:
                    return
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(post, _Browsed(agent, addresses))

        try:
            return await trio.to_thread.run_sync(self._open_zeroconf, on_change)
        except NonUniqueNameException:
            raise Conflict(
                f"another agent on this LAN announces the agent id {self.config.agent_id}: "
                "give each agent its own id"
            ) from None
        except OSError as e:
            # Multicast unusable here (no route, interface without multicast): peers can
            # still be found through static peers and hub hints.
            log.warning(
                "mDNS unavailable on %s (%s): static peers and hub hints only",
                self.config.listen_address,
                e,
            )
            return None

    def _open_zeroconf(self, on_change: Callable[..., None]) -> Zeroconf:
        c = self.config
        zc = Zeroconf(interfaces=[c.listen_address], ip_version=IPVersion.V4Only)
        try:
            info = ServiceInfo(
                SERVICE_TYPE,
                instance_name(c.agent_id),
                port=c.port,
                properties=dict(self.record.txt()),
                server=f"{c.agent_id.value}.local.",
                addresses=[socket.inet_aton(c.listen_address)],
            )
            zc.register_service(info, allow_name_change=False)
            ServiceBrowser(zc, SERVICE_TYPE, handlers=[on_change])
        except BaseException:
            zc.close()
            raise
        return zc

    async def _browse(self) -> None:
        async for item in self._browsed:
            if not item.addresses:
                self._targets.browsed.pop(item.agent_id, None)
                await self._emit(self.view.goodbye(item.agent_id))
                continue
            self._targets.browsed[item.agent_id] = item.addresses[0]
            await self._query(item.addresses[0])  # now, not at the next round

    async def _probe(self) -> None:
        while True:
            gone = self.view.expire(trio.current_time())
            for event in gone:
                self._targets.browsed.pop(event.agent_id, None)
            await self._emit(gone)
            for host in sorted(self._targets.all(self.view.peers.values())):
                await self._query(host)
            await trio.sleep(self.config.probe_interval)

    async def _query(self, host: str) -> None:
        assert self._sock is not None
        try:
            await self._sock.sendto(probe_query(self._query_id), (host, MDNS_PORT))
        except OSError as e:
            if e.errno not in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EPERM):
                raise
            log.debug("cannot reach %s: %s", host, e)

    async def _receive(self, sock: trio.socket.SocketType) -> None:
        while True:
            data, (host, port) = await sock.recvfrom(9000)
            if port != MDNS_PORT:
                continue
            source = self._targets.source_of(host)
            now = trio.current_time()
            for record in parse_reply(data):
                # The address that answered first: it is the one known to reach the peer.
                others = tuple(a for a in record.addresses if a != host)
                record = ServiceRecord(
                    record.agent_id,
                    record.fleet_id,
                    record.protocol_version,
                    record.port,
                    record.incarnation,
                    (host, *others),
                )
                await self._emit(self.view.observe(record, source, now))

    async def _emit(self, events: Sequence[PeerEvent]) -> None:
        for event in events:
            await self._send_event.send(event)


def _close_zeroconf(zc: Zeroconf) -> None:
    zc.unregister_all_services()  # multicasts a goodbye
    zc.close()


def event_json(event: PeerEvent) -> str:
    if isinstance(event, PeerGone):
        return json.dumps({"event": "gone", "agent": event.agent_id.value, "reason": event.reason})
    return json.dumps(
        {
            "event": "seen",
            "agent": event.agent_id.value,
            "fleet": event.fleet_id.value,
            "version": event.protocol_version,
            "addresses": list(event.addresses),
            "port": event.port,
            "source": event.source.value,
        }
    )


async def _demo(config: DiscoveryConfig, hub_hints: Sequence[PeerAddress]) -> None:
    discovery = Discovery(config)
    discovery.set_hub_hints(hub_hints)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(discovery.run)
            print(json.dumps({"event": "ready"}), flush=True)

            async def stop_on_signal() -> None:
                async for _ in signals:
                    nursery.cancel_scope.cancel()

            nursery.start_soon(stop_on_signal)
            async for event in discovery.events:
                print(event_json(event), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m aetherfs.net.discovery",
        description="Run peer discovery alone and print its events as JSON lines.",
    )
    parser.add_argument("--agent-id", required=True)
    parser.add_argument("--fleet", required=True)
    parser.add_argument("--listen", required=True, help="IPv4 address to announce")
    parser.add_argument("--port", type=int, required=True, help="peer protocol port to announce")
    parser.add_argument("--protocol-version", type=int, default=1)
    parser.add_argument("--static", action="append", default=[], help="ADDRESS:PORT, repeatable")
    parser.add_argument(
        "--hub-hint", action="append", default=[], help="ADDRESS:PORT as a hub would name it"
    )
    parser.add_argument("--no-mdns", action="store_true")
    parser.add_argument("--probe-interval", type=float, default=PROBE_INTERVAL)
    parser.add_argument("--gone-after", type=float, default=GONE_AFTER)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = DiscoveryConfig(
            agent_id=AgentId(args.agent_id),
            fleet_id=FleetId(args.fleet),
            protocol_version=args.protocol_version,
            listen_address=args.listen,
            port=args.port,
            static_peers=tuple(PeerAddress.parse(s) for s in args.static),
            mdns=not args.no_mdns,
            probe_interval=args.probe_interval,
            gone_after=args.gone_after,
        )
        trio.run(_demo, config, [PeerAddress.parse(s) for s in args.hub_hint])
    except (InvalidInput, Conflict) as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
