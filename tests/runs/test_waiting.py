"""A pending run says what it waits for (no Docker: the slot is held by a recorded run)."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.exc import OperationalError

from app import clock
from app.deps import AppState
from app.hosts import holds
from app.hosts.models import WorkerHost
from app.runs import service
from app.runs.models import Run


async def one_full_host(state: AppState) -> int:
    """A healthy host with one slot, held by a running run; the scheduler is stopped."""
    await state.services.pop("scheduler").stop()
    async with state.db.session_scope() as session:
        host = WorkerHost(
            name="busy",
            type="docker_socket",
            base_url="unix:///tmp/busy.sock",
            healthy=True,
            last_seen_at=clock.now(),
            capabilities={"max_concurrency": 1},
        )
        session.add(host)
        await session.flush()
        assert host.id is not None
        run = Run(status="running", worker_host_id=host.id, worker_host_name="busy")
        session.add(run)
        await session.flush()
        assert run.id is not None
        await holds.take(session, run.id, host.id, [])
        return host.id


async def test_a_pending_run_waits_for_a_slot_then_for_its_target(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    host_id = await one_full_host(app.state.dockfleet)
    await client.post("/api/tasks/", json={"name": "noop", "image": "busybox:1.36"})
    directive = (
        await client.post("/api/directives/", json={"name": "d", "tasks": ["noop"]})
    ).json()
    body = {"directive_id": directive["id"], "target_host_id": host_id}
    run = (await client.post("/api/runs/launch/", json=body)).json()
    assert run["status"] == "pending"
    assert run["waiting_for"] == "a free slot on busy 1/1"

    await client.patch(f"/api/worker-hosts/{host_id}/", json={"enabled": False})
    run = (await client.get(f"/api/runs/{run['id']}/")).json()
    assert run["waiting_for"] == "its target host busy to become eligible (disabled)"
    listed = (await client.get("/api/runs/", params={"status": "pending"})).json()["results"]
    assert [r["waiting_for"] for r in listed] == [run["waiting_for"]]
    running = (await client.get("/api/runs/", params={"status": "running"})).json()["results"]
    assert running[0]["waiting_for"] is None


async def test_a_launch_whose_reasons_cannot_be_read_is_still_a_201_never_a_503(
    app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run is committed before its waiting reasons are read: a database that stops
    answering then must not turn it into a 503 (a client retrying a 503 would launch twice)."""
    host_id = await one_full_host(app.state.dockfleet)
    await client.post("/api/tasks/", json={"name": "noop", "image": "busybox:1.36"})
    directive = (
        await client.post("/api/directives/", json={"name": "d", "tasks": ["noop"]})
    ).json()

    async def locked(*_args: object, **_kwargs: object) -> dict[int, str]:
        raise OperationalError("SELECT ...", {}, Exception("database is locked"))

    monkeypatch.setattr(service, "explain_pending", locked)
    body = {"directive_id": directive["id"], "target_host_id": host_id}
    answer = await client.post("/api/runs/launch/", json=body)
    monkeypatch.undo()
    assert answer.status_code == 201, answer.text
    assert answer.json()["status"] == "pending" and answer.json()["waiting_for"] is None
    runs = (await client.get("/api/runs/", params={"status": "pending"})).json()["results"]
    assert [r["id"] for r in runs] == [answer.json()["id"]]


async def test_a_refused_write_is_a_503_that_says_when_to_try_again(
    app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before the commit, a database error writes nothing: the 503 invites the same request."""
    await client.post("/api/tasks/", json={"name": "noop", "image": "busybox:1.36"})
    directive = (
        await client.post("/api/directives/", json={"name": "d", "tasks": ["noop"]})
    ).json()

    async def locked(*_args: object, **_kwargs: object) -> None:
        raise OperationalError("INSERT ...", {}, Exception("database is locked"))

    monkeypatch.setattr(service, "launch", locked)
    answer = await client.post("/api/runs/launch/", json={"directive_id": directive["id"]})
    monkeypatch.undo()
    assert answer.status_code == 503, answer.text
    assert answer.headers["retry-after"] == "1"
    assert answer.json()["code"] == "database_unavailable"
    assert (await client.get("/api/runs/")).json()["count"] == 0
