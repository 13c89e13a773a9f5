"""The clients' events(): a server that goes away and comes back is resumed from the last id,
so events written meanwhile (by another replica) are not missed."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from app.client import AsyncDockfleetClient, DockfleetClient, DockfleetError, EventRead
from app.db import Database
from app.events import store
from tests.integration.test_runs_recovery import Server


async def _written_meanwhile(server: Server, count: int) -> None:
    """Events another replica commits while this server is down."""
    db = Database(server.env["DOCKFLEET_DATABASE_URL"])
    try:
        async with db.session_scope() as session:
            for i in range(count):
                await store.record(session, "run.failed", run_id=1000 + i, error="elsewhere")
    finally:
        await db.dispose()


async def test_the_async_client_reconnects_and_resumes(tmp_path: Path) -> None:
    server = Server(tmp_path)
    await server.start()
    try:
        async with (
            AsyncDockfleetClient(server.url) as fleet,
            server.client() as http,
        ):
            stream = fleet.events(reconnect_seconds=20)
            first = asyncio.ensure_future(anext(stream))
            await asyncio.sleep(0.5)
            host = {"name": "resume", "type": "docker_socket", "base_url": "unix:///run/x.sock"}
            assert (await http.post("/api/worker-hosts/", json=host)).status_code == 201
            created = await asyncio.wait_for(first, 5)
            assert created.type == "host.created"
            server.kill()
            await _written_meanwhile(server, 2)
            await server.start()
            got = [await asyncio.wait_for(anext(stream), 15) for _ in range(2)]
            assert [(e.type, e.run_id) for e in got] == [("run.failed", 1000), ("run.failed", 1001)]
            assert [e.id for e in got] == [created.id + 1, created.id + 2]
            await http.post("/api/worker-hosts/1/drain/")
            assert (await asyncio.wait_for(anext(stream), 5)).type == "host.draining"
            await stream.aclose()  # type: ignore[attr-defined]
    finally:
        server.kill()


async def test_the_sync_client_resumes_and_gives_up_on_a_server_that_stays_away(
    tmp_path: Path,
) -> None:
    server = Server(tmp_path)
    await server.start()
    got: list[EventRead] = []
    failure: list[BaseException] = []

    def follow() -> None:
        try:
            with DockfleetClient(server.url) as fleet:
                # Long enough for the restart below on a busy machine (a server's start took
                # over 3 s with two test workers), short enough to see it give up.
                for event in fleet.events(reconnect_seconds=8):
                    got.append(event)
        except DockfleetError as exc:
            failure.append(exc)

    thread = threading.Thread(target=follow, daemon=True)
    try:
        async with server.client() as http:
            thread.start()
            await asyncio.sleep(0.7)
            host = {"name": "sync", "type": "docker_socket", "base_url": "unix:///run/x.sock"}
            await http.post("/api/worker-hosts/", json=host)
            for _ in range(50):
                if got:
                    break
                await asyncio.sleep(0.1)
            server.kill()
            await _written_meanwhile(server, 1)
            await server.start()
            for _ in range(100):
                if len(got) >= 2:
                    break
                await asyncio.sleep(0.1)
            assert [e.type for e in got] == ["host.created", "run.failed"]
    finally:
        server.kill()
    await asyncio.to_thread(thread.join, 20)
    assert not thread.is_alive()
    assert failure and failure[0].status is None  # "cannot reach dockfleet at …"
    assert "cannot reach dockfleet" in str(failure[0])


def test_a_server_that_is_not_there_fails_at_once() -> None:
    with DockfleetClient("http://127.0.0.1:9") as fleet, pytest.raises(DockfleetError) as info:
        next(iter(fleet.events()))
    assert "cannot reach dockfleet" in str(info.value)
