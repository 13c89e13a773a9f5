"""Slot and GPU holds (no Docker): a GPU id is held once, whatever it looks like; a pending run
with a cancel never stalls placement; admin changes and deletes go through the guard."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from app import clock
from app.deps import AppState
from app.hosts import holds
from app.hosts import store as hosts_store
from app.hosts.models import WorkerHost
from app.runs.models import ACTIVE, Run, RunTask
from tests.builders import host_payload
from tests.scheduling.test_guard import PlacingOnly


async def _host(state: AppState, **caps: object) -> int:
    async with state.db.session_scope() as session:
        host = WorkerHost(
            name=f"h{caps.get('gpu_count', 0)}-{caps.get('max_concurrency', 1)}",
            type="docker_socket",
            base_url="unix:///tmp/h.sock",
            healthy=True,
            needs_sweep=False,
            last_seen_at=clock.now(),
            capabilities={"max_concurrency": 1, **caps},
        )
        session.add(host)
        await session.flush()
        assert host.id is not None
        return host.id


async def _runs(state: AppState, n: int, **values: object) -> list[int]:
    ids = []
    async with state.db.session_scope() as session:
        for _ in range(n):
            run = Run(directive_snapshot={}, **values)
            session.add(run)
            await session.flush()
            assert run.id is not None
            ids.append(run.id)
    return ids


@pytest.mark.parametrize("device", ["10", "GPU-7f3a9c1e-0b2d-4e5f-8a6b-1c2d3e4f5a6b"])
async def test_the_database_refuses_a_second_holder_of_one_gpu(app: FastAPI, device: str) -> None:
    state: AppState = app.state.dockfleet
    await state.services["scheduler"].stop()
    host_id = await _host(state, gpus=True, gpu_count=16, max_concurrency=16)
    one, two = await _runs(state, 2)
    async with state.db.session_scope() as session:
        await holds.take(session, one, host_id, [device])
    with pytest.raises(IntegrityError):
        async with state.db.session_scope() as session:
            await holds.take(session, two, host_id, [device])
    async with state.db.sessions() as session:
        load = (await holds.loads(session, [host_id]))[host_id]
    assert load.held == 1 and load.gpus_in_use == {device}  # read back whole, never as chars


async def test_sixteen_gpus_racing_schedulers_never_share_one(app: FastAPI) -> None:
    state: AppState = app.state.dockfleet
    await state.services["scheduler"].stop()
    host_id = await _host(state, gpus=True, gpu_count=16, max_concurrency=20)
    await _runs(state, 24, gpu_need=1)
    schedulers = [PlacingOnly(state) for _ in range(4)]
    await asyncio.gather(*(s.place() for s in schedulers for _ in range(3)))
    async with state.db.sessions() as session:
        active = [r for r in (await session.exec(select(Run))).all() if r.status in ACTIVE]
        load = (await holds.loads(session, [host_id]))[host_id]
        read = (
            await hosts_store.read_many(
                session,
                [await session.get(WorkerHost, host_id)],
                300,  # type: ignore[list-item]
            )
        )[0]
    ids = [g for r in active for g in r.gpu_device_ids]
    assert len(active) == 16 and sorted(ids, key=int) == [str(i) for i in range(16)]
    assert load.gpus_in_use == set(ids) and load.held == 16
    assert read.gpus_in_use == [str(i) for i in range(16)]  # "10" is "10", not "1" and "0"


async def test_a_pending_run_with_a_cancel_is_settled_and_never_blocks(app: FastAPI) -> None:
    state: AppState = app.state.dockfleet
    await state.services["scheduler"].stop()
    await _host(state, max_concurrency=2)
    [stuck] = await _runs(state, 1, cancel_requested=True)
    younger = await _runs(state, 2)
    async with state.db.session_scope() as session:
        session.add(RunTask(run_id=stuck, position=0, task_name="t", status="succeeded"))
        session.add(RunTask(run_id=stuck, position=1, task_name="u"))
    placed = await PlacingOnly(state).place()
    async with state.db.sessions() as session:
        settled = await session.get(Run, stuck)
        tasks = (await session.exec(select(RunTask).order_by(RunTask.position))).all()
    assert sorted(p.run_id for p in placed) == younger
    assert settled is not None and settled.status == "cancelled"
    assert [t.status for t in tasks] == ["succeeded", "cancelled"]  # finished ones stay


@pytest.mark.parametrize(
    "change",
    [
        ("POST", "drain/", None),
        ("PATCH", "", {"enabled": False}),
        ("PATCH", "", {"capabilities": {"max_concurrency": 1}}),
    ],
)
async def test_an_admin_change_makes_an_older_plan_lose_its_guard(
    app: FastAPI, client: httpx.AsyncClient, change: tuple[str, str, object]
) -> None:
    state: AppState = app.state.dockfleet
    await state.services["scheduler"].stop()
    host_id = await _host(state, max_concurrency=3)
    await _runs(state, 1)
    planner = PlacingOnly(state)
    [stale] = await planner._plan()  # planned while the host takes runs
    method, path, body = change
    r = await client.request(method, f"/api/worker-hosts/{host_id}/{path}", json=body)
    assert r.status_code == 200, r.text
    done, lost = await planner._apply([stale])
    assert done == [] and lost  # the change moved the guard: re-plan, never apply


async def test_delete_is_refused_while_a_slot_is_held_and_forced_only_on_request(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    state: AppState = app.state.dockfleet
    host = (await client.post("/api/worker-hosts/", json=host_payload(enabled=False))).json()
    [run_id] = await _runs(state, 1, status="failed")
    async with state.db.session_scope() as session:
        await holds.take(session, run_id, host["id"], [])
        await holds.linger_run(session, run_id, "stop failed")
    r = await client.delete(f"/api/worker-hosts/{host['id']}/")
    assert r.status_code == 409 and "known gone" in r.json()["detail"], r.text
    r = await client.delete(f"/api/worker-hosts/{host['id']}/", params={"force": "true"})
    assert r.status_code == 204, r.text


async def test_a_plan_cannot_land_on_a_host_deleted_under_it(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    state: AppState = app.state.dockfleet
    await state.services["scheduler"].stop()
    host_id = await _host(state, max_concurrency=3)
    await _runs(state, 1)
    planner = PlacingOnly(state)
    [stale] = await planner._plan()
    assert (await client.delete(f"/api/worker-hosts/{host_id}/")).status_code == 204
    done, lost = await planner._apply([replace(stale)])
    assert done == [] and lost
