"""Who broke the protocol: we (a caller misused the connection) or the peer (it sent something
the spec forbids). h11's split: the first is a bug to fix here, the second ends the connection."""

from __future__ import annotations

from aetherfs.errors import AetherError


class ProtocolError(AetherError):
    """Base of the peer protocol's errors."""

    exit_code = 11


class LocalProtocolError(ProtocolError):
    """This side asked the connection for something the protocol forbids in its state: a bug in
    the caller (sending before the handshake ends, serving a dataset the peer did not prove)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes the protocol forbids (bad frame, failed authentication, replay,
    oversize, a message out of order): the connection is closed and the peer may be avoided."""


class StreamTruncated(RemoteProtocolError):
    """The stream ended inside a frame: the peer (or its host) stopped mid-send, as a crash
    does. The connection ends, but nothing the peer sent was wrong: it is not avoided for it."""
