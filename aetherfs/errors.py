"""One exception hierarchy, rooted in AetherError, with subclasses a user can act on.

Messages say what happened and what to do; the CLI prints them without a traceback.
"""


class AetherError(Exception):
    """Base of every error AetherFS raises on purpose."""

    exit_code = 1


class InvalidInput(AetherError):
    """A name, tag, path or argument the user gave is not acceptable."""

    exit_code = 2


class NotFound(AetherError):
    """A dataset, tag, manifest or block does not exist where it was looked for."""

    exit_code = 3


class Forbidden(AetherError):
    """The caller may not do this."""

    exit_code = 4


class IntegrityError(AetherError):
    """Stored or received bytes do not match their address, or fail authentication."""

    exit_code = 5


class Conflict(AetherError):
    """A concurrent writer won a compare-and-swap, or an immutable thing would change."""

    exit_code = 6


class StoreUnavailable(AetherError):
    """The store cannot be reached or refused the request for a reason that is not ours."""

    exit_code = 7


class LocalIOError(AetherError):
    """A local file or directory could not be read or written (full disk, permissions)."""

    exit_code = 9


class KeyringError(AetherError):
    """A key is missing or is not the key the data was written with."""

    exit_code = 8


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


class TooLarge(InvalidInput):
    """A request body over the hub's size limit (HTTP 413)."""
