"""Errors only the hub raises, beside the shared hierarchy in aetherfs.errors."""

from __future__ import annotations

from aetherfs.errors import AetherError, InvalidInput, TooLarge, Unauthenticated

__all__ = ["OutOfRange", "Overloaded", "TooLarge", "Unauthenticated"]  # the last two moved


class OutOfRange(InvalidInput):
    """A byte range that starts past the end of what it names (HTTP 416, gRPC OUT_OF_RANGE)."""


class Overloaded(AetherError):
    """Too many of one kind of call at once: retry later (HTTP 429, gRPC RESOURCE_EXHAUSTED)."""
