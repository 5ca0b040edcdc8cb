"""One exception hierarchy, rooted in AetherError, with subclasses a user can act on.

Messages say what happened and what to do; the CLI prints them without a traceback.

Each class carries every code a caller sees for it, so the CLI, the hub's REST and gRPC and
the agent's REST and gRPC cannot disagree: `exit_code` (the CLI's exit status), `http_status`
and `error_code` (the REST envelope `{"error": {"code", "message"}}`), and `grpc_code` (the
name of a `grpc.StatusCode` member; a name, so this module imports nothing). All four are a
public contract. Faults of this host (`LocalIOError`, `DiskFull`) are kept apart from faults of
the store or of a peer (`StoreUnavailable`): the caller acts differently on each.
"""

from __future__ import annotations

from typing import Any


class AetherError(Exception):
    """Base of every error AetherFS raises on purpose."""

    exit_code = 1
    http_status = 500
    error_code = "error"
    grpc_code = "INTERNAL"


class InvalidInput(AetherError):
    """A name, tag, path or argument the user gave is not acceptable."""

    exit_code = 2
    http_status = 400
    error_code = "invalid"
    grpc_code = "INVALID_ARGUMENT"


class NotFound(AetherError):
    """A dataset, tag, manifest or block does not exist where it was looked for."""

    exit_code = 3
    http_status = 404
    error_code = "not_found"
    grpc_code = "NOT_FOUND"


class Forbidden(AetherError):
    """The caller may not do this."""

    exit_code = 4
    http_status = 403
    error_code = "forbidden"
    grpc_code = "PERMISSION_DENIED"


class IntegrityError(AetherError):
    """Stored or received bytes do not match their address, or fail authentication."""

    exit_code = 5
    http_status = 422
    error_code = "integrity"
    grpc_code = "FAILED_PRECONDITION"


class Conflict(AetherError):
    """A concurrent writer won a compare-and-swap, or an immutable thing would change."""

    exit_code = 6
    http_status = 409
    error_code = "conflict"
    # docs/hub.md promises ABORTED (the agent's old table said ALREADY_EXISTS): a lost
    # compare-and-swap is retried after a re-read, which is what ABORTED tells a client.
    grpc_code = "ABORTED"


class StoreUnavailable(AetherError):
    """The store cannot be reached or refused the request for a reason that is not ours."""

    exit_code = 7
    http_status = 503
    error_code = "unavailable"
    grpc_code = "UNAVAILABLE"


class LocalIOError(AetherError):
    """A local file or directory could not be read or written (full disk, permissions).

    A fault of this host, not of the store: retrying against the store does not help.
    """

    exit_code = 9
    http_status = 500
    error_code = "local_io"
    grpc_code = "INTERNAL"


class DiskFull(LocalIOError):
    """A local disk (data root, cache, pull target) ran out of space or quota."""

    http_status = 507  # RFC 4918 Insufficient Storage
    error_code = "disk_full"
    grpc_code = "RESOURCE_EXHAUSTED"


class KeyringError(AetherError):
    """A key is missing or is not the key the data was written with."""

    exit_code = 8
    # The hub answered 500 `keyring` (a public contract) and its gRPC INTERNAL; the agent's
    # gRPC said PERMISSION_DENIED. One map: INTERNAL, agreeing with the 500.
    http_status = 500
    error_code = "keyring"
    grpc_code = "INTERNAL"


def envelope(exc: AetherError) -> dict[str, Any]:
    """The JSON error body every REST surface answers: `{"error": {"code", "message"}}`."""
    return {"error": {"code": exc.error_code, "message": bounded(str(exc))}}


ECHO_CHARS = 80  # how much of a caller's input an error message repeats
MESSAGE_CHARS = 1000  # the longest message an error response carries


def echo(text: str, limit: int = ECHO_CHARS) -> str:
    """`text` quoted for an error message, cut to `limit` characters.

    Names and paths come from callers; one of 100 KB repeated in a gRPC status (sent as a
    header) or a 404 body costs every hop that carries it, and breaks default gRPC clients.
    """
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


def bounded(message: str, limit: int = MESSAGE_CHARS) -> str:
    """A message cut to `limit` characters: the last guard before it leaves the process."""
    return message if len(message) <= limit else message[: limit - 3] + "..."


# Raised by the hub and by its client (`aetherfs/repository/hub_client.py`), which maps the
# hub's statuses back to these; kept here so the repository layer needs nothing of the hub.
class Unauthenticated(AetherError):
    """No credentials, or credentials the hub cannot accept (HTTP 401)."""

    exit_code = 10
    http_status = 401
    error_code = "unauthenticated"
    grpc_code = "UNAUTHENTICATED"


class TooLarge(InvalidInput):
    """A request body over the hub's size limit (HTTP 413)."""

    http_status = 413
    error_code = "too_large"
    grpc_code = "RESOURCE_EXHAUSTED"
