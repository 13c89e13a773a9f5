"""Events of real failures on the fleet: a host whose link is cut turns unhealthy and back, a
running container cancelled mid-run goes cancelling → cancelled (seen on its daemon too)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from app.main import create_app, start, stop
from tests.conftest import make_settings
from tests.events.sse import Stream, open_stream
from tests.fleet import Fleet
from tests.integration.runs_helpers import (
    add_directive,
    add_host,
    add_task,
    containers,
    launch,
    serve,
    uniq,
)


@pytest.fixture
async def http(db_url: str) -> AsyncIterator[httpx.AsyncClient]:
    application = create_app(make_settings(db_url), migrate=False)
    await start(application.state.dockfleet)
    try:
        async with serve(application) as client:
            yield client
    finally:
        await stop(application.state.dockfleet)


async def _next_of(stream: Stream, kinds: tuple[str, ...], within: float = 30) -> dict[str, object]:
    while True:
        message = await stream.next(within)
        if message["event"] in kinds:
            return message


async def test_a_cut_link_turns_a_host_unhealthy_and_back(
    fleet: Fleet, http: httpx.AsyncClient
) -> None:
    daemon = fleet.fault
    async with open_stream(http, {"types": "host.healthy,host.unhealthy"}) as stream:
        host_id = await add_host(http, daemon, uniq("ev-cut"))
        assert (await stream.next())["event"] == "host.healthy"
        with daemon.link_cut():
            r = await http.get(f"/api/worker-hosts/{host_id}/health/", params={"check": "true"})
            assert r.json()["healthy"] is False
            down = await stream.next()
            r = await http.get(f"/api/worker-hosts/{host_id}/health/", params={"check": "true"})
            assert await stream.silent(0.7)  # still down: no second event
        r = await http.get(f"/api/worker-hosts/{host_id}/health/", params={"check": "true"})
        assert r.json()["healthy"] is True
        up = await stream.next()
    assert down["event"] == "host.unhealthy" and down["data"]["host_id"] == host_id
    assert down["data"]["data"]["error"]
    assert up["event"] == "host.healthy" and int(up["id"]) > int(down["id"])


async def test_a_cancelled_run_streams_cancelling_then_cancelled(
    fleet: Fleet, http: httpx.AsyncClient
) -> None:
    host_id = await add_host(http, fleet.sock, uniq("ev-cancel"))
    task = await add_task(http, uniq("ev-long"), "sleep 60")
    directive = await add_directive(http, uniq("ev-cancel"), tasks=[task])
    async with open_stream(http, {"types": "run.*"}) as stream:
        run = await launch(http, directive)
        running = await _next_of(stream, ("run.running",))
        assert running["data"]["run_id"] == run["id"]
        label = f"dockfleet.run_id={run['id']}"
        assert len(await containers(fleet.sock, label, all=False)) == 1
        cancel = asyncio.ensure_future(http.post(f"/api/runs/{run['id']}/cancel/"))
        moves = [await _next_of(stream, ("run.cancelling", "run.cancelled")) for _ in range(2)]
        assert (await cancel).status_code == 200
    assert [m["event"] for m in moves] == ["run.cancelling", "run.cancelled"]
    assert all(m["data"]["run_id"] == run["id"] and m["data"]["host_id"] == host_id for m in moves)
    assert await containers(fleet.sock, label, all=False) == []
