"""A small W3C WebDriver client (over httpx) driving headless Chromium via chromedriver."""

from __future__ import annotations

import base64
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import trio

from tests.fixtures.ports import free_port

CHROME_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1200,800",
]


def chromium_binaries() -> tuple[str, str] | None:
    chrome = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    return (chrome, driver) if chrome and driver else None


class Browser:
    def __init__(self, http: httpx.AsyncClient, session: str) -> None:
        self.http = http
        self.session = session

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        r = await self.http.request(method, f"/session/{self.session}{path}", json=body)
        r.raise_for_status()
        return r.json()["value"]

    async def go(self, url: str) -> None:
        await self._call("POST", "/url", {"url": url})

    async def text(self) -> str:
        return str(
            await self._call(
                "POST", "/execute/sync", {"script": "return document.body.innerText;", "args": []}
            )
        )

    async def script(self, js: str, *args: Any) -> Any:
        """Run `js` (a function body: `return ...`) in the page and return its value."""
        return await self._call("POST", "/execute/sync", {"script": js, "args": list(args)})

    async def resize(self, width: int, height: int) -> None:
        await self._call("POST", "/window/rect", {"width": width, "height": height})

    async def wait_for_text(self, *wanted: str, timeout: float = 15) -> str:
        """The page's text once it holds every one of `wanted` (a click's navigation may
        still be under way when the click returns); fails after `timeout` seconds."""
        text = ""
        with trio.move_on_after(timeout):
            while True:
                text = await self.text()
                if all(w in text for w in wanted):
                    return text
                await trio.sleep(0.1)
        raise AssertionError(f"the page never showed {wanted!r}; it shows {text[:500]!r}")

    async def title(self) -> str:
        return str(await self._call("GET", "/title"))

    async def url(self) -> str:
        return str(await self._call("GET", "/url"))

    async def type_into(self, css: str, text: str) -> None:
        element = await self._call("POST", "/element", {"using": "css selector", "value": css})
        element_id = next(iter(element.values()))
        await self._call("POST", f"/element/{element_id}/value", {"text": text})

    async def click(self, css: str) -> None:
        element = await self._call("POST", "/element", {"using": "css selector", "value": css})
        element_id = next(iter(element.values()))
        await self._call("POST", f"/element/{element_id}/click", {})

    async def screenshot(self, path: Path) -> None:
        png = base64.b64decode(await self._call("GET", "/screenshot"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png)


@asynccontextmanager
async def headless_chromium() -> AsyncIterator[Browser]:
    found = chromium_binaries()
    assert found, "chromium and chromedriver are needed (Debian packages chromium, chromium-driver)"
    chrome, driver = found
    port = free_port()
    profile = tempfile.mkdtemp(prefix="aetherfs-chromium-")
    process = subprocess.Popen(
        [driver, f"--port={port}", "--allowed-ips=127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            with trio.fail_after(30):
                while True:
                    try:
                        if (await http.get("/status")).json()["value"]["ready"]:
                            break
                    except httpx.HTTPError:
                        pass
                    await trio.sleep(0.1)
            caps = {
                "capabilities": {
                    "alwaysMatch": {
                        "browserName": "chrome",
                        "goog:chromeOptions": {
                            "binary": chrome,
                            "args": [*CHROME_FLAGS, f"--user-data-dir={profile}"],
                        },
                    }
                }
            }
            r = await http.post("/session", json=caps)
            r.raise_for_status()
            session = r.json()["value"]["sessionId"]
            try:
                yield Browser(http, session)
            finally:
                await http.delete(f"/session/{session}")
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(profile, ignore_errors=True)
