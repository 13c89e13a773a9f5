"""The task-definitions API: CRUD by id or name, validation, the seeded tasks."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.builders import assert_field_error, task_payload

API = "/api/tasks/"
SEEDED = ["log_triage", "gpu_report", "service_map"]


async def create(client: httpx.AsyncClient, **overrides: Any) -> dict[str, Any]:
    response = await client.post(API, json=task_payload(**overrides))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_seeded_tasks_are_listed(client: httpx.AsyncClient) -> None:
    page = (await client.get(API)).json()

    assert page["count"] == 3
    assert [t["name"] for t in page["results"]] == SEEDED
    gpu = (await client.get(f"{API}gpu_report/")).json()
    assert gpu["requires_gpu"] is True
    assert gpu["gpu_count"] == 1
    assert gpu["image"] == "nvidia/cuda:12.4.1-base-ubuntu22.04"


async def test_create_returns_the_task(client: httpx.AsyncClient) -> None:
    task = await create(
        client,
        name="disk_report",
        env={"LANG": "C"},
        binds=["/var/log/app:/host/log:ro"],
        network_mode="none",
        cpu_limit=0.5,
        memory_limit_mb=64,
        max_retries=2,
    )

    assert task["name"] == "disk_report"
    assert task["image"] == "busybox:1.36"
    assert task["command"] == ["df", "-h", "/"]
    assert task["env"] == {"LANG": "C"}
    assert task["binds"] == ["/var/log/app:/host/log:ro"]
    assert task["network_mode"] == "none"
    assert task["cpu_limit"] == 0.5
    assert task["memory_limit_mb"] == 64
    assert task["max_retries"] == 2
    assert task["timeout_seconds"] == 60
    assert task["requires_gpu"] is False
    assert task["gpu_count"] == 0
    assert task["enabled"] is True


async def test_minimal_task_gets_defaults(client: httpx.AsyncClient) -> None:
    response = await client.post(API, json={"name": "hello", "image": "hello-world"})

    assert response.status_code == 201, response.text
    task = response.json()
    assert task["command"] is None
    assert task["description"] == ""
    assert task["env"] == {}
    assert task["binds"] == []
    assert task["timeout_seconds"] is None


async def test_command_string_is_stored_as_argv(client: httpx.AsyncClient) -> None:
    task = await create(client, command="sh -c 'echo hello world; exit 0'")

    assert task["command"] == ["sh", "-c", "echo hello world; exit 0"]
    assert (await client.get(f"{API}{task['id']}/")).json()["command"] == task["command"]


async def test_get_by_id_and_by_name(client: httpx.AsyncClient) -> None:
    task = await create(client, name="by.name-1")

    by_id = await client.get(f"{API}{task['id']}/")
    by_name = await client.get(f"{API}by.name-1/")

    assert by_id.status_code == 200
    assert by_name.json() == by_id.json() == task


async def test_patch_and_delete_by_name(client: httpx.AsyncClient) -> None:
    await create(client, name="tidy")

    patched = await client.patch(f"{API}tidy/", json={"timeout_seconds": 30, "enabled": False})
    deleted = await client.delete(f"{API}tidy/")

    assert patched.status_code == 200
    assert patched.json()["timeout_seconds"] == 30
    assert patched.json()["enabled"] is False
    assert deleted.status_code == 204
    assert (await client.get(f"{API}tidy/")).status_code == 404


async def test_patch_and_delete_by_id(client: httpx.AsyncClient) -> None:
    task = await create(client)
    path = f"{API}{task['id']}/"

    patched = await client.patch(path, json={"command": "uname -a", "name": "uname"})
    deleted = await client.delete(path)

    assert patched.json()["command"] == ["uname", "-a"]
    assert patched.json()["name"] == "uname"
    assert deleted.status_code == 204
    assert (await client.get(path)).status_code == 404


async def test_patch_null_clears_optional_fields_only(client: httpx.AsyncClient) -> None:
    task = await create(client, network_mode="host")

    response = await client.patch(
        f"{API}{task['id']}/",
        json={"timeout_seconds": None, "network_mode": None, "image": None, "binds": None},
    )

    assert response.status_code == 200
    patched = response.json()
    assert patched["timeout_seconds"] is None
    assert patched["network_mode"] is None
    assert patched["image"] == task["image"]
    assert patched["binds"] == []


async def test_paths_without_trailing_slash_need_no_redirect(client: httpx.AsyncClient) -> None:
    created = await client.post(API.rstrip("/"), json=task_payload(name="noslash"))
    assert created.status_code == 201

    assert (await client.get(API.rstrip("/"))).status_code == 200
    assert (await client.get(f"{API}noslash")).status_code == 200
    assert (await client.patch(f"{API}noslash", json={"enabled": False})).status_code == 200
    assert (await client.delete(f"{API}noslash")).status_code == 204


async def test_enabled_filter(client: httpx.AsyncClient) -> None:
    await create(client, name="off", enabled=False)

    enabled = (await client.get(API, params={"enabled": "true"})).json()
    disabled = (await client.get(API, params={"enabled": "false"})).json()

    assert [t["name"] for t in enabled["results"]] == SEEDED
    assert [t["name"] for t in disabled["results"]] == ["off"]
    assert disabled["count"] == 1


async def test_pagination(client: httpx.AsyncClient) -> None:
    first = (await client.get(API, params={"limit": 2})).json()
    second = (await client.get(first["next"])).json()

    assert [t["name"] for t in first["results"]] == SEEDED[:2]
    assert [t["name"] for t in second["results"]] == SEEDED[2:]
    assert second["next"] is None
    assert second["previous"] is not None


# --- bad input ------------------------------------------------------------------------------


def _without(field: str) -> dict[str, Any]:
    body = task_payload()
    del body[field]
    return body


BAD_BODIES = [
    pytest.param(task_payload(image="Not A Valid//Image"), ("image",), id="bad-image"),
    pytest.param(task_payload(image="busybox:"), ("image",), id="empty-tag"),
    pytest.param(task_payload(timeout_seconds=-5), ("timeout_seconds",), id="negative-timeout"),
    pytest.param(task_payload(timeout_seconds=0), ("timeout_seconds",), id="zero-timeout"),
    pytest.param(task_payload(name="Log Triage"), ("name",), id="name-not-a-slug"),
    pytest.param(task_payload(name="UPPER"), ("name",), id="name-upper-case"),
    pytest.param(task_payload(name="12345"), ("name",), id="name-only-digits"),
    pytest.param(_without("name"), ("name",), id="missing-name"),
    pytest.param(_without("image"), ("image",), id="missing-image"),
    pytest.param(task_payload(gpu_count=1), ("gpu_count",), id="gpu-count-without-requires-gpu"),
    pytest.param(
        task_payload(requires_gpu=False, gpu_count=2),
        ("gpu_count",),
        id="gpu-count-with-requires-gpu-false",
    ),
    pytest.param(task_payload(gpu_count=-1, requires_gpu=True), ("gpu_count",), id="gpu-negative"),
    pytest.param(task_payload(command="echo 'unclosed"), ("command",), id="unsplittable-command"),
    pytest.param(task_payload(binds=["/var/log"]), ("binds",), id="bind-without-target"),
    pytest.param(task_payload(binds=["/a:relative"]), ("binds",), id="bind-relative-target"),
    pytest.param(task_payload(max_retries=-1), ("max_retries",), id="negative-retries"),
    pytest.param(task_payload(memory_limit_mb=0), ("memory_limit_mb",), id="zero-memory"),
    pytest.param(task_payload(timeout_seconds="60"), ("timeout_seconds",), id="timeout-as-string"),
    pytest.param(task_payload(env={"A": 1}), ("env",), id="env-value-not-string"),
    pytest.param(task_payload(entrypoint="sh"), ("entrypoint",), id="unknown-field"),
]


@pytest.mark.parametrize(("body", "field"), BAD_BODIES)
async def test_bad_task_body_is_422_naming_the_field(
    client: httpx.AsyncClient, body: dict[str, Any], field: tuple[str, ...]
) -> None:
    response = await client.post(API, json=body)

    assert_field_error(response, *field)
    assert (await client.get(API)).json()["count"] == 3


async def test_gpu_task_is_accepted(client: httpx.AsyncClient) -> None:
    task = await create(client, image="nvidia/cuda:12.4.1-base-ubuntu22.04", requires_gpu=True)

    assert task["requires_gpu"] is True
    assert task["gpu_count"] == 0


async def test_patch_gpu_count_is_checked_against_the_stored_task(
    client: httpx.AsyncClient,
) -> None:
    task = await create(client)
    path = f"{API}{task['id']}/"

    response = await client.patch(path, json={"gpu_count": 2})

    assert_field_error(response, "gpu_count")
    assert (await client.get(path)).json()["gpu_count"] == 0


async def test_patch_dropping_requires_gpu_under_a_gpu_count_is_422(
    client: httpx.AsyncClient,
) -> None:
    response = await client.patch(f"{API}gpu_report/", json={"requires_gpu": False})

    assert_field_error(response, "requires_gpu")
    assert (await client.get(f"{API}gpu_report/")).json()["requires_gpu"] is True


async def test_patch_both_gpu_fields_together(client: httpx.AsyncClient) -> None:
    task = await create(client)

    response = await client.patch(
        f"{API}{task['id']}/", json={"requires_gpu": True, "gpu_count": 2}
    )

    assert response.status_code == 200, response.text
    assert response.json()["gpu_count"] == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"image": "Not A Valid//Image"}, ("image",)),
        ({"timeout_seconds": -1}, ("timeout_seconds",)),
        ({"name": "Bad Name"}, ("name",)),
        ({"colour": "red"}, ("colour",)),
    ],
    ids=["image", "timeout", "name", "unknown-field"],
)
async def test_bad_patch_is_422(
    client: httpx.AsyncClient, body: dict[str, Any], field: tuple[str, ...]
) -> None:
    response = await client.patch(f"{API}log_triage/", json=body)

    assert_field_error(response, *field)


async def test_duplicate_name_is_409(client: httpx.AsyncClient) -> None:
    response = await client.post(API, json=task_payload(name="log_triage"))

    assert response.status_code == 409
    assert response.json()["code"] == "conflict"


async def test_rename_onto_a_taken_name_is_409(client: httpx.AsyncClient) -> None:
    task = await create(client)

    response = await client.patch(f"{API}{task['id']}/", json={"name": "service_map"})

    assert response.status_code == 409
    assert (await client.get(f"{API}{task['id']}/")).json()["name"] == task["name"]


@pytest.mark.parametrize("key", ["9999", "no_such_task"])
@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
async def test_unknown_task_is_404(client: httpx.AsyncClient, method: str, key: str) -> None:
    body = {"enabled": False} if method == "PATCH" else None

    response = await client.request(method, f"{API}{key}/", json=body)

    assert response.status_code == 404
    assert response.json() == {"detail": f"task {key} not found", "code": "not_found"}
