"""A client of the hub's REST API (httpx), and where the CLI keeps its hub tokens.

Errors come back as the AetherError subclass the status implies, with the hub's message, so
the CLI prints them as it prints its own.
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from aetherfs.errors import (
    AetherError,
    Conflict,
    Forbidden,
    IntegrityError,
    InvalidInput,
    NotFound,
    StoreUnavailable,
    TooLarge,
    Unauthenticated,
)

_ERRORS: dict[int, type[AetherError]] = {
    400: InvalidInput,
    401: Unauthenticated,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: TooLarge,
    422: IntegrityError,
}


def tokens_path(config_home: Path) -> Path:
    return config_home / "aetherfs" / "hub-tokens.json"


def config_home(env: Mapping[str, str]) -> Path:
    value = env.get("XDG_CONFIG_HOME", "")
    if value and Path(value).is_absolute():
        return Path(value)
    return Path(env.get("HOME", str(Path.home()))) / ".config"


def saved_token(env: Mapping[str, str], hub_url: str) -> str | None:
    """AETHERFS_HUB_TOKEN, else the token `aetherfs login` saved for this hub."""
    if env.get("AETHERFS_HUB_TOKEN"):
        return env["AETHERFS_HUB_TOKEN"]
    path = tokens_path(config_home(env))
    try:
        saved = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    token = saved.get(hub_url.rstrip("/"))
    return str(token) if token else None


def save_token(env: Mapping[str, str], hub_url: str, token: str) -> Path:
    """Keep the token 0600 under XDG_CONFIG_HOME, one per hub URL."""
    path = tokens_path(config_home(env))
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        saved = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        saved = {}
    saved[hub_url.rstrip("/")] = token
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(saved, f, indent=2)
    os.replace(tmp, path)
    return path


@dataclass(frozen=True, slots=True)
class PeerHint:
    """An address and port the hub says a peer of our fleet listens on.

    The agent makes each an `aetherfs.net.discovery.PeerAddress(hint.host, hint.port)`: this
    layer stands below the network code and does not import it.
    """

    host: str
    port: int


def _hints(doc: Any) -> list[PeerHint]:
    """Every (address, port) of the answer, each once; entries of another shape are skipped."""
    found: dict[PeerHint, None] = {}
    peers = doc.get("peers") if isinstance(doc, dict) else None
    for peer in peers if isinstance(peers, list) else []:
        port = peer.get("port") if isinstance(peer, dict) else None
        addresses = peer.get("addresses") if isinstance(peer, dict) else None
        if not (isinstance(port, int) and 0 < port < 65536 and isinstance(addresses, list)):
            continue
        for address in addresses:
            if not isinstance(address, str):
                continue  # IPv4Address would take an int
            try:
                found[PeerHint(str(ipaddress.IPv4Address(address)), port)] = None
            except ValueError:
                continue
    return list(found)


class HubClient:
    """Blocking REST calls to one hub, authenticated with one bearer token."""

    def __init__(
        self,
        url: str,
        token: str | None,
        ca_file: str | None = None,
        timeout: float = 120.0,
    ) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        verify: Any = ca_file if ca_file else True
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, verify=verify)

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise StoreUnavailable(f"cannot reach the hub {self.url}: {exc}") from None
        if response.status_code >= 400:
            try:
                message = str(response.json()["error"]["message"])
            except (ValueError, KeyError, TypeError):
                message = response.text[:200] or response.reason_phrase
            kind = _ERRORS.get(response.status_code, StoreUnavailable)
            if response.status_code == 401:
                message += f"; log in with `aetherfs login --hub {self.url}`"
            raise kind(f"hub: {message}")
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()

    @staticmethod
    def dataset_path(dataset: str, sub: str = "") -> str:
        base = f"/v1/datasets/{quote(dataset, safe='/')}"
        return f"{base}/-/{sub}" if sub else base

    # Calls --------------------------------------------------------------------------------
    def whoami(self) -> dict[str, Any]:
        doc: dict[str, Any] = self.json("GET", "/v1/whoami")
        return doc

    def info(self) -> dict[str, Any]:
        doc: dict[str, Any] = self.json("GET", "/v1/info")
        return doc

    def list_datasets(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.json("GET", "/v1/datasets")
        return found

    def dataset(self, dataset: str) -> dict[str, Any]:
        """The dataset document: its tags, and those the hub found damaged (`damaged`)."""
        doc: dict[str, Any] = self.json("GET", self.dataset_path(dataset))
        return doc

    def dataset_exists(self, dataset: str) -> bool:
        try:
            self.request("GET", self.dataset_path(dataset))
        except NotFound:
            return False
        return True

    def create_dataset(self, dataset: str) -> None:
        self.request("POST", "/v1/datasets", json={"name": dataset})

    def list_tags(self, dataset: str) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = self.json("GET", self.dataset_path(dataset, "tags"))
        return found

    def tag_history(self, dataset: str, tag: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.json(
            "GET", self.dataset_path(dataset, f"tags/{tag}/history")
        )
        return found

    def set_tag(
        self, dataset: str, tag: str, manifest: str, expect_seq: int | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"manifest": manifest}
        if expect_seq is not None:
            body["expect_seq"] = expect_seq
        doc: dict[str, Any] = self.json("PUT", self.dataset_path(dataset, f"tags/{tag}"), json=body)
        return doc

    def get_manifest(self, dataset: str, manifest: str) -> bytes:
        return self.request("GET", self.dataset_path(dataset, f"manifests/{manifest}")).content

    def put_manifest(self, dataset: str, manifest: str, stored: bytes) -> bool:
        path = self.dataset_path(dataset, f"manifests/{manifest}")
        return bool(self.json("PUT", path, content=stored)["created"])

    def has_pack(self, dataset: str, pack: str) -> bool:
        try:
            self.request("HEAD", self.dataset_path(dataset, f"packs/{pack}"))
        except NotFound:
            return False
        return True

    def put_pack(self, dataset: str, pack: str, data: bytes) -> bool:
        path = self.dataset_path(dataset, f"packs/{pack}")
        return bool(self.json("PUT", path, content=data)["created"])

    def get_pack_range(self, dataset: str, pack: str, start: int, length: int) -> bytes:
        headers = {"Range": f"bytes={start}-{start + length - 1}"}
        response = self.request("GET", self.dataset_path(dataset, f"packs/{pack}"), headers=headers)
        return response.content

    def keys(self, dataset: str) -> dict[str, Any]:
        doc: dict[str, Any] = self.json("GET", self.dataset_path(dataset, "keys"))
        return doc

    def diff(self, dataset: str, a: str, b: str) -> dict[str, Any]:
        doc: dict[str, Any] = self.json(
            "GET", self.dataset_path(dataset, "diff"), params={"a": a, "b": b}
        )
        return doc

    def peer_hints(self) -> list[PeerHint]:
        """Where the other agents of our fleet that reported lately listen (`GET
        /v1/fleet/peers`, with the agent's token; empty until our report names a `peer`)."""
        return _hints(self.json("GET", "/v1/fleet/peers"))
