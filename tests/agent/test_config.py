"""Agent configuration: TOML and flags into frozen values; refusals that say what to fix."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from aetherfs.agent.config import AgentConfig, Subscription, build_config
from aetherfs.agent.peers import bandwidth_policy
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


def test_bandwidth_caps_and_priorities_from_toml_and_flags() -> None:
    c = config(
        {
            "data_root": "/d",
            "subscribe": ["team/geo:stable", "team/tiles"],
            "store_rate": "30M",
            "priority": {"team/geo:stable": 10, "team/tiles:latest": -1},
            "peers": {"upload_rate": "20M", "download_rate": "80M"},
        },
        peer_upload_rate="5M",
        priority=["team/tiles:latest=3"],
    )
    assert c.peers.upload_rate == 5 * 1024**2 and c.peers.download_rate == 80 * 1024**2
    assert c.priority(Subscription("team/geo", "stable")) == 10
    assert c.priority(Subscription("team/tiles", "latest")) == 3  # the flag wins
    policy = bandwidth_policy(c)
    assert (policy.peer_upload, policy.peer_download, policy.store_read) == (
        5 * 1024**2,
        80 * 1024**2,
        30 * 1024**2,
    )
    uncapped = bandwidth_policy(config({"data_root": "/d"}))
    assert (uncapped.peer_upload, uncapped.peer_download, uncapped.store_read) == (None,) * 3
    assert config({"data_root": "/d"}).priority(Subscription("a", "latest")) == 0


@pytest.mark.parametrize(
    ("file", "flags", "message"),
    [
        ({"peers": {"upload_rate": "fast"}}, {}, "peers.upload_rate: not a size"),
        ({}, {"peer_download_rate": "-1M"}, "peers.download_rate: a size cannot be negative"),
        ({"priority": {"team/other:stable": 1}}, {}, "not a subscription of this agent"),
        ({"priority": {"team/geo:stable": "high"}}, {}, "a whole number, not 'high'"),
        ({"priority": ["team/geo:stable"]}, {}, "priority in the agent config is a table"),
        ({}, {"priority": ["team/geo:stable"]}, "--priority is NAME:CHANNEL=N"),
    ],
)
def test_bandwidth_and_priority_refusals(
    file: dict[str, Any], flags: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        config({"data_root": "/d", "subscribe": ["team/geo:stable"], **file}, **flags)
