"""/docs and /redoc work with no internet: their pages name no other host, and a real headless
chromium, cut off from everything but loopback, renders every operation of a token-guarded
server, authorizes with the bearer token and calls the API from the page.

Screenshots are kept in .ci/artifacts/ (git-ignored) for CI.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.main import create_app
from tests.browser import Page, chromium_or_skip, headless_chromium
from tests.conftest import make_settings
from tests.live_server import ROOT, LiveServer, live_server

ARTIFACTS = ROOT / ".ci" / "artifacts"
TOKEN = "tok-docs-" + "d" * 40
PAGES = ("/docs", "/redoc", "/docs/oauth2-redirect")
LINK = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")


@pytest.fixture(scope="module")
def guarded(
    tmp_path_factory: pytest.TempPathFactory, migrated_template: Path
) -> Iterator[LiveServer]:
    env = {"DOCKFLEET_API_TOKEN": TOKEN}
    with live_server(tmp_path_factory.mktemp("docs"), env, template=migrated_template) as srv:
        yield srv


@pytest.fixture
def chromium() -> str:
    return chromium_or_skip()


@pytest.fixture
def api(db_url: str) -> FastAPI:
    return create_app(make_settings(db_url), migrate=False)


async def test_the_pages_name_no_other_host_and_their_assets_are_served(api: FastAPI) -> None:
    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        for page in PAGES:
            response = await http.get(page)
            assert response.status_code == 200, page
            html = response.text
            assert "cdn" not in html.lower(), page
            assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", html, re.I), page
            for link in LINK.findall(html):
                assert link.startswith("/") and not link.startswith("//"), (page, link)
                asset = await http.get(link)
                assert asset.status_code == 200, (page, link)
                assert len(asset.content) > 500, (page, link)
        swagger = (await http.get("/docs")).text
        assert "/docs/static/swagger-ui-bundle.js" in swagger
        assert "/redoc/redoc.standalone.js" in (await http.get("/redoc")).text
        # the bundle behind it is the real Swagger UI, not a placeholder
        bundle = await http.get("/docs/static/swagger-ui-bundle.js")
        assert bundle.headers["content-type"].startswith("text/javascript")
        assert b"SwaggerUIBundle" in bundle.content and len(bundle.content) > 1_000_000


async def test_the_docs_pages_are_outside_the_schema_and_stay_open(guarded: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=guarded.url, timeout=10) as http:
        spec = (await http.get("/openapi.json")).json()
        assert not any(p.startswith(("/docs", "/redoc")) for p in spec["paths"])
        for path in (*PAGES, "/docs/static/swagger-ui.css", "/redoc/logo-mini.svg"):
            assert (await http.get(path)).status_code == 200, path
        assert (await http.get("/api/worker-hosts/")).status_code == 401


def _operations(spec: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in spec["paths"].items() for method in item}


def _assert_only_loopback(page: Page, origin: str) -> None:
    for url in page.requests:
        assert url.startswith((origin + "/", "data:", "blob:" + origin)), url
    assert not page.failed, page.failed


RENDERED_OPERATIONS = """
[...document.querySelectorAll('.opblock')].map(b => [
  b.querySelector('.opblock-summary-method').innerText.trim(),
  b.querySelector('.opblock-summary-path').getAttribute('data-path')])
