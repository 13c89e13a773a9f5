"""GPU discovery on the real fleet: the probe container through socket, TLS and SSH tunnel,
placement by UUID (busy and vanished GPUs held out), what the daemon hands the containers."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from tests.conftest import make_settings
from tests.faults.helpers import running_app, until
from tests.fleet import Daemon, Fleet
from tests.fleet.aio import docker_for
from tests.fleet.fakegpu import (
    A100,
    INVENTORY,
    PROBE_IMAGE,
    RTX3060,
    RTX4090,
    SPARE4090,
    build_probe_image,
)
from tests.fleet.observe import EventLog, Sampler, gpu_overlaps
from tests.integration.runs_helpers import (
    add_directive,
    add_host,
    add_task,
    containers,
    get_run,
    launch,
    remove_ours,
    uniq,
    wait_run,
)
from tests.live_server import live_server

UUIDS = [g.uuid for g in INVENTORY]
DOCKFLEET = str(Path(sys.executable).with_name("dockfleet"))


async def gpu_host(client: httpx.AsyncClient, daemon: Daemon, name: str, **caps: Any) -> int:
    """Build the scripted probe image on the daemon and register it with "gpus": "auto"."""
    await asyncio.to_thread(build_probe_image, daemon.socket_path)
    values = {"gpus": "auto", "gpu_count": None, "gpu_probe_image": PROBE_IMAGE, **caps}
    return await add_host(client, daemon, name, **values)


async def probe(client: httpx.AsyncClient, host_id: int) -> dict[str, Any]:
    r = await client.post(f"/api/worker-hosts/{host_id}/gpus/probe/")
    assert r.status_code == 200, r.text
    inventory: dict[str, Any] = r.json()
    return inventory


def by_uuid(inventory: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {g["uuid"]: g for g in inventory["gpus"]}


def assert_scripted_inventory(inventory: dict[str, Any]) -> None:
    assert inventory["status"] == "ok", inventory
    assert inventory["found"] == 4 and inventory["gpus_total"] == 4
    assert inventory["gpus_busy_elsewhere"] == 1 and inventory["gpus_free"] == 3
    gpus = by_uuid(inventory)
    assert [g["uuid"] for g in inventory["gpus"]] == UUIDS  # by index
    assert gpus[RTX3060.uuid]["name"] == "NVIDIA GeForce RTX 3060"
    assert gpus[RTX3060.uuid]["memory_total_mb"] == 12288
    assert gpus[RTX4090.uuid]["temperature_c"] == 35 and gpus[RTX4090.uuid]["power_w"] == 21.5
    assert gpus[SPARE4090.uuid]["power_w"] is None  # "[N/A]"
    assert gpus[SPARE4090.uuid]["temperature_c"] is None
    busy = gpus[A100.uuid]
    assert busy["busy_elsewhere"] is True and busy["available"] is False
    assert busy["processes"] == [{"pid": 4242, "used_memory_mb": 40950}]
    assert "4242" in busy["reason"] and "dockfleet did not start" in busy["reason"]
    for uuid in (RTX3060.uuid, RTX4090.uuid, SPARE4090.uuid):
        assert gpus[uuid]["available"] is True and gpus[uuid]["reason"] is None


async def test_discovery_through_the_socket(
    fleet: Fleet, app: FastAPI, client: httpx.AsyncClient
) -> None:
    host_id = await gpu_host(client, fleet.gpu, uniq("gpu-sock"))
    inventory = await probe(client, host_id)
    assert_scripted_inventory(inventory)
    assert inventory["probe_image"] == PROBE_IMAGE
    host = (await client.get(f"/api/worker-hosts/{host_id}/")).json()
    assert (host["gpus_total"], host["gpus_free"], host["gpus_busy_elsewhere"]) == (4, 3, 1)
    assert host["gpu_schedulable"] is True
    assert (
        await containers(fleet.gpu, f"dockfleet.gpu_probe={app.state.dockfleet.instance_id}") == []
    )


async def test_discovery_through_tls_and_the_ssh_tunnel(
    fleet: Fleet, client: httpx.AsyncClient
) -> None:
    tls = await gpu_host(client, fleet.fault, uniq("gpu-tls"))  # TCP + mutual TLS
    ssh = await gpu_host(client, fleet.ssh, uniq("gpu-ssh"))  # behind sshd
    both = await asyncio.gather(probe(client, tls), probe(client, ssh))
    for inventory in both:
        assert_scripted_inventory(inventory)
    sock = await gpu_host(client, fleet.sock, uniq("cpu"))
    cpu = await probe(client, sock)  # no NVIDIA runtime there: simply a CPU host
    assert cpu["status"] == "no_runtime" and cpu["gpus"] == [] and cpu["found"] == 0
    assert cpu["reasons"] == ["no GPUs found (no NVIDIA runtime)"]


async def _device_requests(daemon: Daemon, run_id: int) -> list[dict[str, Any]]:
    async with docker_for(daemon) as docker:
        listed = await docker.containers.list(filters={"label": [f"dockfleet.run_id={run_id}"]})
        assert len(listed) == 1, listed
        data = await docker.containers.container(listed[0].id).show()
    requests: list[dict[str, Any]] = data["HostConfig"]["DeviceRequests"]
    return requests


async def test_placement_by_uuid_memory_and_name(
    fleet: Fleet, app: FastAPI, client: httpx.AsyncClient
) -> None:
    host_id = await gpu_host(client, fleet.gpu, uniq("gpu-mixed"), max_concurrency=6)
    await probe(client, host_id)
    script = 'echo "NV=$NVIDIA_VISIBLE_DEVICES"; sleep 30'
    names = {
        "small": await add_task(client, uniq("any"), script, requires_gpu=True),
        "named": await add_task(client, uniq("n3060"), script, requires_gpu=True, gpu_name="3060"),
        "big": await add_task(client, uniq("m20g"), script, requires_gpu=True, gpu_memory_mb=20000),
        "huge": await add_task(
            client, uniq("m40g"), script, requires_gpu=True, gpu_memory_mb=40000
        ),
    }
    directive = await add_directive(client, uniq("dir"))
    runs: dict[str, dict[str, Any]] = {}
    try:
        for key in ("named", "big", "huge", "small"):
            runs[key] = await launch(client, directive, tasks=[names[key]])
        for key in ("named", "big", "small"):
            runs[key] = await wait_run(client, runs[key]["id"], ["running"], within=30)
        assert runs["named"]["gpu_device_ids"] == [RTX3060.uuid]
        assert runs["big"]["gpu_device_ids"] == [RTX4090.uuid]  # the first card of 24 GiB
        assert runs["small"]["gpu_device_ids"] == [SPARE4090.uuid]  # what is left
        # Only the A100 has 40 GiB, and a process dockfleet did not start uses it: it waits.
        huge = await get_run(client, runs["huge"]["id"])
        assert huge["status"] == "pending" and huge["gpu_memory_mb"] == 40000, huge
        assert "busy elsewhere" in huge["waiting_for"], huge
        for key in ("named", "big", "small"):
            [request] = await _device_requests(fleet.gpu, runs[key]["id"])
            assert request["Driver"] == "nvidia" and request["Capabilities"] == [["gpu"]]
            assert request["DeviceIDs"] == runs[key]["gpu_device_ids"]
        host = (await client.get(f"/api/worker-hosts/{host_id}/")).json()
        assert (
            host["gpus_free"] == 0 and host["gpus_held"] == 3 and host["gpus_busy_elsewhere"] == 1
        )
        assert (
            "GPU runs: no free GPU: 3 held by runs, 1 busy elsewhere"
            in host["unschedulable_reasons"]
        )
        held = {g["uuid"]: g["held_by_run"] for g in (await probe(client, host_id))["gpus"]}
        assert held == {
            RTX3060.uuid: runs["named"]["id"],
            RTX4090.uuid: runs["big"]["id"],
            A100.uuid: None,
            SPARE4090.uuid: runs["small"]["id"],
        }
    finally:
        for run in runs.values():
            await client.post(f"/api/runs/{run['id']}/cancel/")
        await remove_ours(fleet.gpu, app.state.dockfleet.instance_id)


async def test_a_vanished_gpu_is_held_out_and_comes_back(
    fleet: Fleet, client: httpx.AsyncClient
) -> None:
    daemon = fleet.gpu
    auto = await gpu_host(client, daemon, uniq("gpu-auto"))
    declared = await add_host(
        client, daemon, uniq("gpu-four"), gpus=True, gpu_count=4, gpu_probe_image=PROBE_IMAGE
    )
    pair = await add_task(
        client, uniq("two4090"), "true", requires_gpu=True, gpu_count=2, gpu_name="4090"
    )
    one = await add_task(client, uniq("one"), "true", requires_gpu=True)
    directive = await add_directive(client, uniq("dir"))
    for host_id in (auto, declared):
        assert (await probe(client, host_id))["found"] == 4

    without_spare = tuple(g for g in INVENTORY if g is not SPARE4090)
    await asyncio.to_thread(build_probe_image, daemon.socket_path, without_spare)
    inventories = [await probe(client, h) for h in (auto, declared)]
    for inventory in inventories:
        gone = by_uuid(inventory)[SPARE4090.uuid]
        assert gone["present"] is False and gone["available"] is False
        assert gone["reason"].startswith("missing"), gone
        assert inventory["found"] == 3 and inventory["gpus_unhealthy"] == 1
    host = (await client.get(f"/api/worker-hosts/{declared}/")).json()
    assert "GPU runs: declared 4 GPUs, found 3" in host["unschedulable_reasons"], host
    assert host["schedulable"] is True and host["gpu_schedulable"] is False
    r = await client.post("/api/runs/launch/", json={"directive_id": directive, "tasks": [pair]})
    assert r.status_code == 503, r.text
    reasons = {h["host_id"]: h["reasons"] for h in r.json()["hosts"]}
    assert reasons[declared] == ["declared 4 GPUs, found 3"]
    assert reasons[auto] == ["has 1 GPUs named *4090*, run needs 2"]
    r = await client.post(
        "/api/runs/launch/",
        json={"directive_id": directive, "tasks": [one], "target_host_id": declared},
    )
    assert r.status_code == 409 and "declared 4 GPUs, found 3" in r.json()["detail"], r.text

    await asyncio.to_thread(build_probe_image, daemon.socket_path)  # the GPU is back
    for host_id in (auto, declared):
        back = by_uuid(await probe(client, host_id))[SPARE4090.uuid]
        assert back["present"] is True and back["available"] is True, back
    r = await client.get("/api/events/recent/", params={"types": "gpu.*", "host_id": auto})
    seen = [(e["type"], e["data"]["uuid"]) for e in r.json()["results"]]
    assert seen == [
        ("gpu.busy_elsewhere", A100.uuid),  # found busy at the first probe
        ("gpu.unhealthy", SPARE4090.uuid),  # vanished
        ("gpu.healthy", SPARE4090.uuid),  # back
    ], seen
    run = await launch(client, directive, tasks=[pair], target_host_id=auto)
    run = await wait_run(client, run["id"], within=30)
    assert run["status"] == "succeeded", run
    assert sorted(run["gpu_device_ids"]) == sorted([RTX4090.uuid, SPARE4090.uuid])


async def test_a_driver_failure_holds_every_gpu_out_until_a_probe_finds_them_well(
    fleet: Fleet, client: httpx.AsyncClient
) -> None:
    host_id = await gpu_host(client, fleet.gpu, uniq("gpu-driver"))
    assert (await probe(client, host_id))["gpus_free"] == 3
    fleet.gpu.set_gpu_hook_failing(True)
    try:
        broken = await probe(client, host_id)
    finally:
        fleet.gpu.set_gpu_hook_failing(False)
    assert broken["status"] == "driver_error" and "driver not loaded" in broken["error"], broken
    assert broken["gpus_free"] == 0 and broken["gpus_unhealthy"] == 4
    assert all(g["reason"].startswith("unhealthy: probe failed") for g in broken["gpus"])
    well = await probe(client, host_id)
    assert well["status"] == "ok" and well["gpus_free"] == 3


async def test_twenty_concurrent_gpu_launches_never_share_a_uuid(
    fleet: Fleet, app: FastAPI, client: httpx.AsyncClient
) -> None:
    daemon = fleet.gpu
    host_id = await gpu_host(client, daemon, uniq("gpu-20"), max_concurrency=8)
    await probe(client, host_id)
    task = await add_task(client, uniq("gpu-one"), "sleep 0.5", requires_gpu=True)
    directive = await add_directive(client, uniq("dir"), tasks=[task])
    label = f"dockfleet.instance={app.state.dockfleet.instance_id}"
    usable = {RTX3060.uuid, RTX4090.uuid, SPARE4090.uuid}  # the A100 is busy elsewhere
    try:
        async with EventLog([daemon], label) as log, Sampler([daemon], label) as sampler:
            runs = await asyncio.gather(
                *(launch(client, directive, target_host_id=host_id) for _ in range(20))
            )
            finals = [await wait_run(client, r["id"], within=120) for r in runs]
    finally:
        await remove_ours(daemon, app.state.dockfleet.instance_id)
    assert [r["status"] for r in finals] == ["succeeded"] * 20, finals
    assert all(len(r["gpu_device_ids"]) == 1 for r in finals)
    assert {r["gpu_device_ids"][0] for r in finals} <= usable
    samples = sampler[daemon]
    assert samples.overlaps == [] and 1 <= samples.peak <= 3, samples
    devices = samples.devices()
    assert devices and all(len(d) == 1 and d[0] in usable for d in devices.values()), devices
    assert gpu_overlaps(log.intervals(daemon), devices) == []
    host = (await client.get(f"/api/worker-hosts/{host_id}/")).json()
    assert host["gpus_in_use"] == [] and host["held_slots"] == 0, host


async def test_doctor_says_what_is_wrong_and_how_to_fix_it(
    fleet: Fleet, app: FastAPI, client: httpx.AsyncClient
) -> None:
    gpu = await gpu_host(client, fleet.gpu, uniq("doc-gpu"))
    r = await client.post(f"/api/worker-hosts/{gpu}/doctor/")
    assert r.status_code == 200, r.text
    report = r.json()
    checks = {c["name"]: c for c in report["checks"]}
    assert list(checks) == [
        "reachable", "docker", "images", "nvidia runtime", "gpus", "disk", "clock"
    ]  # fmt: skip
    assert checks["reachable"]["status"] == "ok" and checks["docker"]["status"] == "ok"
    assert "API 1.41" in checks["docker"]["detail"]
    images = checks["images"]  # the seeded gpu_report image cannot be pulled offline
    assert images["status"] == "warn" and "nvidia/cuda" in images["detail"], images
    assert checks["nvidia runtime"]["status"] == "ok"
    busy = checks["gpus"]  # the A100 is busy elsewhere
    assert busy["status"] == "warn" and "found 4, declared auto" in busy["detail"], busy
    assert "GiB free on" in checks["disk"]["detail"] and checks["disk"]["status"] != "fail"
    assert checks["clock"]["status"] == "ok", checks["clock"]
    assert report["ok"] is True
    assert await containers(fleet.gpu, f"dockfleet.doctor={app.state.dockfleet.instance_id}") == []

    await asyncio.to_thread(build_probe_image, fleet.sock.socket_path)
    cpu = await add_host(
        client, fleet.sock, uniq("doc-cpu"), gpus=True, gpu_count=2, gpu_probe_image=PROBE_IMAGE
    )
    report = (await client.post(f"/api/worker-hosts/{cpu}/doctor/")).json()
    checks = {c["name"]: c for c in report["checks"]}
    runtime = checks["nvidia runtime"]
    assert runtime["status"] == "fail" and "nvidia-ctk runtime configure" in runtime["fix"]
    assert (
        checks["gpus"]["status"] == "fail"
        and "declared 2 GPUs, found 0" in checks["gpus"]["detail"]
    )
    assert report["ok"] is False

    r = await client.post(
        "/api/worker-hosts/",
        json={"name": uniq("doc-gone"), "type": "docker_socket",
              "base_url": "unix:///tmp/dockfleet-no-such.sock"},
    )  # fmt: skip
    gone = r.json()["id"]
    report = (await client.post(f"/api/worker-hosts/{gone}/doctor/")).json()
    assert [c["status"] for c in report["checks"]] == ["fail"] + ["skip"] * 6
    assert "socket" in report["checks"][0]["fix"]


async def test_probes_at_the_first_check_on_a_timer_and_within_their_deadline(
    fleet: Fleet, db_url: str
) -> None:
    settings = make_settings(db_url, gpu_probe_seconds=1, gpu_probe_timeout_seconds=2)
    async with running_app(settings) as (app, client):
        host_id = await gpu_host(client, fleet.gpu, uniq("gpu-timer"))  # no POST: the check

        async def found(n: int) -> bool:
            inventory = (await client.get(f"/api/worker-hosts/{host_id}/gpus/")).json()
            return bool(inventory["status"] == "ok" and inventory["found"] == n)

        await until(lambda: found(4), 15, "the probe after the first good check")
        without_spare = tuple(g for g in INVENTORY if g is not SPARE4090)
        await asyncio.to_thread(build_probe_image, fleet.gpu.socket_path, without_spare)
        await until(lambda: found(3), 15, "the timer's probe noticing the vanished GPU")

        await asyncio.to_thread(build_probe_image, fleet.gpu.socket_path, hang=True)
        started = asyncio.get_running_loop().time()
        hung = await probe(client, host_id)
        took = asyncio.get_running_loop().time() - started
        assert hung["status"] == "error" and "did not finish within 2s" in hung["error"], hung
        assert took < 2 + settings.docker_timeout_seconds + 3, took
        assert hung["found"] == 3 and hung["gpus_free"] == 2  # the inventory as it was
        label = f"dockfleet.gpu_probe={app.state.dockfleet.instance_id}"
        assert await containers(fleet.gpu, label) == []  # the hung probe was removed


def test_the_cli_shows_each_gpu_and_the_doctor(
    tmp_path: Path, migrated_template: Path, fleet: Fleet
) -> None:
    build_probe_image(fleet.gpu.socket_path)
    with live_server(tmp_path, template=migrated_template) as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKFLEET_")}
        env |= {"DOCKFLEET_URL": server.url, "COLUMNS": "200"}

        def cli(*args: str, code: int = 0) -> str:
            done = subprocess.run(
                [DOCKFLEET, *args], env=env, capture_output=True, text=True, timeout=120
            )
            print(f"$ dockfleet {' '.join(args)}\n{done.stdout}{done.stderr}")
            assert done.returncode == code and "Traceback" not in done.stderr
            return done.stdout

        cli("hosts", "add", "gpubox", "--socket", fleet.gpu.base_url, "--gpus", "auto",
            "--gpu-probe-image", PROBE_IMAGE, "--max-concurrency", "4")  # fmt: skip
        cli("hosts", "check", "gpubox")
        shown = cli("hosts", "gpus", "gpubox", "--probe")
        assert "declared auto, found 4; 3 free, 0 held, 1 busy elsewhere" in shown
        assert RTX3060.uuid in shown and "NVIDIA A100-SXM4-80GB" in shown and "pid 4242" in shown
        status = cli("status")
        assert "0/4 (3 free, 1 busy elsewhere)" in status
        assert "40.0/80.0 GiB" in status and "97%" in status and "free" in status
        doctor = cli("doctor", "gpubox")
        assert "ok   reachable" in doctor and "ok   nvidia runtime" in doctor
        assert "warn gpus" in doctor and "fix:" in doctor
        data = json.loads(cli("status", "--json"))
        assert [g["uuid"] for g in data["gpus"][0]["gpus"]] == UUIDS
