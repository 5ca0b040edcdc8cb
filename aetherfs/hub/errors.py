"""Errors only the hub raises, beside the shared hierarchy in aetherfs.errors."""

from __future__ import annotations

from aetherfs.errors import AetherError, InvalidInput


class Unauthenticated(AetherError):
    """No credentials, or credentials the hub cannot accept (HTTP 401)."""

    exit_code = 10


class TooLarge(InvalidInput):
    """A request body over the hub's size limit (HTTP 413)."""
