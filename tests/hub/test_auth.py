"""Authentication and access control, each case a real HTTP request to a real hub.

OIDC tokens come from a real issuer served over HTTP in the test's nursery (discovery + JWKS),
signed with a real RSA key; the hub is not patched.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from aetherfs.hub.auth import BAD_CREDENTIALS, TokenRegistry
from aetherfs.hub.config import HubConfig, OidcConfig
from aetherfs.repository import StoreRepository
from tests.hub.helpers import RunningHub, publish, start_hub
from tests.hub.oidc_issuer import Issuer, new_key, start_issuer


@pytest.fixture
async def issuer(nursery: trio.Nursery) -> Issuer:
    return await start_issuer(nursery)


@pytest.fixture
async def oidc_hub(
    nursery: trio.Nursery, repo: StoreRepository, issuer: Issuer
) -> AsyncIterator[RunningHub]:
    config = HubConfig(
        listen="127.0.0.1:0",
        oidc=OidcConfig(
            issuer=issuer.url,
            audience="aetherfs",
            group_map=(("idp-data-readers", "readers"),),
            admin_groups=("platform",),
            jwks_min_refetch=0.5,
        ),
        token_cache_seconds=0.0,
    )
    running = await start_hub(nursery, repo, config)
    yield running
    running.cancel.cancel()


async def test_missing_malformed_unknown_and_revoked_tokens(hub: RunningHub) -> None:
    async with hub.client() as anon:
        r = await anon.get("/v1/whoami")
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        # Anonymous callers asked to log in (401), not told the dataset is forbidden.
        assert (await anon.get("/v1/datasets/team/x/-/tags")).status_code == 401
        for header in ("Basic dXNlcjpwdw==", "Bearer", "Bearer afs_nope", "Bearer xyz"):
            r = await anon.get("/v1/whoami", headers={"Authorization": header})
            assert r.status_code == 401, header
    token = hub.token("temp")
    async with hub.client(token) as client:
        assert (await client.get("/v1/whoami")).json()["subject"] == "user:temp"
        TokenRegistry(hub.repo.store).revoke("temp")
        await trio.sleep(0.4)  # the test hub caches tokens for 0.3 s
        r = await client.get("/v1/whoami")
        assert r.status_code == 401 and r.json()["error"]["message"] == BAD_CREDENTIALS


async def test_reader_cannot_write_and_refusals_leak_nothing(
    hub: RunningHub, tmp_path: Path
) -> None:
    pushed = publish(hub.repo, tmp_path / "v1", "team/geo-db", ["1.0.0"])
    reader = hub.token("rita")
    outsider = hub.token("olga")
    async with hub.client(hub.admin) as admin:
        await admin.put(
            "/v1/datasets/team/geo-db/-/grants", json={"subject": "user:rita", "role": "read"}
        )
    body = {"manifest": pushed.manifest_id.hex()}
    async with hub.client(reader) as r, hub.client(outsider) as o:
        assert (await r.get("/v1/datasets/team/geo-db/-/tags/1.0.0")).status_code == 200
        w = await r.put("/v1/datasets/team/geo-db/-/tags/stable", json=body)
        assert w.status_code == 403 and "write role" in w.json()["error"]["message"]
        assert (await r.get("/v1/datasets/team/geo-db/-/grants")).status_code == 403
        assert (await r.delete("/v1/datasets/team/geo-db")).status_code == 403
        # An outsider gets the same answer for a dataset that exists and one that does not.
        exists = await o.get("/v1/datasets/team/geo-db/-/tags")
        missing = await o.get("/v1/datasets/team/nothing/-/tags")
        assert exists.status_code == missing.status_code == 403
        assert exists.json() == missing.json()


async def test_anyone_grant_makes_a_public_dataset(hub: RunningHub, tmp_path: Path) -> None:
    publish(hub.repo, tmp_path / "v1", "pub/data", ["latest"])
    async with hub.client(hub.admin) as admin:
        await admin.put(
            "/v1/datasets/pub/data/-/grants", json={"subject": "anyone", "role": "read"}
        )
        bad = await admin.put(
            "/v1/datasets/pub/data/-/grants", json={"subject": "anyone", "role": "write"}
        )
        assert bad.status_code == 400
    async with hub.client() as anon:
        assert (await anon.get("/v1/datasets/pub/data/-/tags")).status_code == 200


async def test_oidc_tokens(oidc_hub: RunningHub, issuer: Issuer, tmp_path: Path) -> None:
    publish(oidc_hub.repo, tmp_path / "v1", "team/geo-db", ["1.0.0"])
    async with oidc_hub.client(oidc_hub.admin) as admin:
        await admin.put(
            "/v1/datasets/team/geo-db/-/grants", json={"subject": "group:readers", "role": "read"}
        )
    url = "/v1/datasets/team/geo-db/-/tags"

    async def status(token: str) -> int:
        async with oidc_hub.client(token) as client:
            return (await client.get(url)).status_code

    # A member of the mapped IdP group reads; the principal names the user and mapped group.
    good = issuer.token("alice", groups=("idp-data-readers",))
    assert await status(good) == 200
    async with oidc_hub.client(good) as client:
        me = (await client.get("/v1/whoami")).json()
    assert me == {
        "subject": "user:alice",
        "kind": "user",
        "name": "alice",
        "groups": ["readers"],
        "admin": False,
        "via": "oidc",
    }
    assert await status(issuer.token("bob")) == 403  # valid, but no grant
    assert await status(issuer.token("alice", groups=("idp-data-readers",), lifetime=-120)) == 401
    assert await status(issuer.token("alice", audience="someone-else")) == 401
    assert await status(issuer.token("alice", key=new_key())) == 401  # wrongly signed
    assert await status(issuer.token("alice", issuer="http://127.0.0.1:1")) == 401
    assert await status(good[:-4] + "AAAA") == 401  # tampered signature
    # Admin group from the IdP: hub admin.
    async with oidc_hub.client(issuer.token("carol", groups=("platform",))) as client:
        assert (await client.get("/v1/datasets/team/geo-db/-/grants")).status_code == 200


async def test_oidc_key_rotation_refetches_jwks(
    oidc_hub: RunningHub, issuer: Issuer, tmp_path: Path
) -> None:
    async with oidc_hub.client(issuer.token("alice")) as client:
        assert (await client.get("/v1/whoami")).status_code == 200
    before = issuer.jwks_requests
    issuer.key, issuer.kid = new_key(), "k2"
    await trio.sleep(0.6)  # an unknown kid re-reads the JWKS, at most every 0.5 s here
    async with oidc_hub.client(issuer.token("alice")) as client:
        assert (await client.get("/v1/whoami")).status_code == 200
    assert issuer.jwks_requests == before + 1
