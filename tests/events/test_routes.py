"""GET /api/events/ over real HTTP (uvicorn in-process): ids, types, filters, resume, reset, 422."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.config import Settings
from app.main import create_app, start, stop
from tests.conftest import make_settings
from tests.events.sse import open_stream
from tests.integration.runs_helpers import serve


@pytest.fixture
async def served(db_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    settings: Settings = make_settings(db_url, events_keepalive_seconds=0.3)
    application = create_app(settings, migrate=False)
    await start(application.state.dockfleet)
    try:
        async with serve(application) as http:
            yield http, application
    finally:
        await stop(application.state.dockfleet)


def _host(name: str) -> dict[str, Any]:
    return {"name": name, "type": "docker_socket", "base_url": "unix:///run/nothing-here.sock"}


async def _add_host(http: httpx.AsyncClient, name: str) -> int:
    r = await http.post("/api/worker-hosts/", json=_host(name))
    assert r.status_code == 201, r.text
    host_id: int = r.json()["id"]
    return host_id


async def test_changes_stream_in_order_with_ids_types_and_data(
    served: tuple[httpx.AsyncClient, FastAPI],
) -> None:
    http, _ = served
    async with open_stream(http) as stream:
        started = time.monotonic()
        host_id = await _add_host(http, "alpha")
        first = await stream.next(within=2)
        latency = time.monotonic() - started
        assert await http.post(f"/api/worker-hosts/{host_id}/drain/") is not None
        assert (await http.post(f"/api/worker-hosts/{host_id}/drain/")).status_code == 200
        await http.post(f"/api/worker-hosts/{host_id}/undrain/")
        await http.patch(f"/api/worker-hosts/{host_id}/", json={"enabled": False})
        await http.patch(f"/api/worker-hosts/{host_id}/", json={"capabilities": {"labels": {}}})
        assert (await http.delete(f"/api/worker-hosts/{host_id}/")).status_code == 204
        rest = await stream.take(5)
    assert stream.retry == "1000"
    events = [first, *rest]
    assert [e["event"] for e in events] == [
        "host.created",
        "host.draining",  # once: draining a draining host changes nothing
        "host.undrained",
        "host.disabled",
        "host.updated",
        "host.deleted",
    ]
    ids = [int(e["id"]) for e in events]
    assert ids == sorted(ids) and len(set(ids)) == 6
    for e in events:
        assert e["data"]["id"] == int(e["id"]) and e["data"]["type"] == e["event"]
        assert e["data"]["host_id"] == host_id and e["data"]["data"]["host"] == "alpha"
        assert e["data"]["created_at"].endswith("Z")
    assert events[4]["data"]["data"]["fields"] == ["capabilities"]
    assert latency < 1.0, f"an event of this process took {latency:.2f}s to arrive"


async def test_filters_by_type_prefix_and_host(served: tuple[httpx.AsyncClient, FastAPI]) -> None:
    http, _ = served
    params = {"types": "host.draining,host.deleted", "host_id": "2"}
    async with (
        open_stream(http, params) as picky,
        open_stream(http, {"types": "host.*"}) as hosts,
        open_stream(http, {"types": "run.*"}) as runs,
    ):
        one, two = await _add_host(http, "one"), await _add_host(http, "two")
        assert two == 2
        for host_id in (one, two):
            await http.post(f"/api/worker-hosts/{host_id}/drain/")
        await http.delete(f"/api/worker-hosts/{two}/")
        got = await picky.take(2)
        assert [(e["event"], e["data"]["host_id"]) for e in got] == [
            ("host.draining", 2),
            ("host.deleted", 2),
        ]
        assert [e["event"] for e in await hosts.take(5)] == [
            "host.created",
            "host.created",
            "host.draining",
            "host.draining",
            "host.deleted",
        ]
        assert await runs.silent(0.8)
        assert runs.comments >= 1  # keep-alives while idle


async def test_resume_with_last_event_id_or_after_replays_exactly_what_was_missed(
    served: tuple[httpx.AsyncClient, FastAPI],
) -> None:
    http, _ = served
    async with open_stream(http) as stream:
        host_id = await _add_host(http, "resume")
        seen = await stream.next()
    for _ in range(3):  # while nobody listens
        await http.post(f"/api/worker-hosts/{host_id}/drain/")
        await http.post(f"/api/worker-hosts/{host_id}/undrain/")
    async with open_stream(http, headers={"Last-Event-ID": seen["id"]}) as stream:
        missed = await stream.take(6)
        assert await stream.silent(0.3)
    assert [e["event"] for e in missed] == ["host.draining", "host.undrained"] * 3
    assert int(missed[0]["id"]) == int(seen["id"]) + 1
    # ?after= does the same; the header wins over it (EventSource keeps the URL it began with)
    headers = {"Last-Event-ID": missed[3]["id"]}
    async with open_stream(http, {"after": seen["id"]}, headers) as stream:
        assert [e["id"] for e in await stream.take(2)] == [missed[4]["id"], missed[5]["id"]]
    async with open_stream(http, {"after": seen["id"]}) as stream:
        assert (await stream.next())["id"] == missed[0]["id"]


async def test_a_resume_point_no_longer_kept_starts_with_a_reset(
    served: tuple[httpx.AsyncClient, FastAPI],
) -> None:
    http, application = served
    host_id = await _add_host(http, "trimmed")
    for _ in range(5):
        await http.post(f"/api/worker-hosts/{host_id}/drain/")
        await http.post(f"/api/worker-hosts/{host_id}/undrain/")
    state = application.state.dockfleet
    state.settings = state.settings.model_copy(update={"events_keep": 3})
    assert await state.services["events_janitor"].tick() == 8  # 11 events, the newest 3 kept
    newest = 11
    for resume in ("2", "7", "999"):  # trimmed; trimmed; never existed
        async with open_stream(http, headers={"Last-Event-ID": resume}) as stream:
            reset = await stream.next()
            assert reset["event"] == "stream.reset"
            assert reset["id"] == str(newest)
            assert reset["data"]["oldest_id"] == 9 and reset["data"]["newest_id"] == newest
            await http.post(f"/api/worker-hosts/{host_id}/drain/")
            after = await stream.next()
            assert after["event"] == "host.draining" and int(after["id"]) > 11
            await http.post(f"/api/worker-hosts/{host_id}/undrain/")
            await stream.next()
            newest += 2
    async with open_stream(http, headers={"Last-Event-ID": "8"}) as stream:  # 9.. are kept
        assert (await stream.next())["id"] == "9"
    r = await http.get("/api/events/recent/", params={"after": 2})
    assert r.status_code == 200 and r.json()["reset"] is True
    assert r.json()["results"][0]["id"] == r.json()["oldest_id"]


async def test_recent_pages_through_events_as_json(
    served: tuple[httpx.AsyncClient, FastAPI],
) -> None:
    http, _ = served
    for name in ("p1", "p2", "p3"):
        await _add_host(http, name)
    r = await http.get("/api/events/recent/", params={"limit": 2})
    page = r.json()
    assert [e["data"]["host"] for e in page["results"]] == ["p1", "p2"]
    assert page["last_id"] == 2 and page["oldest_id"] == 1 and page["reset"] is False
    r = await http.get("/api/events/recent/", params={"after": page["last_id"]})
    assert [e["data"]["host"] for e in r.json()["results"]] == ["p3"]
    r = await http.get("/api/events/recent/", params={"types": "run.*"})
    assert r.json()["results"] == []


@pytest.mark.parametrize(
    ("params", "headers", "field"),
    [
        ({"types": "run..failed"}, {}, ["query", "types"]),
        ({"types": "Run.Failed"}, {}, ["query", "types"]),
        ({"run_id": "0"}, {}, ["query", "run_id"]),
        ({"host_id": "x"}, {}, ["query", "host_id"]),
        ({"after": "-1"}, {}, ["query", "after"]),
        ({"after": str(2**63)}, {}, ["query", "after"]),
        ({}, {"Last-Event-ID": "abc"}, ["header", "Last-Event-ID"]),
        ({}, {"Last-Event-ID": "9" * 40}, ["header", "Last-Event-ID"]),
    ],
)
async def test_bad_parameters_are_422_naming_the_field(
    served: tuple[httpx.AsyncClient, FastAPI],
    params: dict[str, str],
    headers: dict[str, str],
    field: list[str],
) -> None:
    http, _ = served
    r = await http.get("/api/events/", params=params, headers=headers)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == field
    if "Last-Event-ID" not in headers:
        r = await http.get("/api/events/recent/", params=params)
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == field


async def test_the_async_client_follows_resumes_and_waits(
    served: tuple[httpx.AsyncClient, FastAPI],
) -> None:
    from app.client import AsyncDockfleetClient

    http, _ = served
    async with AsyncDockfleetClient(str(http.base_url)) as fleet:
        stream = fleet.events(types="host.*")
        first = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.3)  # subscribed
        host_id = await _add_host(http, "client")
        event = await asyncio.wait_for(first, 5)
        assert (event.type, event.host_id, event.data["host"]) == (
            "host.created",
            host_id,
            "client",
        )
        await http.post(f"/api/worker-hosts/{host_id}/drain/")
        assert (await asyncio.wait_for(anext(stream), 5)).type == "host.draining"
        await stream.aclose()  # type: ignore[attr-defined]
        replay = fleet.events(after=event.id)
        assert (await asyncio.wait_for(anext(replay), 5)).type == "host.draining"
        await replay.aclose()  # type: ignore[attr-defined]
        page = await fleet.recent_events(types=["host.created"])
        assert [e.id for e in page.results] == [event.id]
