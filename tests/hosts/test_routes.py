"""The worker-host API: registration, validation, secrets, heartbeat, live check, drain."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.clock import FakeClock
from app.openapi import EXAMPLES
from tests.builders import (
    MISSING_SOCKET,
    SECRETS,
    app_client,
    host_payload,
    set_host_row,
    ssh_host_payload,
)
from tests.conftest import make_settings

API = "/api/worker-hosts/"


async def register(client: httpx.AsyncClient, **overrides: Any) -> dict[str, Any]:
    response = await client.post(API, json=host_payload(**overrides))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# --- registration ---------------------------------------------------------------------------


async def test_register_a_socket_host(client: httpx.AsyncClient) -> None:
    response = await client.post(API, json=host_payload(name="local"))

    assert response.status_code == 201
    host = response.json()
    assert host["name"] == "local"
    assert host["type"] == "docker_socket"
    assert host["enabled"] is True
    assert host["healthy"] is False
    assert host["last_seen_at"] is None
    assert host["is_stale"] is True
    assert host["active_runs_count"] == 0
    assert host["capabilities"] == {
        "gpus": False,
        "gpu_count": 0,
        "max_concurrency": 2,
        "labels": {},
    }
    assert host["has_ssh_config"] is False
    assert host["has_tls_config"] is False
    assert host["created_at"].endswith("Z")


async def test_runbook_bodies_register_as_written(db_url: str) -> None:
    # The runbook's VM lives on 192.168/16, so allow private ranges as the default settings do.
    # Its key lives in /secrets: the secrets directory of a server set up the runbook's way.
    settings = make_settings(db_url, allowed_networks="loopback,private", secrets_dir="/secrets")
    unraid = EXAMPLES["host_socket"]["value"]
    # Registered disabled: nothing in the tests may ever send traffic to the example address.
    vm = {**EXAMPLES["host_tcp_ssh"]["value"], "enabled": False}
    async with app_client(settings) as client:
        first = await client.post(API, json=unraid)
        second = await client.post(API, json=vm)

    assert first.status_code == 201, first.text
    assert first.json()["capabilities"] == {
        "gpus": True,
        "gpu_count": 2,
        "max_concurrency": 5,
        "labels": {},
    }
    assert second.status_code == 201, second.text
    registered = second.json()
    assert registered["name"] == vm["name"]
    assert registered["enabled"] is False
    assert registered["has_ssh_config"] is True
    assert registered["capabilities"]["max_concurrency"] == 3
    assert "vm_ssh_key" not in second.text
    assert "vmadmin" not in second.text


async def test_paths_without_trailing_slash_need_no_redirect(client: httpx.AsyncClient) -> None:
    created = await client.post(API.rstrip("/"), json=host_payload())
    assert created.status_code == 201
    host_id = created.json()["id"]

    for path in (API.rstrip("/"), f"{API}{host_id}", f"{API}{host_id}/health"):
        response = await client.get(path)
        assert response.status_code == 200, path
    patched = await client.patch(f"{API}{host_id}", json={"enabled": False})
    assert patched.status_code == 200
    drained = await client.post(f"{API}{host_id}/drain")
    assert drained.status_code == 200
    assert (await client.delete(f"{API}{host_id}")).status_code == 204


# --- conflicts and not found ----------------------------------------------------------------


async def test_duplicate_name_is_409(client: httpx.AsyncClient) -> None:
    await register(client, name="twin")

    response = await client.post(API, json=host_payload(name="twin"))

    assert response.status_code == 409
    assert response.json()["code"] == "conflict"


async def test_rename_onto_a_taken_name_is_409(client: httpx.AsyncClient) -> None:
    await register(client, name="first")
    second = await register(client, name="second")

    response = await client.patch(f"{API}{second['id']}/", json={"name": "first"})

    assert response.status_code == 409
    assert (await client.get(f"{API}{second['id']}/")).json()["name"] == "second"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "9999/"),
        ("PATCH", "9999/"),
        ("DELETE", "9999/"),
        ("GET", "9999/health/"),
        ("GET", "9999/health/?check=true"),
        ("POST", "9999/drain/"),
        ("POST", "9999/undrain/"),
    ],
)
async def test_unknown_host_is_404_json(client: httpx.AsyncClient, method: str, path: str) -> None:
    body = {"enabled": False} if method == "PATCH" else None

    response = await client.request(method, f"{API}{path}", json=body)

    assert response.status_code == 404
    assert response.json() == {"detail": "worker host 9999 not found", "code": "not_found"}


# --- secrets --------------------------------------------------------------------------------


async def test_ssh_config_is_never_returned(client: httpx.AsyncClient) -> None:
    body = ssh_host_payload()
    key_path = body["ssh_config"]["key_path"]
    user = body["ssh_config"]["user"]

    created = await client.post(API, json=body)
    host_id = created.json()["id"]
    responses = [
        created,
        await client.get(f"{API}{host_id}/"),
        await client.get(API),
        await client.patch(f"{API}{host_id}/", json={"enabled": False}),
    ]

    for response in responses:
        assert response.status_code in (200, 201)
        assert key_path not in response.text
        assert user not in response.text
        assert '"ssh_config"' not in response.text
    assert created.json()["has_ssh_config"] is True


async def test_tls_config_is_never_returned(client: httpx.AsyncClient) -> None:
    tls = {
        "ca_cert": f"{SECRETS}/nas/ca.pem",
        "client_cert": f"{SECRETS}/nas/cert.pem",
        "client_key": f"{SECRETS}/nas/key.pem",
    }
    body = host_payload(type="docker_tcp", base_url="tcp://10.0.0.7:2376", tls_config=tls)

    created = await client.post(API, json=body)
    listed = await client.get(API)

    assert created.status_code == 201, created.text
    assert created.json()["has_tls_config"] is True
    for response in (created, listed):
        assert f"{SECRETS}/nas" not in response.text


# --- heartbeat and live check ---------------------------------------------------------------


async def test_heartbeat_returns_the_runbook_keys_and_marks_the_host_seen(
    client: httpx.AsyncClient, fake_clock: FakeClock
) -> None:
    host = await register(client, name="Unraid")
    assert host["is_stale"] is True

    response = await client.get(f"{API}{host['id']}/health/")

    assert response.status_code == 200
    health = response.json()
    assert set(health) == {
        "host_id",
        "name",
        "healthy",
        "last_seen_at",
        "is_stale",
        "active_runs_count",
    }
    assert health["host_id"] == host["id"]
    assert health["name"] == "Unraid"
    assert health["healthy"] is False
    assert parse_time(health["last_seen_at"]) == fake_clock.current
    assert health["is_stale"] is False
    assert health["active_runs_count"] == 0
    listed = (await client.get(API)).json()["results"][0]
    assert listed["is_stale"] is False
    assert parse_time(listed["last_seen_at"]) == fake_clock.current


async def test_live_check_of_a_missing_socket_reports_unhealthy_quickly(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    host = await register(client, base_url=MISSING_SOCKET)
    timeout = app.state.dockfleet.settings.docker_timeout_seconds

    started = time.monotonic()
    response = await client.get(f"{API}{host['id']}/health/", params={"check": "true"})
    elapsed = time.monotonic() - started

    assert response.status_code == 200
    health = response.json()
    assert health["healthy"] is False
    assert health["check"]["ok"] is False
    assert health["check"]["error"]
    assert elapsed < timeout
    after = (await client.get(f"{API}{host['id']}/")).json()
    assert after["healthy"] is False
    assert after["last_error"]
    assert after["last_check_at"] is not None


# --- changes --------------------------------------------------------------------------------


async def test_patch_disables_and_re_enables(client: httpx.AsyncClient) -> None:
    host = await register(client)

    disabled = await client.patch(f"{API}{host['id']}/", json={"enabled": False})
    enabled = await client.patch(f"{API}{host['id']}/", json={"enabled": True})

    assert disabled.status_code == 200
    assert disabled.json()["enabled"] is False
    assert "disabled" in disabled.json()["unschedulable_reasons"]
    assert enabled.json()["enabled"] is True


async def test_patch_ssh_config_null_removes_it(client: httpx.AsyncClient) -> None:
    created = (await client.post(API, json=ssh_host_payload())).json()
    assert created["has_ssh_config"] is True

    response = await client.patch(f"{API}{created['id']}/", json={"ssh_config": None})

    assert response.status_code == 200, response.text
    assert response.json()["has_ssh_config"] is False
    assert (await client.get(f"{API}{created['id']}/")).json()["has_ssh_config"] is False


async def test_drain_and_undrain_flip_draining_and_schedulable(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    host = await register(client)
    await set_host_row(app, host["id"], healthy=True)
    await client.get(f"{API}{host['id']}/health/")  # heartbeat: not stale
    ready = (await client.get(f"{API}{host['id']}/")).json()
    assert ready["schedulable"] is True, ready["unschedulable_reasons"]

    drained = (await client.post(f"{API}{host['id']}/drain/")).json()
    undrained = (await client.post(f"{API}{host['id']}/undrain/")).json()

    assert drained["draining"] is True
    assert drained["schedulable"] is False
    assert drained["unschedulable_reasons"] == ["draining"]
    assert undrained["draining"] is False
    assert undrained["schedulable"] is True


async def test_delete_then_404(client: httpx.AsyncClient) -> None:
    host = await register(client)

    deleted = await client.delete(f"{API}{host['id']}/")

    assert deleted.status_code == 204
    assert deleted.content == b""
    assert (await client.get(f"{API}{host['id']}/")).status_code == 404
    assert (await client.delete(f"{API}{host['id']}/")).status_code == 404


# --- listing --------------------------------------------------------------------------------


async def test_list_items_carry_derived_fields(client: httpx.AsyncClient) -> None:
    await register(client)

    page = (await client.get(API)).json()

    assert page["count"] == 1
    assert page["next"] is None
    assert page["previous"] is None
    item = page["results"][0]
    assert item["is_stale"] is True
    assert item["active_runs_count"] == 0


async def test_filters_by_enabled_and_healthy(client: httpx.AsyncClient, app: FastAPI) -> None:
    on = await register(client, name="on")
    await register(client, name="off", enabled=False)
    await set_host_row(app, on["id"], healthy=True)

    def names(response: httpx.Response) -> list[str]:
        return [h["name"] for h in response.json()["results"]]

    assert names(await client.get(API, params={"enabled": "true"})) == ["on"]
    assert names(await client.get(API, params={"enabled": "false"})) == ["off"]
    assert names(await client.get(API, params={"healthy": "true"})) == ["on"]
    assert names(await client.get(API, params={"healthy": "false"})) == ["off"]
    both = await client.get(API, params={"enabled": "true", "healthy": "false"})
    assert both.json()["count"] == 0


async def test_pagination_with_limit_and_offset(client: httpx.AsyncClient) -> None:
    for i in range(5):
        await register(client, name=f"h{i}")

    first = (await client.get(API, params={"limit": 2})).json()
    second = (await client.get(first["next"])).json()
    last = (await client.get(second["next"])).json()

    assert first["count"] == 5
    assert [h["name"] for h in first["results"]] == ["h0", "h1"]
    assert first["previous"] is None
    assert [h["name"] for h in second["results"]] == ["h2", "h3"]
    assert "offset=2" in first["next"]
    assert second["previous"] is not None
    assert [h["name"] for h in (await client.get(second["previous"])).json()["results"]] == [
        "h0",
        "h1",
    ]
    assert [h["name"] for h in last["results"]] == ["h4"]
    assert last["next"] is None


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "offset=-1"])
async def test_bad_pagination_is_422(client: httpx.AsyncClient, query: str) -> None:
    response = await client.get(f"{API}?{query}")

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][0] == "query"


async def test_patch_capabilities_changes_only_the_named_fields(client: httpx.AsyncClient) -> None:
    body = host_payload(
        name="gpu-box", capabilities={"gpus": True, "gpu_count": 2, "max_concurrency": 5}
    )
    host = (await client.post("/api/worker-hosts/", json=body)).json()
    r = await client.patch(
        f"/api/worker-hosts/{host['id']}/", json={"capabilities": {"max_concurrency": 3}}
    )
    assert r.status_code == 200
    assert r.json()["capabilities"] == {
        "gpus": True,
        "gpu_count": 2,
        "max_concurrency": 3,
        "labels": {},
    }
    r = await client.patch(
        f"/api/worker-hosts/{host['id']}/", json={"capabilities": {"gpus": False}}
    )
    assert r.json()["capabilities"]["gpu_count"] == 0
    r = await client.patch(
        f"/api/worker-hosts/{host['id']}/", json={"capabilities": {"gpu_count": 2}}
    )
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"][:2] == ["body", "capabilities"]


async def test_patch_name_is_stripped_and_blank_rejected(client: httpx.AsyncClient) -> None:
    await client.post("/api/worker-hosts/", json=host_payload(name="taken"))
    other = (await client.post("/api/worker-hosts/", json=host_payload(name="other"))).json()
    r = await client.patch(f"/api/worker-hosts/{other['id']}/", json={"name": "   "})
    assert r.status_code == 422
    r = await client.patch(f"/api/worker-hosts/{other['id']}/", json={"name": " taken "})
    assert r.status_code == 409


async def test_list_filters_by_exact_name(client: httpx.AsyncClient) -> None:
    await client.post("/api/worker-hosts/", json=host_payload(name="alpha"))
    await client.post("/api/worker-hosts/", json=host_payload(name="alphabet"))
    page = (await client.get("/api/worker-hosts/", params={"name": "alpha"})).json()
    assert [h["name"] for h in page["results"]] == ["alpha"]
