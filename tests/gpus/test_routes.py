"""The GPU API without Docker: bad input is a 4xx naming the field, never a 500."""

from __future__ import annotations

from typing import Any

import httpx

from tests.builders import MISSING_SOCKET, host_payload

HOSTS = "/api/worker-hosts/"


async def make(client: httpx.AsyncClient, **caps: Any) -> dict[str, Any]:
    body = host_payload(base_url=MISSING_SOCKET, enabled=False, capabilities=caps)
    r = await client.post(HOSTS, json=body)
    assert r.status_code == 201, r.text
    host: dict[str, Any] = r.json()
    return host


async def test_a_host_never_probed_shows_what_it_declares(client: httpx.AsyncClient) -> None:
    host = await make(client, gpus=True, gpu_count=2)
    assert (host["gpus_total"], host["gpus_free"], host["gpu_probe_status"]) == (2, 2, None)
    r = await client.get(f"{HOSTS}{host['id']}/gpus/")
    assert r.status_code == 200, r.text
    inventory = r.json()
    assert inventory["declared"] == 2 and inventory["status"] is None and inventory["gpus"] == []
    auto = await make(client, gpus="auto")
    assert auto["capabilities"]["gpus"] == "auto" and auto["capabilities"]["gpu_count"] is None
    assert (await client.get(f"{HOSTS}{auto['id']}/gpus/")).json()["declared"] == "auto"


async def test_unknown_or_disabled_hosts(client: httpx.AsyncClient) -> None:
    assert (await client.get(f"{HOSTS}999/gpus/")).status_code == 404
    assert (await client.post(f"{HOSTS}999/gpus/probe/")).status_code == 404
    assert (await client.post(f"{HOSTS}999/doctor/")).status_code == 404
    host = await make(client, gpus="auto")
    for path in ("gpus/probe/", "doctor/"):
        r = await client.post(f"{HOSTS}{host['id']}/{path}")
        assert r.status_code == 409 and "disabled" in r.json()["detail"], r.text


async def test_bad_gpu_capabilities_name_the_field(client: httpx.AsyncClient) -> None:
    for caps, field in (
        ({"gpus": "auto", "gpu_count": 2}, "gpu_count"),
        ({"gpus": "yes"}, "gpus"),
        ({"gpus": "auto", "gpu_probe_image": "bad image!"}, "gpu_probe_image"),
    ):
        r = await client.post(HOSTS, json=host_payload(enabled=False, capabilities=caps))
        assert r.status_code == 422, r.text
        assert field in r.text, r.text
    host = await make(client, gpus=True, gpu_count=2)
    r = await client.patch(f"{HOSTS}{host['id']}/", json={"capabilities": {"gpus": "auto"}})
    assert r.status_code == 200, r.text
    assert r.json()["capabilities"]["gpus"] == "auto"


async def test_gpu_asks_of_tasks(client: httpx.AsyncClient) -> None:
    base = {"image": "busybox:1.36", "command": ["true"]}
    r = await client.post("/api/tasks/", json={"name": "cpu-mem", **base, "gpu_memory_mb": 8000})
    assert r.status_code == 422 and "requires_gpu" in r.text, r.text
    for name, ask in (("a4090", {"gpu_name": "4090"}), ("a3060", {"gpu_name": "3060"})):
        r = await client.post(
            "/api/tasks/", json={"name": name, **base, "requires_gpu": True, **ask}
        )
        assert r.status_code == 201 and r.json()["gpu_name"] == ask["gpu_name"], r.text
    r = await client.patch("/api/tasks/a4090/", json={"requires_gpu": False})
    assert r.status_code == 422 and "requires_gpu" in r.text, r.text
    await make(client, gpus="auto")
    directive = (await client.post("/api/directives/", json={"name": "d"})).json()["id"]
    r = await client.post(
        "/api/runs/launch/", json={"directive_id": directive, "tasks": ["a4090", "a3060"]}
    )
    assert r.status_code == 422 and "named differently" in r.text, r.text
    r = await client.post("/api/runs/launch/", json={"directive_id": directive, "tasks": ["a4090"]})
    assert r.status_code == 503, r.text
    assert r.json()["hosts"][0]["reasons"] == ["disabled", "unhealthy", "stale: never seen",
                                               "GPUs not discovered yet"]  # fmt: skip
