"""create_app(settings): the FastAPI app, its routers, error handling and background loops."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, Depends, FastAPI

from app import __version__, docs, errors, meta, service
from app.auth import TokenGate
from app.config import Settings
from app.db import Database, upgrade
from app.deps import AppState, require_token
from app.engine.client import Deadlines
from app.engine.pool import DockerPool
from app.hosts import store as hosts_store
from app.hosts.monitor import HealthMonitor
from app.hosts.routes import router as hosts_router
from app.hosts.secrets import secrets_root
from app.ingress import BodyLimit, TrailingSlash
from app.openapi import COMMON
from app.tasks.policy import TaskPolicy

log = logging.getLogger("dockfleet")

DESCRIPTION = """
dockfleet keeps a registry of Docker worker hosts (a local socket, Docker over TCP+TLS, or Docker
behind an SSH tunnel), checks their health continuously, and runs ordered lists of containerised
tasks on the least-loaded healthy host that has the GPUs and free slots they need.

Errors are JSON `{"detail": ..., "code": ...}`; validation errors are 422 and name the field.
Paths work with or without their trailing slash.
"""


def _routers() -> list[APIRouter]:
    from app import rooms

    return [hosts_router, *rooms.routers()]


def create_app(settings: Settings | None = None, *, migrate: bool = True) -> FastAPI:
    """Build the app; background loops start in its lifespan (not under ASGITransport)."""
    settings = settings or Settings()
    db = Database(settings.database_url, settings.db_busy_timeout_seconds)
    deadlines = Deadlines(call=settings.docker_timeout_seconds, pull=settings.pull_timeout_seconds)
    pool = DockerPool(deadlines, settings.networks(), secrets_root(settings.secrets_dir))
    state = AppState(settings=settings, db=db, pool=pool, instance_id=settings.instance_id or "")
    state.tokens = settings.tokens()
    state.policy = TaskPolicy.of(settings)
    pool.on_host_key = lambda host_id, key: hosts_store.pin_host_key(db, host_id, key)
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
        docs_url=None,  # app.docs serves /docs and /redoc with their own assets (no CDN)
        redoc_url=None,
    )
    app.state.dockfleet = state
    errors.install(app)
    api = APIRouter(prefix="/api", dependencies=[Depends(require_token)], responses=COMMON)
    for router in _routers():
        api.include_router(router)
    app.include_router(api)

    app.include_router(service.router)
    docs.install(app)
    # Outermost last: the slash is normalised, then the token checked, then the body bounded.
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(TokenGate, tokens=state.tokens, metrics_public=settings.metrics_public)
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
    """For `uvicorn --factory app.main:app_factory` (logging set up from the settings)."""
    from app import logs

    settings = Settings()
    logs.configure(settings)
    _end_streams_on_exit()
    return create_app(settings)


def _end_streams_on_exit() -> None:
    """Under the uvicorn command (whose Server we do not make), end the event streams when it
    is told to exit: uvicorn waits for every open connection, and a stream never ends by
    itself (`dockfleet serve` does the same with its own Server class). The factory runs in
    the main thread after uvicorn installed its handlers: ours chains to them."""
    import signal
    import threading

    from app.events.store import BUS

    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous = signal.getsignal(sig)
        if not callable(previous):
            continue

        def handler(signum: int, frame: Any, previous: Any = previous) -> None:
            BUS.close()
            previous(signum, frame)

        signal.signal(sig, handler)
