"""Turn a store URL (`file:///path`, `s3://bucket/prefix`) into a Store."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from aetherfs.errors import InvalidInput
from aetherfs.store.base import Store
from aetherfs.store.local import LocalStore


def open_store(url: str, s3_endpoint: str | None = None, s3_region: str | None = None) -> Store:
    parsed = urlparse(url)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise InvalidInput(f"file store URLs name a local path: file:///path, not {url}")
        return LocalStore(Path(unquote(parsed.path)))
    if parsed.scheme == "s3":
        # boto3 takes a quarter of a second to import: only S3 users pay for it.
        from aetherfs.store.s3 import S3Settings, S3Store

        if len(parsed.netloc) < 3:
            raise InvalidInput(f"S3 store URL needs a bucket of 3+ characters: {url}")
        return S3Store(
            S3Settings(
                bucket=parsed.netloc,
                prefix=parsed.path.strip("/"),
                endpoint_url=s3_endpoint,
                region=s3_region,
            )
        )
    if not parsed.scheme:
        return LocalStore(Path(url).expanduser())
    raise InvalidInput(f"unknown store URL {url!r}: use file:///path or s3://bucket/prefix")
