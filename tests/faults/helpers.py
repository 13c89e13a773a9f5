"""What the fault tests share: short timers, an app with its client, and waits with deadlines."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI

from app.config import Settings
from app.main import create_app, start, stop
from tests.conftest import make_settings

# Short timers, so a fault plays out in seconds: a host is lost after 3 s of failing checks.
FAULT_TIMERS: dict[str, Any] = {
    "health_interval_seconds": 0.5,
    "host_lost_after_seconds": 3,
    "docker_timeout_seconds": 2,
    "stop_timeout_seconds": 1,
    "lease_seconds": 6,
    "scheduler_interval_seconds": 0.2,
}


def fault_settings(db_url: str, **overrides: Any) -> Settings:
    """Test settings with the fault timers."""
    return make_settings(db_url, **{**FAULT_TIMERS, **overrides})


@asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """A started app (monitor, scheduler, reconciler) and an in-process client."""
    app = create_app(settings, migrate=False)
    await start(app.state.dockfleet)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://dockfleet.test", timeout=60
        ) as client:
            yield app, client
    finally:
        await stop(app.state.dockfleet)


def ours(app: FastAPI) -> str:
    """The label every container of this app's orchestrator instance carries."""
    return f"dockfleet.instance={app.state.dockfleet.instance_id}"


async def until(
    check: Callable[[], Awaitable[Any]], within: float, what: str, poll: float = 0.1
) -> tuple[Any, float]:
    """Poll `check` until it returns something truthy; (that value, seconds it took)."""
    started = time.monotonic()
    while True:
        value = await check()
        if value:
            return value, time.monotonic() - started
        assert time.monotonic() - started < within, f"{what}: not within {within}s"
        await asyncio.sleep(poll)


async def statuses(client: httpx.AsyncClient, run_ids: list[int]) -> list[str]:
    """The status of each run, in order."""
    out = []
    for rid in run_ids:
        r = await client.get(f"/api/runs/{rid}/")
        assert r.status_code == 200, r.text
        out.append(r.json()["status"])
    return out


async def host_view(client: httpx.AsyncClient, host_id: int) -> dict[str, Any]:
    r = await client.get(f"/api/worker-hosts/{host_id}/")
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data
