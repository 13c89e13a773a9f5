"""dockerd SIGKILLed and back, dockerd frozen (SIGSTOP: it accepts connections and never
answers) while a run starts and while one is cancelled, sshd killed and back: every outcome is
bounded, nothing hangs, and what the daemons ran is what the runs say."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from tests.faults.helpers import fault_settings, host_view, ours, running_app, until
from tests.fleet import Daemon, Fleet
from tests.fleet.observe import EventLog
from tests.integration.runs_helpers import (
    add_directive,
    add_host,
    add_task,
    containers,
    launch,
    remove_ours,
)

FINAL = ("succeeded", "failed", "cancelled")


async def _run(client: httpx.AsyncClient, run_id: int) -> dict[str, Any]:
    r = await client.get(f"/api/runs/{run_id}/")
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


async def _status_in(client: httpx.AsyncClient, run_id: int, wanted: tuple[str, ...]) -> Any:
    run = await _run(client, run_id)
    return run if run["status"] in wanted else None


async def test_dockerd_killed_moves_the_run_and_the_host_is_swept_on_return(
    fleet: Fleet, healthy_fault: Daemon, db_url: str
) -> None:
    fault = healthy_fault
    async with running_app(fault_settings(db_url)) as (app, client):
        label = ours(app)
        lost_id = await add_host(client, fault, "a-killed", max_concurrency=1)
        await add_host(client, fleet.sock, "b-spare", max_concurrency=1)
        task = await add_task(client, "kill-sleep", "sleep 6; echo done", max_retries=1)
        directive = await add_directive(client, "kill", tasks=[task])
        try:
            async with EventLog([fault, fleet.sock], label) as log:
                run = await launch(client, directive)
                assert run["worker_host_name"] == "a-killed", run
                await until(lambda: _status_in(client, run["id"], ("running",)), 30, "running")
                killed = time.monotonic()
                await asyncio.to_thread(fault.kill)
                moved, took = await until(
                    lambda: _moved(client, run["id"]), 30, "run placed on the spare host"
                )
                held = await host_view(client, lost_id)
                done, _ = await until(lambda: _status_in(client, run["id"], FINAL), 30, "final")
                await asyncio.to_thread(fault.start)  # kills what survived, then answers
                _, swept = await until(
                    lambda: _swept(client, lost_id), 30, "killed host swept and healthy"
                )
            leftovers = await containers(fault, label)
        finally:
            await remove_ours(fault, app.state.dockfleet.instance_id)
            await remove_ours(fleet.sock, app.state.dockfleet.instance_id)
    print(
        f"dockerd SIGKILL: run moved {time.monotonic() - killed:.1f}s after the kill "
        f"({took:.1f}s of polling); host swept {swept:.1f}s after dockerd was back"
    )
    assert moved["worker_host_name"] == "b-spare" and moved["placements"] == 2, moved
    assert held["held_slots"] == 1 and held["lingering_slots"] == 1, held  # still held
    assert done["status"] == "succeeded" and done["tasks"][0]["attempt"] == 2, done
    assert leftovers == []
    for daemon in (fault, fleet.sock):  # one container per attempt, on each daemon
        assert all(n == 1 for n in log.creates_per_attempt(daemon).values())
    assert sum(len(log.creates_per_attempt(d)) for d in (fault, fleet.sock)) == 2


async def test_frozen_dockerd_while_a_run_starts_is_a_bounded_failure(
    healthy_fault: Daemon, db_url: str
) -> None:
    fault = healthy_fault
    async with running_app(fault_settings(db_url)) as (app, client):
        host_id = await add_host(client, fault, "frozen-start")
        task = await add_task(client, "frozen-quick", "echo hi")
        directive = await add_directive(client, "frozen-start", tasks=[task])
        try:
            with fault.frozen():
                started = time.monotonic()
                run = await launch(client, directive, target_host_id=host_id)
                assert run["status"] == "starting", run  # placed: the host looked healthy
                done, took = await until(
                    lambda: _status_in(client, run["id"], FINAL), 20, "bounded outcome"
                )
            await until(lambda: _swept(client, host_id), 20, "host back and swept")
            leftovers = await containers(fault, ours(app))
        finally:
            await remove_ours(fault, app.state.dockfleet.instance_id)
    print(f"frozen while starting: {done['status']} after {time.monotonic() - started:.1f}s")
    assert done["status"] == "failed" and done["error"] == "host unreachable", done
    assert took < 2 + 2 + 3 + 4  # a timed-out call, a timed-out check, the loss bound, slack
    assert leftovers == []


async def test_frozen_dockerd_during_a_cancel_answers_cancelling_then_cancels(
    healthy_fault: Daemon, db_url: str
) -> None:
    fault = healthy_fault
    async with running_app(fault_settings(db_url)) as (app, client):
        label = ours(app)
        host_id = await add_host(client, fault, "frozen-cancel")
        task = await add_task(client, "frozen-long", "sleep 60")
        directive = await add_directive(client, "frozen-cancel", tasks=[task])
        try:
            async with EventLog([fault], label) as log:
                run = await launch(client, directive, target_host_id=host_id)
                await until(lambda: _status_in(client, run["id"], ("running",)), 30, "running")
                with fault.frozen():
                    asked = time.monotonic()
                    answer = await client.post(f"/api/runs/{run['id']}/cancel/")
                    answered = time.monotonic() - asked
                    done, took = await until(
                        lambda: _status_in(client, run["id"], FINAL), 20, "cancel settles"
                    )
                    held = await host_view(client, host_id)
                    thawed = time.time()
                _, swept = await until(lambda: _swept(client, host_id), 20, "host back and swept")
            leftovers = await containers(fault, label)
        finally:
            await remove_ours(fault, app.state.dockfleet.instance_id)
    print(
        f"cancel on a frozen daemon: answered {answer.json()['status']} in {answered:.1f}s, "
        f"{done['status']} {took:.1f}s later; swept {swept:.1f}s after the thaw"
    )
    assert answer.status_code == 200 and answer.json()["status"] == "cancelling"
    assert answered < 1 + 3 + 1  # the stop grace (1 s) + 3 s, at most
    assert done["status"] == "cancelled", done
    # the container ran on while the daemon was frozen: its slot stayed held until it was gone
    (box,) = log.intervals(fault)
    assert box.end is not None and box.end >= thawed - 0.5, (box, thawed)
    assert held["held_slots"] == 1, held
    assert leftovers == []


async def test_sshd_killed_and_back_the_run_goes_on(fleet: Fleet, db_url: str) -> None:
    async with running_app(fault_settings(db_url)) as (app, client):
        label = ours(app)
        host_id = await add_host(client, fleet.ssh, "ssh-flaky")
        task = await add_task(client, "ssh-sleep", "sleep 5; echo through")
        directive = await add_directive(client, "ssh-flaky", tasks=[task])
        try:
            async with EventLog([fleet.ssh], label) as log:
                run = await launch(client, directive, target_host_id=host_id)
                await until(lambda: _status_in(client, run["id"], ("running",)), 30, "running")
                with fleet.sshd_down():
                    await until(lambda: _unhealthy(client, host_id), 10, "host unhealthy")
                    await asyncio.sleep(1)
                done, took = await until(
                    lambda: _status_in(client, run["id"], FINAL), 30, "run finishes"
                )
        finally:
            await remove_ours(fleet.ssh, app.state.dockfleet.instance_id)
    print(f"sshd killed for ~2s: run {done['status']} {took:.1f}s after sshd was back")
    assert done["status"] == "succeeded", done
    assert (done["placements"], done["tasks"][0]["attempt"]) == (1, 1), done
    assert list(log.creates_per_attempt(fleet.ssh).values()) == [1]


async def _moved(client: httpx.AsyncClient, run_id: int) -> Any:
    run = await _run(client, run_id)
    return run if run["placements"] == 2 and run["worker_host_name"] else None


async def _swept(client: httpx.AsyncClient, host_id: int) -> bool:
    host = await host_view(client, host_id)
    return bool(host["healthy"] and host["held_slots"] == 0)


async def _unhealthy(client: httpx.AsyncClient, host_id: int) -> bool:
    return not (await host_view(client, host_id))["healthy"]
