"""GPU runs on the fake GPU daemon: disjoint device ids, DeviceRequests honoured, 503/409 paths."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import FastAPI

from tests.fleet import Fleet
from tests.integration.runs_helpers import (
    add_directive,
    add_host,
    add_task,
    containers,
    run_logs,
    uniq,
    wait_run,
)


async def test_concurrent_gpu_runs_never_share_a_device(
    fleet: Fleet, app: FastAPI, client: httpx.AsyncClient
) -> None:
    gpu_host = await add_host(client, fleet.gpu, uniq("gpu"), gpu_count=2, max_concurrency=4)
    task = await add_task(
        client,
        uniq("gpu-env"),
        'echo "NV=$NVIDIA_VISIBLE_DEVICES"; sleep 1.5',
        requires_gpu=True,
        gpu_count=1,
    )
    directive = await add_directive(client, uniq("dir"), tasks=[task])
    instance = app.state.dockfleet.instance_id
    violations: list[str] = []
    most = {"api": 0, "daemon": 0}
    stop = asyncio.Event()

    async def watch() -> None:
        while not stop.is_set():
            page = (await client.get("/api/runs/", params={"status": "starting,running"})).json()
            held = [g for r in page["results"] for g in r["gpu_device_ids"]]
            if len(held) != len(set(held)):
                violations.append(f"a GPU id held twice: {page['results']}")
            if any(len(r["gpu_device_ids"]) != 1 for r in page["results"]):
                violations.append(f"an active run without exactly one GPU: {page['results']}")
            most["api"] = max(most["api"], page["count"])
            running = await containers(
                fleet.gpu, "dockfleet.managed=true", f"dockfleet.instance={instance}", all=False
            )
            most["daemon"] = max(most["daemon"], len(running))
            await asyncio.sleep(0.05)

    watcher = asyncio.create_task(watch())
    try:
        async with asyncio.timeout(60):
            responses = await asyncio.gather(
                *(
                    client.post("/api/runs/launch/", json={"directive_id": directive})
                    for _ in range(4)
                )
            )
            assert [r.status_code for r in responses] == [201] * 4, [r.text for r in responses]
            runs = [r.json() for r in responses]
            at_launch = sorted(r["status"] for r in runs)
            # Never more answered `starting` than there are GPUs. How many of the two placed
            # runs say so depends on whether their pass landed within the launch's wait (a
            # busy CI machine answered one `starting`, three `pending`); that both GPUs are
            # really used at once is checked below.
            assert at_launch.count("starting") <= 2, at_launch
            assert set(at_launch) <= {"pending", "starting"}, at_launch
            finals = [await wait_run(client, r["id"], within=50) for r in runs]
    finally:
        stop.set()
        await watcher

    assert violations == []
    assert most["api"] <= 2 and most["daemon"] <= 2, most
    assert most["api"] == 2, most  # two GPUs were really used at once
    for run in finals:
        assert run["status"] == "succeeded", run
        assert run["worker_host_id"] == gpu_host and run["gpu_need"] == 1
        assert len(run["gpu_device_ids"]) == 1 and run["gpu_device_ids"][0] in ("0", "1")
        logs = (await run_logs(client, run["id"]))["tasks"][0]["logs"]
        assert logs == f"NV={','.join(run['gpu_device_ids'])}\n", (run, logs)
    assert {r["gpu_device_ids"][0] for r in finals} == {"0", "1"}
    assert await containers(fleet.gpu, f"dockfleet.instance={instance}") == []


async def test_gpu_run_with_no_gpu_host_is_503_and_leaves_nothing(
    fleet: Fleet, client: httpx.AsyncClient
) -> None:
    sock = await add_host(client, fleet.sock, uniq("cpu-only"))
    small = await add_host(client, fleet.gpu, uniq("one-gpu"), gpu_count=1)
    task = await add_task(client, uniq("two-gpus"), "env", requires_gpu=True, gpu_count=2)
    directive = await add_directive(client, uniq("dir"))

    r = await client.post("/api/runs/launch/", json={"directive_id": directive, "tasks": [task]})
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["detail"] == "No available hosts found"
    reasons = {h["host_id"]: h["reasons"] for h in body["hosts"]}
    assert reasons == {sock: ["no GPUs"], small: ["has 1 GPUs, run needs 2"]}

    r = await client.post(
        "/api/runs/launch/",
        json={"directive_id": directive, "tasks": [task], "target_host_id": sock},
    )
    assert r.status_code == 409, r.text
    assert "no GPUs" in r.json()["detail"]
    assert (await client.get("/api/runs/")).json()["count"] == 0


async def test_gpu_task_targeting_a_cpu_host_is_409(
    fleet: Fleet, client: httpx.AsyncClient
) -> None:
    sock = await add_host(client, fleet.sock, uniq("cpu-only"))
    await add_host(client, fleet.gpu, uniq("gpu"))  # an eligible GPU host exists: no fallback
    task = await add_task(client, uniq("one-gpu"), "env", requires_gpu=True, gpu_count=1)
    directive = await add_directive(client, uniq("dir"))
    r = await client.post(
        "/api/runs/launch/",
        json={"directive_id": directive, "tasks": [task], "target_host_id": sock},
    )
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "target_ineligible"
    assert "no GPUs" in r.json()["detail"]
    assert (await client.get("/api/runs/")).json()["count"] == 0
