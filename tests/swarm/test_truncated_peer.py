"""A peer whose stream ends inside a frame (its process died mid-block, as a kill -9 leaves it)
is gone, not banned: nothing it sent was wrong, so when it is back it is traded with again.
(It was banned for good, like a peer sending corrupt blocks, and a restarted agent was then
avoided by every peer that had been fetching from it.)"""

from __future__ import annotations

import trio

from aetherfs.net.transport import PeerAddress
from aetherfs.swarm.memory import NoStore, synthetic_version
from tests.swarm.helpers import start_node


async def cutting_proxy(nursery: trio.Nursery, target: PeerAddress, cut_after: int) -> PeerAddress:
    """Forwards TCP to `target`; the first connection's answer is cut after `cut_after`
    bytes (then both ends are closed), later ones are forwarded whole."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    cuts = [cut_after]

    async def handle(client: trio.SocketStream) -> None:
        server = await trio.open_tcp_stream(target.host, target.port)
        limit = cuts.pop() if cuts else None

        async def pump(src: trio.SocketStream, dst: trio.SocketStream, limit: int | None) -> None:
            sent = 0
            async for chunk in src:
                if limit is not None and sent + len(chunk) >= limit:
                    await dst.send_all(chunk[: limit - sent])
                    break
                await dst.send_all(chunk)
                sent += len(chunk)
            pumps.cancel_scope.cancel()

        async with client, server, trio.open_nursery() as pumps:
            pumps.start_soon(pump, client, server, None)
            pumps.start_soon(pump, server, client, limit)

    nursery.start_soon(trio.serve_listeners, handle, listeners)
    return PeerAddress("127.0.0.1", listeners[0].socket.getsockname()[1])


async def test_a_peer_cut_off_mid_block_is_gone_and_traded_with_again() -> None:
    version = synthetic_version("cut", pieces=8, blocks_per_piece=4, block_size=64 * 1024)
    async with trio.open_nursery() as nursery:
        holder = await start_node(nursery, NoStore(), version, holds=True, name="holder")
        # Past the handshake and the bitfield, inside the second block's frame.
        proxy = await cutting_proxy(nursery, holder.address, 100_000)
        fetcher = await start_node(nursery, NoStore(), version, peers=[proxy], name="fetcher")
        with trio.fail_after(20):  # no store: every block must come from the holder
            counters = await fetcher.engine.fetch(version.table, version.access.access_id)
        assert counters.bytes_from_peers == version.table.total_size
        (row,) = fetcher.engine.status().peers
        assert row.agent == "holder" and row.state == "open", row
        assert row.errors == 1 and "truncated" in row.last_error, row
        nursery.cancel_scope.cancel()
