"""The fetch planner: sans-I/O decisions of which source serves which piece, by when.

Imports only `aetherfs.core` and `aetherfs.errors`; see docs/planner.md.
"""

from aetherfs.planner.bandwidth import BandwidthPolicy, TokenBucket
from aetherfs.planner.bitfield import Bitfield
from aetherfs.planner.events import (
    Action,
    Assign,
    Cancel,
    DropPeer,
    Event,
    GaveUp,
    PeerBitfield,
    PeerGone,
    PeerHave,
    PeerJoined,
    PieceArrived,
    PieceFailed,
    StoreFailed,
    VersionDropped,
    VersionWanted,
)
from aetherfs.planner.ids import STORE, PeerId, PieceRef, Source, StoreSource
from aetherfs.planner.pieces import PIECE_BYTES, PieceBlock, PieceRead, PieceTable
from aetherfs.planner.planner import (
    FetchPlanner,
    PeerStatus,
    PlannerConfig,
    PlannerStatus,
    VersionStatus,
)
from aetherfs.planner.policy import InOrder, PieceSelector, RarestFirst
from aetherfs.planner.upload import UploadConfig, UploadRequest, UploadScheduler

__all__ = [
    "PIECE_BYTES",
    "STORE",
    "Action",
    "Assign",
    "BandwidthPolicy",
    "Bitfield",
    "Cancel",
    "DropPeer",
    "Event",
    "FetchPlanner",
    "GaveUp",
    "InOrder",
    "PeerBitfield",
    "PeerGone",
    "PeerHave",
    "PeerId",
    "PeerJoined",
    "PeerStatus",
    "PieceArrived",
    "PieceBlock",
    "PieceFailed",
    "PieceRead",
    "PieceRef",
    "PieceSelector",
    "PieceTable",
    "PlannerConfig",
    "PlannerStatus",
    "RarestFirst",
    "Source",
    "StoreFailed",
    "StoreSource",
    "TokenBucket",
    "UploadConfig",
    "UploadRequest",
    "UploadScheduler",
    "VersionDropped",
    "VersionStatus",
    "VersionWanted",
]
