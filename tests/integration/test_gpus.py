"""GPU discovery on the real fleet: the probe container through socket, TLS and SSH tunnel,
placement by UUID (busy and vanished GPUs held out), what the daemon hands the containers."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from fastapi import FastAPI

from tests.fleet import Daemon, Fleet
from tests.fleet.fakegpu import A100, INVENTORY, PROBE_IMAGE, RTX3060, RTX4090, SPARE4090
from tests.fleet.fakegpu import build_probe_image
from tests.integration.runs_helpers import add_directive, add_host, add_task, containers, uniq

UUIDS = [g.uuid for g in INVENTORY]


async def gpu_host(
    client: httpx.AsyncClient, daemon: Daemon, name: str, **caps: Any
) -> int:
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
    assert await containers(fleet.gpu, f"dockfleet.gpu_probe={app.state.dockfleet.instance_id}") == []
