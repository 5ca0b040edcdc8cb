"""Agent configuration: TOML and flags into frozen values; refusals that say what to fix."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from aetherfs.agent.config import AgentConfig, Subscription, build_config
from aetherfs.errors import InvalidInput


def config(file: dict[str, Any], **flags: Any) -> AgentConfig:
    return build_config(file, flags, {}, Path("/keys"), "file:///default-store")


def test_toml_values_and_flags_override() -> None:
    c = config(
        {
            "data_root": "/srv/aetherfs",
            "subscribe": ["team/geo-db:stable", "team/tiles"],
            "cache_limit": "2G",
            "keep_versions": 3,
            "listen": {"http": "127.0.0.1:9000", "socket": ""},
        },
        keep_versions=5,
        subscribe=["team/geo-db:canary"],
    )
    assert c.data_root == Path("/srv/aetherfs")
    assert c.subscriptions == (Subscription("team/geo-db", "canary"),)
    assert c.cache_limit == 2 * 1024**3 and c.keep_versions == 5
    assert c.listen.http == "127.0.0.1:9000" and c.listen.socket is None
    assert c.listen.grpc_socket == Path("/srv/aetherfs/.agent/grpc.sock")
    assert c.cache_dir == Path("/srv/aetherfs/.agent/cache")
    assert c.store_url == "file:///default-store"
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.keep_versions = 1  # type: ignore[misc]


def test_subscription_defaults_to_latest() -> None:
    c = config({"data_root": "/d", "subscribe": "team/geo-db"})
    assert [str(s) for s in c.subscriptions] == ["team/geo-db:latest"]


@pytest.mark.parametrize(
    ("file", "message"),
    [
        ({}, "needs a data root"),
        ({"data_root": "/d", "subscribe": ["Bad Name:stable"]}, "subscription 'Bad Name:stable'"),
        ({"data_root": "/d", "listen": {"http": "0.0.0.0:80"}}, "not a loopback address"),
        ({"data_root": "/d", "listen": {"grpc": "7421"}}, "HOST:PORT"),
        ({"data_root": "/d", "cache_limit": "lots"}, "not a size"),
        ({"data_root": "/d", "poll_interval": 0}, "poll_interval > 0"),
        ({"data_root": "/d", "colour": "blue"}, "unknown agent settings: colour"),
    ],
)
def test_refusals(file: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        config(file)
