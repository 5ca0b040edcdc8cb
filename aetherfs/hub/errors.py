"""Errors only the hub raises, beside the shared hierarchy in aetherfs.errors (which says how
the codes on each class are used)."""

from __future__ import annotations

from aetherfs.errors import AetherError, InvalidInput, TooLarge, Unauthenticated

__all__ = ["OutOfRange", "Overloaded", "PreconditionFailed", "TooLarge", "Unauthenticated"]


class OutOfRange(InvalidInput):
    """A byte range that starts past the end of what it names (HTTP 416, gRPC OUT_OF_RANGE)."""

    http_status = 416
    error_code = "out_of_range"
    grpc_code = "OUT_OF_RANGE"


class Overloaded(AetherError):
    """Too many of one kind of call at once: retry later (HTTP 429, gRPC RESOURCE_EXHAUSTED)."""

    http_status = 429
    error_code = "busy"
    grpc_code = "RESOURCE_EXHAUSTED"


class PreconditionFailed(AetherError):
    """`If-Match` named a version the resource is no longer at (HTTP 412): re-read, retry."""

    http_status = 412
    error_code = "precondition_failed"
    grpc_code = "FAILED_PRECONDITION"
