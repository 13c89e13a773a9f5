"""A pending run says what it waits for (no Docker: the slot is held by a recorded run)."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from app import clock
from app.deps import AppState
from app.hosts import holds
from app.hosts.models import WorkerHost
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
