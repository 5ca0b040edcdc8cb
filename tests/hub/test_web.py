"""The hub's web pages in headless Chromium: log in, datasets, tags and history, a version's
files, a diff, the fleet. Screenshots go to AETHERFS_SCREENSHOTS (docs/screenshots/ when the
checked-in ones are refreshed), else the test's temporary directory."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from aetherfs.ops.push import push_directory
from tests.hub.helpers import RunningHub, make_tree
from tests.hub.webdriver import chromium_binaries, headless_chromium

pytestmark = pytest.mark.skipif(chromium_binaries() is None, reason="needs chromium")


async def test_pages_in_headless_chromium(hub: RunningHub, tmp_path: Path) -> None:
    shots = Path(os.environ.get("AETHERFS_SCREENSHOTS", tmp_path / "shots"))
    src = tmp_path / "src"
    make_tree(src, seed=1, size=2_000_000)
    v1 = push_directory(hub.repo, src, "team/geo-db", ["1.0.0", "stable", "latest"])
    with (src / "sub/table.csv").open("a") as f:
        f.write("new,row\n" * 2000)
    (src / "sub/new.json").write_text('{"added": true}\n')
    v2 = push_directory(hub.repo, src, "team/geo-db", ["1.1.0", "latest"])
    make_tree(tmp_path / "other", seed=5)
    push_directory(hub.repo, tmp_path / "other", "ml/embeddings", ["2026.11.24", "latest"])
    hub.repo.set_tag("team/geo-db", "canary", v2.manifest_id)
    async with httpx.AsyncClient(base_url=hub.url) as c:
        for agent, site, dataset, tag, manifest in (
            ("edge-ams-1", "ams", "team/geo-db", "stable", v1.manifest_id.hex()),
            ("edge-ams-2", "ams", "team/geo-db", "canary", v2.manifest_id.hex()),
            ("edge-fra-1", "fra", "team/geo-db", "stable", v1.manifest_id.hex()),
        ):
            token = hub.token(agent, kind="agent")
            report = {"site": site, "datasets": {dataset: {"tag": tag, "manifest": manifest}}}
            r = await c.put(
                f"/v1/agents/{agent}/status",
                json=report,
                headers={"Authorization": f"Bearer {token}"},
            )
            assert r.status_code == 204

    async with headless_chromium() as browser:
        await browser.go(f"{hub.url}/ui/")
        assert "No dataset you may read" in await browser.text()
        await browser.go(f"{hub.url}/ui/fleet")
        assert "/ui/login" in await browser.url()  # the fleet needs a login
        await browser.type_into("#token", hub.admin)
        await browser.click("#login")
        await browser.wait_for_text("edge-ams-2", "canary")
        assert (await browser.url()).endswith("/ui/fleet")
        await browser.screenshot(shots / "fleet.png")

        await browser.go(f"{hub.url}/ui/")
        text = await browser.text()
        assert "team/geo-db" in text and "ml/embeddings" in text
        await browser.screenshot(shots / "datasets.png")

        await browser.go(f"{hub.url}/ui/d/team/geo-db")
        text = await browser.text()
        assert "canary" in text and v2.manifest_id.hex()[:12] in text
        await browser.screenshot(shots / "dataset.png")

        await browser.go(f"{hub.url}/ui/d/team/geo-db/-/history/latest")
        text = await browser.text()
        assert v1.manifest_id.hex()[:12] in text and v2.manifest_id.hex()[:12] in text
        await browser.screenshot(shots / "history.png")

        await browser.go(f"{hub.url}/files/team/geo-db/1.1.0/sub/")
        text = await browser.text()
        assert "table.csv" in text and "new.json" in text
        await browser.screenshot(shots / "files.png")

        await browser.go(f"{hub.url}/ui/d/team/geo-db/-/diff?a=1.0.0&b=1.1.0")
        text = await browser.text()
        assert "sub/new.json" in text and "added" in text and "sub/table.csv" in text
        assert "data.bin" not in text  # unchanged
        await browser.screenshot(shots / "diff.png")

        await browser.go(f"{hub.url}/ui/logout")
        await browser.go(f"{hub.url}/ui/d/team/geo-db")
        assert "/ui/login" in await browser.url()
