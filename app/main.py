"""create_app(settings): the FastAPI app, its routers, error handling and background loops."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy import literal
from sqlmodel import select
from starlette.types import ASGIApp, Receive, Scope, Send

from app import __version__, errors, meta
from app.config import Settings
from app.db import Database, upgrade
from app.deps import AppState, require_token
from app.engine.pool import DockerPool
from app.hosts.monitor import HealthMonitor
from app.hosts.routes import router as hosts_router
from app.metrics import render_metrics
from app.openapi import ERRORS

log = logging.getLogger("dockfleet")

DESCRIPTION = """
dockfleet keeps a registry of Docker worker hosts (a local socket, Docker over TCP+TLS, or Docker
behind an SSH tunnel), checks their health continuously, and runs ordered lists of containerised
tasks on the least-loaded healthy host that has the GPUs and free slots they need.

Errors are JSON `{"detail": ..., "code": ...}`; validation errors are 422 and name the field.
Paths work with or without their trailing slash.
"""


class TrailingSlash:
    """Serve /api/x as /api/x/ without a redirect (the runbook uses trailing slashes)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path.startswith("/api/") and not path.endswith("/"):
                scope = {**scope, "path": path + "/"}
                if scope.get("raw_path"):
                    scope["raw_path"] = scope["raw_path"] + b"/"
        await self.app(scope, receive, send)


def _routers() -> list[APIRouter]:
    from app import rooms

    return [hosts_router, *rooms.routers()]


def create_app(settings: Settings | None = None, *, migrate: bool = True) -> FastAPI:
    """Build the app; background loops start in its lifespan (not under ASGITransport)."""
    settings = settings or Settings()
    db = Database(settings.database_url)
    pool = DockerPool(settings.docker_timeout_seconds, settings.networks())
    state = AppState(settings=settings, db=db, pool=pool, instance_id=settings.instance_id or "")
    state.monitor = HealthMonitor(db, pool, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if migrate:
            await upgrade(settings.database_url)
        await start(state)
        try:
            yield
        finally:
            await stop(state)

    app = FastAPI(
        title="dockfleet",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        redirect_slashes=False,
    )
    app.state.dockfleet = state
    errors.install(app)
    api = APIRouter(prefix="/api", dependencies=[Depends(require_token)], responses=ERRORS(401))
    for router in _routers():
        api.include_router(router)
    app.include_router(api)

    @app.get(
        "/healthz",
        tags=["service"],
        summary="Process alive and database reachable",
        description="200 `{status, database, version}`, or 503 when the database is unreachable.",
        responses={503: {"description": "Database unreachable"}},
    )
    async def healthz() -> JSONResponse:
        try:
            async with db.sessions() as session:
                await session.exec(select(literal(1)))
        except Exception as exc:
            log.error("database unreachable: %s", type(exc).__name__)
            return JSONResponse({"status": "error", "database": "unreachable"}, status_code=503)
        body = {"status": "ok", "database": "ok", "version": __version__}
        return JSONResponse({**body, "instance_id": state.instance_id})

    @app.get(
        "/metrics",
        tags=["service"],
        summary="Prometheus metrics",
        description="Hosts (health, staleness, load) and runs by status, as Prometheus text.",
        response_class=PlainTextResponse,
    )
    async def metrics() -> str:
        return await render_metrics(state)

    app.add_middleware(TrailingSlash)
    return app


async def start(state: AppState) -> None:
    """Resolve the instance id, then start every background service."""
    if not state.instance_id:
        state.instance_id = await meta.instance_id(state.db)
    from app import rooms

    await rooms.start_services(state)
    assert state.monitor is not None
    state.monitor.start()


async def stop(state: AppState) -> None:
    """Stop loops, close tunnels and clients, dispose of the engine."""
    from app import rooms

    if state.monitor is not None:
        await state.monitor.stop()
    await rooms.stop_services(state)
    await state.pool.close()
    await state.db.dispose()


def app_factory() -> Any:
    """For `uvicorn --factory app.main:app_factory`."""
    return create_app()
