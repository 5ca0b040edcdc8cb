"""The peer engine: one agent's swarm. It drives the fetch planner (`aetherfs/planner/`) and a
peer connection (`aetherfs/protocol/`) per peer over the trio transport (`aetherfs/net/`), and
moves bytes: store reads, peer requests, uploads. Every decision is the planner's.

The agent reaches it through `SwarmEngine` and gives it three seams (`interfaces.py`): the
blocks it holds (`BlockStore`), the store (`StoreReader`) and where verified blocks go
(`BlockSink`). A simulator replaces the engine itself and drives the same planner and
protocol objects (docs/peers.md).
"""

from aetherfs.swarm.engine import EngineConfig, SwarmEngine, VersionFailed
from aetherfs.swarm.interfaces import AddressGone, BlockSink, BlockStore, StoreReader, Swarm
from aetherfs.swarm.status import EngineStatus, LinkStatus, PeerCounters, VersionCounters

__all__ = [
    "AddressGone",
    "BlockSink",
    "BlockStore",
    "EngineConfig",
    "EngineStatus",
    "LinkStatus",
    "PeerCounters",
    "StoreReader",
    "Swarm",
    "SwarmEngine",
    "VersionCounters",
    "VersionFailed",
]
