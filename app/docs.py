"""The docs pages, /docs (Swagger UI) and /redoc, served with their own JavaScript and CSS.

dockfleet runs on LAN-only fleets, often with no internet: FastAPI's default pages load Swagger
UI and ReDoc from a CDN and stay blank there. The assets come from the pinned
`fastapi-standalone-docs` package (Swagger UI 5.33.1, ReDoc 2.5.4, FastAPI's favicon) and are
served under /docs/static, /docs/fastapi and /redoc/; the pages name no other host. Like
/openapi.json they need no token (the TokenGate guards only /api and /metrics); Swagger UI's
"Authorize" button takes the bearer token (the scheme of `app.deps.require_token`) and keeps
it in the browser's local storage across reloads (`persistAuthorization`).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_URL = "/docs"
REDOC_URL = "/redoc"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"

SWAGGER_UI_PARAMETERS: dict[str, object] = {
    "persistAuthorization": True,  # the token survives a reload of the page
    "validatorUrl": None,  # no badge fetched from validator.swagger.io
    "displayRequestDuration": True,
}


def assets_dir() -> Path:
    """Where the installed fastapi-standalone-docs keeps swagger/, redoc/ and fastapi/."""
    return Path(str(files("fastapi_standalone_docs") / "static"))


def install(app: FastAPI) -> None:
    """Add /docs, /docs/oauth2-redirect and /redoc with their assets to an app built with
    `docs_url=None, redoc_url=None` (so FastAPI's CDN pages are not registered)."""
    static = assets_dir()
    openapi_url = app.openapi_url or "/openapi.json"

    def root(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        base = root(request)
        return get_swagger_ui_html(
            openapi_url=base + openapi_url,
            title=f"{app.title} - API docs",
            swagger_js_url=f"{base}{DOCS_URL}/static/swagger-ui-bundle.js",
            swagger_css_url=f"{base}{DOCS_URL}/static/swagger-ui.css",
            swagger_favicon_url=f"{base}{DOCS_URL}/fastapi/favicon.png",
            oauth2_redirect_url=base + OAUTH2_REDIRECT_URL,
            swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
        )

    @app.get(OAUTH2_REDIRECT_URL, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(REDOC_URL, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        base = root(request)
        return get_redoc_html(
            openapi_url=base + openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{base}{REDOC_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{base}{DOCS_URL}/fastapi/favicon.png",
            with_google_fonts=False,
        )

    app.mount(f"{DOCS_URL}/static", StaticFiles(directory=static / "swagger"), "swagger-assets")
    app.mount(f"{DOCS_URL}/fastapi", StaticFiles(directory=static / "fastapi"), "docs-favicon")
    # ReDoc's bundle (as the package patches it) loads its logo from <page path>/logo-mini.svg.
    app.mount(REDOC_URL, StaticFiles(directory=static / "redoc"), "redoc-assets")
