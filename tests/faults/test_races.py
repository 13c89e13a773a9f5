"""Races on the real fleet: cancelling a run re-queued after its host was lost (finished tasks
stay as they ended, other runs are still placed), a drain racing launches, and 20 concurrent
launches onto a host of 16 GPUs (no GPU id in two running containers, "10" included)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.faults.helpers import fault_settings, host_view, ours, running_app, statuses, until
from tests.fleet import Daemon, Fleet
from tests.fleet.observe import EventLog, Sampler, gpu_overlaps
from tests.integration.runs_helpers import (
    add_directive,
    add_host,
    add_task,
    containers,
    launch,
    remove_ours,
)


async def _get(client: httpx.AsyncClient, run_id: int) -> dict[str, Any]:
    run: dict[str, Any] = (await client.get(f"/api/runs/{run_id}/")).json()
    return run


async def test_cancelling_a_requeued_run_keeps_its_finished_tasks_and_others_run(
    fleet: Fleet, healthy_fault: Daemon, db_url: str
) -> None:
    fault = healthy_fault
    async with running_app(fault_settings(db_url)) as (app, client):
        lost_id = await add_host(client, fault, "requeue-lost")
        await add_host(client, fleet.sock, "requeue-spare")
        first = await add_task(client, "rq-first", "echo first", max_retries=1)
        second = await add_task(client, "rq-second", "sleep 60", max_retries=1)
        quick = await add_task(client, "rq-quick", "echo quick")
        directive = await add_directive(client, "requeue", tasks=[first, second])
        others = await add_directive(client, "requeue-others", tasks=[quick])
        try:
            run = await launch(client, directive, target_host_id=lost_id)
            await until(lambda: _second_running(client, run["id"]), 30, "second task runs")
            with fault.link_cut():
                await until(lambda: _is(client, run["id"], "pending"), 20, "run re-queued")
                cancelled = await client.post(f"/api/runs/{run['id']}/cancel/")
                younger = [(await launch(client, others))["id"] for _ in range(3)]
                await until(lambda: _all_succeeded(client, younger), 30, "younger runs done")
            await until(lambda: _swept(client, lost_id), 20, "lost host swept")
            left = await containers(fault, ours(app))
        finally:
            await remove_ours(fault, app.state.dockfleet.instance_id)
            await remove_ours(fleet.sock, app.state.dockfleet.instance_id)
    body = cancelled.json()
    assert cancelled.status_code == 200 and body["status"] == "cancelled", body
    assert [t["status"] for t in body["tasks"]] == ["succeeded", "cancelled"], body["tasks"]
    assert left == []


async def test_a_drain_racing_launches_lets_no_later_plan_apply(fleet: Fleet, db_url: str) -> None:
    async with running_app(fault_settings(db_url)) as (app, client):
        host_id = await add_host(client, fleet.sock, "drain-race", max_concurrency=8)
        await add_host(client, fleet.tls, "drain-other", max_concurrency=8)  # launches never 503
        task = await add_task(client, "drain-sleep", "sleep 3")
        directive = await add_directive(client, "drain-race", tasks=[task])
        try:

            async def one() -> int:
                return int((await launch(client, directive))["id"])

            burst = [asyncio.create_task(one()) for _ in range(24)]
            await asyncio.sleep(0.05)
            drained = await client.post(f"/api/worker-hosts/{host_id}/drain/")
            on_host_at_drain = {
                r["id"]
                for r in (await client.get("/api/runs/", params={"limit": 100})).json()["results"]
                if r["worker_host_id"] == host_id
            }
            ids = await asyncio.gather(*burst)
            await asyncio.sleep(2)  # scheduler passes come and go; none may place on the host
            after = {rid for rid in ids if (await _get(client, rid))["worker_host_id"] == host_id}
            await client.post(f"/api/worker-hosts/{host_id}/undrain/")
            for rid in ids:
                await client.post(f"/api/runs/{rid}/cancel/")
            await until(lambda: _none_active(client, ids), 30, "all ended")
        finally:
            await remove_ours(fleet.sock, app.state.dockfleet.instance_id)
            await remove_ours(fleet.tls, app.state.dockfleet.instance_id)
    assert drained.status_code == 200 and drained.json()["draining"] is True
    assert after <= on_host_at_drain, after - on_host_at_drain


async def test_twenty_launches_on_sixteen_gpus_never_share_one(
    healthy_fault: Daemon, db_url: str
) -> None:
    fault = healthy_fault
    async with running_app(fault_settings(db_url)) as (app, client):
        label = ours(app)
        host_id = await add_host(client, fault, "gpu16", max_concurrency=16, gpu_count=16)
        task = await add_task(client, "gpu16-one", "sleep 2", requires_gpu=True)
        directive = await add_directive(client, "gpu16", tasks=[task])
        try:
            async with EventLog([fault], label) as log, Sampler([fault], label) as sampler:
                runs = await asyncio.gather(
                    *(launch(client, directive, target_host_id=host_id) for _ in range(20))
                )
                ids = [r["id"] for r in runs]
                await until(lambda: _all_succeeded(client, ids), 60, "all 20 succeeded", poll=0.3)
            finals = [await _get(client, rid) for rid in ids]
            host = await host_view(client, host_id)
        finally:
            await remove_ours(fault, app.state.dockfleet.instance_id)
    held = [r["gpu_device_ids"] for r in finals]
    assert all(len(g) == 1 for g in held), held
    assert {g[0] for g in held} <= {str(i) for i in range(16)}
    assert "10" in {g[0] for g in held}  # a two-character id is held as one id
    assert sampler[fault].peak <= 16 and sampler[fault].overlaps == []
    assert gpu_overlaps(log.intervals(fault), sampler[fault].devices()) == []
    devices = sampler[fault].devices()
    assert all(len(d) == 1 and d[0] in {str(i) for i in range(16)} for d in devices.values())
    assert host["gpus_in_use"] == [] and host["held_slots"] == 0, host


async def _is(client: httpx.AsyncClient, run_id: int, status: str) -> bool:
    return bool((await _get(client, run_id))["status"] == status)


async def _second_running(client: httpx.AsyncClient, run_id: int) -> bool:
    tasks = (await _get(client, run_id))["tasks"]
    return bool(tasks[0]["status"] == "succeeded" and tasks[1]["status"] == "running")


async def _all_succeeded(client: httpx.AsyncClient, ids: list[int]) -> bool:
    found = await statuses(client, ids)
    assert "failed" not in found and "cancelled" not in found, found
    return all(s == "succeeded" for s in found)


async def _none_active(client: httpx.AsyncClient, ids: list[int]) -> bool:
    return all(s in ("succeeded", "failed", "cancelled") for s in await statuses(client, ids))


async def _swept(client: httpx.AsyncClient, host_id: int) -> bool:
    host = await host_view(client, host_id)
    return bool(host["healthy"] and host["held_slots"] == 0)
