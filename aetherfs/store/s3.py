"""A store in an S3 bucket (any S3-compatible endpoint) through boto3.

Compare-and-swap uses S3 conditional writes: `If-None-Match: *` to create, `If-Match: ETAG`
to replace, so two writers racing on one tag cannot both win.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from aetherfs.errors import AetherError, Conflict, NotFound, StoreUnavailable
from aetherfs.store.base import Versioned
from aetherfs.store.s3_ranges import RangeError, RangeReader, Unreachable, direct_path_usable

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

CONNECT_TIMEOUT = 10
READ_TIMEOUT = 60
_MISSING = {"NoSuchKey", "404", "NotFound"}
_CONFLICT = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}


@dataclass(frozen=True, slots=True)
class S3Settings:
    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    region: str | None = None
    max_connections: int = 32


class S3Store:
    def __init__(self, settings: S3Settings) -> None:
        self.settings = settings
        self.bucket = settings.bucket
        self.prefix = settings.prefix.strip("/") + "/" if settings.prefix.strip("/") else ""
        self.url = f"s3://{settings.bucket}/{self.prefix}"
        region = settings.region or "us-east-1"
        config = Config(
            retries={"max_attempts": 5, "mode": "standard"},
            max_pool_connections=settings.max_connections,
            connect_timeout=CONNECT_TIMEOUT,
            read_timeout=READ_TIMEOUT,
            s3={
                # Packs are content-addressed and every block in them is authenticated, and
                # boto3 still sends a checksum the server verifies: hashing each body once more
                # for the signature (what botocore does over plain HTTP) cost 0.8 s of CPU per
                # GiB pushed. Over HTTPS botocore already leaves the payload unsigned.
                "payload_signing_enabled": False,
                # Explicit for S3-compatible servers, so both read paths build the same URLs.
                **({"addressing_style": "path"} if settings.endpoint_url else {}),
            },
        )
        # botocore's session alone finds the credentials; boto3 (and s3transfer, which it
        # imports) is loaded with the client.
        self._session = botocore.session.get_session()
        self._region = region
        self._config = config
        self._client: S3Client | None = None
        self._client_lock = threading.Lock()
        self.ranges = self._range_reader(self._session, region)
        #: Requests made, by operation: benchmarks price them.
        self.requests: dict[str, int] = {}

    @property
    def client(self) -> S3Client:
        """boto3's client, made on first use: making one parses botocore's S3 model (0.1 s
        of CPU, more on a busy machine), and a pull, whose GETs all take the short path
        (`s3_ranges.py`), never needs it."""
        with self._client_lock:
            if self._client is None:
                import boto3.session

                self._client = boto3.session.Session(botocore_session=self._session).client(
                    "s3",
                    endpoint_url=self.settings.endpoint_url,
                    region_name=self._region,
                    config=self._config,
                )
            return self._client

    def _range_reader(self, session: botocore.session.Session, region: str) -> RangeReader | None:
        """The short path for block reads, where it reaches the same server as boto3 would."""
        endpoint = self.settings.endpoint_url
        credentials = session.get_credentials()
        if not endpoint or credentials is None or not direct_path_usable(endpoint):
            return None
        return RangeReader(
            endpoint,
            self.bucket,
            region,
            credentials,
            self.settings.max_connections,
            CONNECT_TIMEOUT,
            READ_TIMEOUT,
        )

    def _key(self, key: str) -> str:
        return self.prefix + key

    def _count(self, op: str) -> None:
        self.requests[op] = self.requests.get(op, 0) + 1

    def _call(self, op: str, key: str, **kwargs: Any) -> Any:
        self._count(op)
        try:
            return getattr(self.client, op)(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            raise self._translate(exc, key) from None
        except BotoCoreError as exc:
            raise StoreUnavailable(f"cannot reach the store {self.url}: {exc}") from None

    def _short_get(self, key: str, get: Callable[..., bytes], *args: Any) -> bytes:
        """A GET on the short path (`s3_ranges.py`), failing in the words of `_call`."""
        self._count("get_object")
        try:
            return get(*args)
        except RangeError as exc:
            raise self._translate_code(exc.code, key, exc) from None
        except Unreachable as exc:
            raise StoreUnavailable(f"cannot reach the store {self.url}: {exc}") from None

    def _translate(self, exc: ClientError, key: str) -> AetherError:
        return self._translate_code(str(exc.response.get("Error", {}).get("Code", "")), key, exc)

    def _translate_code(self, code: str, key: str, detail: object) -> AetherError:
        if code in _MISSING:
            return NotFound(f"{key} is not in the store {self.url}")
        if code in _CONFLICT:
            return Conflict(f"{key} changed while it was being updated; retry")
        if code == "NoSuchBucket":
            return StoreUnavailable(
                f"the bucket {self.bucket} of the store {self.url} does not exist: check the "
                "URL, or create the bucket first"
            )
        return StoreUnavailable(f"the store {self.url} refused {key}: {code} {detail}")

    def get(self, key: str) -> bytes:
        if self.ranges is not None:
            return self._short_get(key, self.ranges.get_object, self._key(key))
        return bytes(self._call("get_object", key, Key=self._key(key))["Body"].read())

    def get_range(self, key: str, start: int, length: int) -> bytes:
        if length <= 0:
            return b""
        if self.ranges is not None:
            return self._short_get(key, self.ranges.get, self._key(key), start, length)
        response = self._call(
            "get_object", key, Key=self._key(key), Range=f"bytes={start}-{start + length - 1}"
        )
        return bytes(response["Body"].read())

    def exists(self, key: str) -> bool:
        try:
            self._call("head_object", key, Key=self._key(key))
        except NotFound:
            return False
        return True

    def size(self, key: str) -> int:
        return int(self._call("head_object", key, Key=self._key(key))["ContentLength"])

    def mtime(self, key: str) -> float:
        response = self._call("head_object", key, Key=self._key(key))
        return float(response["LastModified"].timestamp())

    def put(self, key: str, data: bytes) -> None:
        self._call("put_object", key, Key=self._key(key), Body=data)

    def put_if_absent(self, key: str, data: bytes | memoryview) -> bool:
        body = data if isinstance(data, bytes) else bytes(data)  # botocore takes bytes or files
        try:
            self._call("put_object", key, Key=self._key(key), Body=body, IfNoneMatch="*")
        except Conflict:
            return False
        return True

    def put_file_if_absent(self, key: str, file: BinaryIO) -> bool:
        # botocore reads a file body as it sends it (and rewinds it to retry).
        try:
            self._call("put_object", key, Key=self._key(key), Body=file, IfNoneMatch="*")
        except Conflict:
            return False
        return True

    def get_versioned(self, key: str) -> Versioned:
        response = self._call("get_object", key, Key=self._key(key))
        return Versioned(bytes(response["Body"].read()), str(response["ETag"]))

    def put_if_version(self, key: str, data: bytes, version: str | None) -> str:
        condition = {"IfNoneMatch": "*"} if version is None else {"IfMatch": version}
        response = self._call("put_object", key, Key=self._key(key), Body=data, **condition)
        return str(response["ETag"])

    def delete(self, key: str) -> None:
        self._call("delete_object", key, Key=self._key(key))

    def list(self, prefix: str) -> Iterator[str]:
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Prefix": self._key(prefix)}
            if token:
                kwargs["ContinuationToken"] = token
            response = self._call("list_objects_v2", prefix, **kwargs)
            for item in response.get("Contents", []):
                yield item["Key"][len(self.prefix) :]
            if not response.get("IsTruncated"):
                return
            token = response["NextContinuationToken"]

    def ensure_bucket(self) -> None:
        """Create the bucket if it is missing (for tests and first-time setup)."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError:
            try:
                self.client.create_bucket(Bucket=self.bucket)
            except ClientError as exc:
                raise self._translate(exc, self.bucket) from None
