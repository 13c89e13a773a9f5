"""20 concurrent launches onto two hosts: never more runs or containers than max_concurrency."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import httpx
from fastapi import FastAPI

from tests.fleet import Fleet
from tests.integration.runs_helpers import (
    add_directive,
    add_host,
    add_task,
    containers,
    uniq,
    wait_run,
)

LAUNCHES = 20


async def test_twenty_concurrent_launches_respect_max_concurrency(
    fleet: Fleet, app: FastAPI, client: httpx.AsyncClient
) -> None:
    limits = {
        await add_host(client, fleet.sock, uniq("sock"), max_concurrency=2): 2,
        await add_host(client, fleet.tls, uniq("tls"), max_concurrency=3): 3,
    }
    daemons = {fleet.sock: 2, fleet.tls: 3}
    task = await add_task(client, uniq("nap"), "sleep 1; echo slept")
    directive = await add_directive(client, uniq("dir"), tasks=[task])
    instance = app.state.dockfleet.instance_id
    ours = ("dockfleet.managed=true", f"dockfleet.instance={instance}")

    violations: list[str] = []
    peaks = {"sock": 0, "tls": 0, "api": 0}
    stop = asyncio.Event()

    async def watch_daemons() -> None:
        while not stop.is_set():
            for daemon, limit in daemons.items():
                running = await containers(daemon, *ours, all=False)
                peaks[daemon.name] = max(peaks[daemon.name], len(running))
                if len(running) > limit:
                    violations.append(f"{daemon.name}: {len(running)} running containers")
            await asyncio.sleep(0.1)

    async def watch_api() -> None:
        while not stop.is_set():
            hosts = (await client.get("/api/worker-hosts/")).json()["results"]
            for h in hosts:
                peaks["api"] = max(peaks["api"], h["active_runs_count"])
                if h["active_runs_count"] > limits[h["id"]]:
                    violations.append(f"host {h['name']}: active_runs_count {h}")
            active = (await client.get("/api/runs/", params={"status": "starting,running"})).json()
            per_host = Counter(r["worker_host_id"] for r in active["results"])
            for host_id, n in per_host.items():
                if n > limits[host_id]:
                    violations.append(f"host {host_id}: {n} active runs in /api/runs/")
            await asyncio.sleep(0.1)

    async with asyncio.timeout(120):
        watchers = [asyncio.create_task(watch_daemons()), asyncio.create_task(watch_api())]
        try:
            started = time.monotonic()
            responses = await asyncio.gather(
                *(
                    client.post("/api/runs/launch/", json={"directive_id": directive})
                    for _ in range(LAUNCHES)
                )
            )
            assert [r.status_code for r in responses] == [201] * LAUNCHES, [
                r.text for r in responses if r.status_code != 201
            ]
            launched = [r.json() for r in responses]
            at_launch = Counter(r["status"] for r in launched)
            assert at_launch["pending"] > 0, at_launch
            assert at_launch["starting"] <= sum(limits.values()), at_launch
            finals = [await wait_run(client, r["id"], within=100) for r in launched]
            elapsed = time.monotonic() - started
        finally:
            stop.set()
            await asyncio.gather(*watchers)

    assert violations == []
    assert [r["status"] for r in finals] == ["succeeded"] * LAUNCHES, finals
    assert {r["worker_host_id"] for r in finals} == set(limits)  # both hosts were used
    assert peaks["sock"] <= 2 and peaks["tls"] <= 3
    assert peaks["sock"] + peaks["tls"] >= 3, peaks  # they really ran side by side
    assert all(r["placements"] == 1 for r in finals)
    assert len({r["tasks"][0]["container_id"] for r in finals}) == LAUNCHES
    for h in (await client.get("/api/worker-hosts/")).json()["results"]:
        assert h["active_runs_count"] == 0
    for daemon in daemons:
        assert await containers(daemon, *ours) == []
    print(f"20 runs in {elapsed:.1f}s; peaks {peaks}; at launch {dict(at_launch)}")
