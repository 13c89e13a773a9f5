"""Headless Debian `chromium` driven over the DevTools protocol (aiohttp's websocket client).

`headless_chromium()` starts one with a fresh profile, a debugging port on loopback and no way
out: every host name resolves to nothing but 127.0.0.1 (`--host-resolver-rules`), and every
request that is not to loopback goes to a proxy port nobody listens on, so a page that needs
the internet fails exactly as it would on a machine without any. `Page` records every request
the page makes, evaluates JavaScript and takes screenshots; every call has a deadline.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import aiohttp
import pytest

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--window-size=1280,2200",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
    # port 9 (discard) on loopback: nothing listens, so anything proxied fails at once;
    # chromium never proxies loopback itself
    "--proxy-server=http://127.0.0.1:9",
]
CALL_TIMEOUT = 20.0  # seconds for one DevTools command


def chromium_or_skip() -> str:
    """The chromium binary; without one, skip (or fail with CI=true)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    reason = "needs Debian's chromium (make test installs it when run as root)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true: {reason}")
    pytest.skip(reason)


class Page:
    """One page target: send commands, keep its events, evaluate, screenshot."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.requests: list[str] = []  # every URL the page asked for, in order
        self.failed: list[tuple[str, str]] = []  # (url, error text) of requests that failed
        self._urls: dict[str, str] = {}
        self.console_errors: list[str] = []
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if "id" in data:
                future = self.pending.pop(data["id"], None)
                if future is not None and not future.done():
                    future.set_result(data)
            else:
                self._event(data.get("method", ""), data.get("params", {}))
        for future in self.pending.values():
            if not future.done():
                future.set_exception(ConnectionError("DevTools connection closed"))

    def _event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Network.requestWillBeSent":
            url = params["request"]["url"]
            self.requests.append(url)
            self._urls[params["requestId"]] = url
        elif method == "Network.loadingFailed":
            url = self._urls.get(params["requestId"], "?")
            self.failed.append((url, params.get("errorText", "")))
        elif method == "Runtime.exceptionThrown":
            self.console_errors.append(json.dumps(params.get("exceptionDetails", {}))[:500])

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command; its `result`, or RuntimeError with the protocol's error."""
        call_id = next(self.ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[call_id] = future
        await self.ws.send_str(json.dumps({"id": call_id, "method": method, "params": params}))
        reply = await asyncio.wait_for(future, CALL_TIMEOUT)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    async def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression (promises awaited)."""
        result = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:80]}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, within: float = 30.0) -> Any:
        """Poll `expression` until it is truthy; its value, or TimeoutError with the page text."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            value = await self.evaluate(expression)
            if value:
                return value
            await asyncio.sleep(0.2)
        text = await self.evaluate("document.body ? document.body.innerText.slice(0, 2000) : ''")
        raise TimeoutError(f"not true after {within}s: {expression[:120]}\npage text: {text!r}")

    async def goto(self, url: str) -> None:
        """Navigate and wait for the load event (its deadline: CALL_TIMEOUT)."""
        await self.send("Page.navigate", url=url)
        await self.wait_for("document.readyState === 'complete'", within=CALL_TIMEOUT)

    async def screenshot(self, path: Path, *, full_page: bool = True) -> Path:
        """A PNG at `path`: of the whole page (up to 8000 px high), or of the window."""
        metrics = await self.send("Page.getLayoutMetrics")
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        view = metrics.get("cssLayoutViewport") or metrics["layoutViewport"]
        height = size["height"] if full_page else view["clientHeight"]
        clip = {"x": 0, "y": 0, "width": view["clientWidth"], "height": min(height, 8000)}
        clip["scale"] = 1
        shot = await self.send(
            "Page.captureScreenshot", format="png", clip=clip, captureBeyondViewport=True
        )
        await asyncio.to_thread(_write, path, base64.b64decode(shot["data"]))
        return path


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _port_in(profile: Path) -> int | None:
    marker = profile / "DevToolsActivePort"  # chromium writes its port here when it listens
    first = marker.read_text().splitlines()[:1] if marker.exists() else []
    return int(first[0]) if first and first[0].isdigit() else None


async def _devtools_port(profile: Path, proc: asyncio.subprocess.Process, within: float) -> int:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            raise RuntimeError(f"chromium exited with {proc.returncode}")
        port = await asyncio.to_thread(_port_in, profile)
        if port is not None:
            return port
        await asyncio.sleep(0.1)
    raise TimeoutError(f"chromium's DevTools port not up in {within}s")


async def _stop(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM to chromium's process group, SIGKILL after 10 s."""
    if proc.returncode is not None:
        return
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), 10)
    except TimeoutError:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await asyncio.wait_for(proc.wait(), 5)


@asynccontextmanager
async def headless_chromium(binary: str, log: Path, within: float = 30.0) -> AsyncIterator[Page]:
    """A fresh headless chromium with one blank page; stopped and its profile removed on exit."""
    profile = Path(tempfile.mkdtemp(prefix="dfl-chromium-"))
    argv = [*FLAGS, f"--user-data-dir={profile}", "--remote-debugging-address=127.0.0.1"]
    argv += ["--remote-debugging-port=0", "about:blank"]
    out = await asyncio.to_thread(log.open, "wb")
    try:
        proc = await asyncio.create_subprocess_exec(
            binary, *argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    finally:
        out.close()
    try:
        port = await _devtools_port(profile, proc, within)
        http_timeout = aiohttp.ClientTimeout(total=CALL_TIMEOUT)
        async with aiohttp.ClientSession(timeout=http_timeout) as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as resp:
                targets = await resp.json()
            page_ws = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
            async with http.ws_connect(page_ws, max_msg_size=64 * 2**20) as ws:
                page = Page(ws)
                for domain in ("Page", "Network", "Runtime"):
                    await page.send(f"{domain}.enable")
                try:
                    yield page
                finally:
                    page.reader.cancel()
    finally:
        await _stop(proc)
        shutil.rmtree(profile, ignore_errors=True)