"""
LIST_HOSTS = """document.querySelector(
  '.opblock-get .opblock-summary-path[data-path="/api/worker-hosts/"]').closest('.opblock')"""
LAST_STATUS = f"""(() => {{
  const cell = {LIST_HOSTS}.querySelector('.live-responses-table tr.response .response-col_status');
  return cell ? cell.innerText.trim() : null; }})()"""
REDOC_ENDPOINT = """[...document.querySelectorAll('span[type="post"]')].some(s =>
  s.innerText.trim() === 'POST' && s.nextElementSibling
  && s.nextElementSibling.innerText.trim() === '/api/worker-hosts/')"""


async def _click(page: Page, selector: str) -> None:
    clicked = await page.evaluate(
        f"(() => {{ const e = {selector}; if (!e) return false; e.click(); return true; }})()"
    )
    assert clicked, f"nothing to click: {selector}"


async def _execute_list_hosts(page: Page) -> str:
    """Press "Execute" on GET /api/worker-hosts/; the status code Swagger UI shows."""
    clear = f"{LIST_HOSTS}.querySelector('button.btn-clear')"
    if await page.evaluate(f"!!{clear}"):
        await _click(page, clear)
        await page.wait_for(f"{LAST_STATUS} === null")
    await _click(page, f"{LIST_HOSTS}.querySelector('button.execute')")
    status: str = await page.wait_for(LAST_STATUS)
    return status


async def test_swagger_ui_renders_offline_and_calls_the_api_with_the_token(
    guarded: LiveServer, chromium: str
) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        spec = (await http.get(f"{guarded.url}/openapi.json")).json()
    async with headless_chromium(chromium, guarded.log.with_name("chromium.log")) as page:
        await page.goto(f"{guarded.url}/docs")
        await page.wait_for("document.querySelectorAll('.opblock').length > 0")
        rendered = {tuple(op) for op in await page.evaluate(RENDERED_OPERATIONS)}
        assert rendered == _operations(spec)
        text = (await page.evaluate("document.body.innerText")).replace("\u200b", "")
        assert "POST" in text and "/api/worker-hosts/" in text
        assert await page.evaluate(
            "[...document.querySelectorAll('button.authorize')]"
            ".some(b => b.innerText.trim() === 'Authorize')"
        )
        await page.screenshot(ARTIFACTS / "docs-swagger-ui.png")

        # Without the token the page's own call is refused by the gate ...
        await _click(page, f"{LIST_HOSTS}.querySelector('.opblock-summary-control')")
        await page.wait_for(f"!!{LIST_HOSTS}.querySelector('.try-out__btn')")
        await _click(page, f"{LIST_HOSTS}.querySelector('.try-out__btn')")
        assert await _execute_list_hosts(page) == "401"
        # ... then "Authorize" takes the bearer token, and the same call goes through.
        await _click(page, "document.querySelector('.btn.authorize')")
        await page.wait_for("!!document.querySelector('.modal-ux input')")
        await page.evaluate("document.querySelector('.modal-ux input').focus()")
        await page.send("Input.insertText", text=TOKEN)
        await _click(page, "document.querySelector('.modal-ux button.authorize')")
        await page.wait_for("!!document.querySelector('.modal-ux button.btn-done')")
        await _click(page, "document.querySelector('.modal-ux button.btn-done')")
        await page.wait_for("!!document.querySelector('.btn.authorize.locked')")
        assert await _execute_list_hosts(page) == "200"
        curl = await page.evaluate(f"{LIST_HOSTS}.querySelector('.curl').innerText")
        assert "Authorization: Bearer" in curl
        await page.screenshot(ARTIFACTS / "docs-swagger-ui-authorized.png")
        _assert_only_loopback(page, guarded.url)
        assert not page.console_errors, page.console_errors


async def test_redoc_renders_offline(guarded: LiveServer, chromium: str) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        spec = (await http.get(f"{guarded.url}/openapi.json")).json()
    async with headless_chromium(chromium, guarded.log.with_name("chromium-redoc.log")) as page:
        await page.goto(f"{guarded.url}/redoc")
        await page.wait_for("document.querySelectorAll('[data-section-id^=\"operation/\"]').length")
        text = await page.evaluate("document.body.innerText")
        assert "/api/worker-hosts/" in text
        # the endpoint box of "Register a worker host": a POST badge, then the path
        assert await page.evaluate(REDOC_ENDPOINT)
        summaries = [op["summary"] for item in spec["paths"].values() for op in item.values()]
        missing = [s for s in summaries if s not in text]
        assert not missing, missing
        assert "Something went wrong" not in text
        assert "HTTPBearer" in text  # the token scheme is shown on every guarded operation
        await page.screenshot(ARTIFACTS / "docs-redoc.png", full_page=False)
        _assert_only_loopback(page, guarded.url)
        assert not page.console_errors, page.console_errors
