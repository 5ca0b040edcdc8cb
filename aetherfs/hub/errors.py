"""Errors only the hub raises, beside the shared hierarchy in aetherfs.errors."""

from __future__ import annotations

from aetherfs.errors import AetherError, InvalidInput


class Unauthenticated(AetherError):
    """No credentials, or credentials the hub cannot accept (HTTP 401)."""

    exit_code = 10


class TooLarge(InvalidInput):
    """A request body over the hub's size limit (HTTP 413)."""


class OutOfRange(InvalidInput):
    """A byte range that starts past the end of what it names (HTTP 416, gRPC OUT_OF_RANGE)."""


class Overloaded(AetherError):
    """Too many of one kind of call at once: retry later (HTTP 429, gRPC RESOURCE_EXHAUSTED)."""
