"""Schedules under a clock the tests move: an app without background services (no scheduler
places the runs, so they stay pending unless a test finishes them) and an eligible host row."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update
from sqlmodel import col

from app import clock
from app.deps import AppState
from app.runs.models import Run
from app.schedules.firing import Firer
from tests.builders import MISSING_SOCKET, directive_payload, host_payload, set_host_row
from tests.conftest import make_settings


@dataclass
class Bench:
    """The app, its client, the firer the test drives, a host and a directive."""

    app: FastAPI
    client: httpx.AsyncClient
    state: AppState
    firer: Firer
    clock: clock.FakeClock
    host_id: int
    directive_id: int

    async def schedule(self, **fields: Any) -> dict[str, Any]:
        body = {
            "name": f"s-{fields.get('cron', 'x')}-{id(fields)}",
            "directive_id": self.directive_id,
        }
        body.update(fields)
        r = await self.client.post("/api/schedules/", json=body)
        assert r.status_code == 201, r.text
        out: dict[str, Any] = r.json()
        return out

    async def show(self, key: int | str) -> dict[str, Any]:
        r = await self.client.get(f"/api/schedules/{key}/")
        assert r.status_code == 200, r.text
        out: dict[str, Any] = r.json()
        return out

    async def tick_at(self, iso: str) -> None:
        from datetime import datetime

        self.clock.current = datetime.fromisoformat(iso)
        await self.firer.tick()

    async def runs_of(self, schedule_id: int) -> list[dict[str, Any]]:
        r = await self.client.get("/api/runs/", params={"limit": 1000})
        return [x for x in r.json()["results"] if x["schedule_id"] == schedule_id]

    async def finish(self, run_id: int, status: str = "succeeded") -> None:
        async with self.state.db.session_scope() as session:
            await session.exec(update(Run).where(col(Run.id) == run_id).values(status=status))

    async def set_host(self, **values: Any) -> None:
        await set_host_row(self.app, self.host_id, **values)


@pytest.fixture
async def bench(db_url: str, fake_clock: clock.FakeClock) -> AsyncIterator[Bench]:
    from app.main import create_app

    settings = make_settings(db_url, stale_after_seconds=10**9, schedule_grace_seconds=60)
    application = create_app(settings, migrate=False)
    state = application.state.dockfleet
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://dockfleet.test") as client:
        r = await client.post("/api/worker-hosts/", json=host_payload(base_url=MISSING_SOCKET))
        assert r.status_code == 201, r.text
        host_id = r.json()["id"]
        await set_host_row(application, host_id, healthy=True, last_seen_at=fake_clock.current)
        r = await client.post("/api/directives/", json=directive_payload(tasks=["log_triage"]))
        assert r.status_code == 201, r.text
        yield Bench(application, client, state, Firer(state), fake_clock, host_id, r.json()["id"])
    await state.db.dispose()
