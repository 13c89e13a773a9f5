"""The directives API: CRUD, name rules, task names that must exist, runs kept on delete."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.runs.models import Run
from tests.builders import assert_field_error, directive_payload, task_payload

API = "/api/directives/"


async def create(client: httpx.AsyncClient, **overrides: Any) -> dict[str, Any]:
    response = await client.post(API, json=directive_payload(**overrides))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_runbook_directive_is_created(client: httpx.AsyncClient) -> None:
    body = {"name": "default", "description": "Default orchestrator directive"}

    response = await client.post(API, json=body)

    assert response.status_code == 201
    directive = response.json()
    assert directive["name"] == "default"
    assert directive["description"] == "Default orchestrator directive"
    assert directive["tasks"] == []
    assert directive["env"] == {}
    assert directive["created_at"].endswith("Z")


async def test_create_with_seeded_tasks_and_env(client: httpx.AsyncClient) -> None:
    directive = await create(
        client, tasks=["log_triage", "service_map"], env={"FLEET_SITE": "home"}
    )

    assert directive["tasks"] == ["log_triage", "service_map"]
    assert directive["env"] == {"FLEET_SITE": "home"}


async def test_get_list_patch_delete(client: httpx.AsyncClient) -> None:
    directive = await create(client, name="nightly")
    path = f"{API}{directive['id']}/"

    fetched = await client.get(path)
    listed = await client.get(API)
    patched = await client.patch(path, json={"tasks": ["log_triage"], "description": "every night"})
    deleted = await client.delete(path)

    assert fetched.json() == directive
    assert listed.json()["count"] == 1
    assert listed.json()["results"] == [directive]
    assert patched.status_code == 200
    assert patched.json()["tasks"] == ["log_triage"]
    assert patched.json()["description"] == "every night"
    assert patched.json()["name"] == "nightly"
    assert deleted.status_code == 204
    assert (await client.get(path)).status_code == 404


async def test_paths_without_trailing_slash_need_no_redirect(client: httpx.AsyncClient) -> None:
    created = await client.post(API.rstrip("/"), json=directive_payload())
    assert created.status_code == 201
    path = f"{API}{created.json()['id']}"

    assert (await client.get(API.rstrip("/"))).status_code == 200
    assert (await client.get(path)).status_code == 200
    assert (await client.patch(path, json={"description": "x"})).status_code == 200
    assert (await client.delete(path)).status_code == 204


async def test_name_is_stripped(client: httpx.AsyncClient) -> None:
    directive = await create(client, name="  weekly  ")

    assert directive["name"] == "weekly"


@pytest.mark.parametrize("name", ["", "   "], ids=["empty", "whitespace"])
async def test_empty_name_is_422(client: httpx.AsyncClient, name: str) -> None:
    response = await client.post(API, json=directive_payload(name=name))

    assert_field_error(response, "name")


async def test_unknown_task_is_422_naming_it(client: httpx.AsyncClient) -> None:
    body = directive_payload(tasks=["log_triage", "no_such_task", "nor_this_one"])

    response = await client.post(API, json=body)

    assert_field_error(response, "tasks")
    message = response.json()["detail"][0]["msg"]
    assert "no_such_task" in message
    assert "nor_this_one" in message
    assert "log_triage" not in message
    assert (await client.get(API)).json()["count"] == 0


async def test_patch_with_an_unknown_task_is_422(client: httpx.AsyncClient) -> None:
    directive = await create(client, tasks=["log_triage"])

    response = await client.patch(f"{API}{directive['id']}/", json={"tasks": ["ghost"]})

    assert_field_error(response, "tasks")
    assert "ghost" in response.text
    assert (await client.get(f"{API}{directive['id']}/")).json()["tasks"] == ["log_triage"]


async def test_a_task_created_later_can_be_used(client: httpx.AsyncClient) -> None:
    await client.post("/api/tasks/", json=task_payload(name="disk_report"))

    directive = await create(client, tasks=["disk_report"])

    assert directive["tasks"] == ["disk_report"]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"tasks": "log_triage"}, ("tasks",)),
        ({"env": {"NOT-A-VAR": "x"}}, ("env",)),
        ({"env": {"PORT": 8080}}, ("env",)),
        ({"description": 5}, ("description",)),
        ({"owner": "me"}, ("owner",)),
    ],
    ids=["tasks-not-a-list", "bad-env-key", "env-value-not-string", "description-type", "extra"],
)
async def test_bad_directive_body_is_422(
    client: httpx.AsyncClient, overrides: dict[str, Any], field: tuple[str, ...]
) -> None:
    response = await client.post(API, json=directive_payload(**overrides))

    assert_field_error(response, *field)


async def test_duplicate_name_is_409(client: httpx.AsyncClient) -> None:
    await create(client, name="default")

    response = await client.post(API, json=directive_payload(name=" default "))

    assert response.status_code == 409
    assert response.json()["code"] == "conflict"


async def test_rename_onto_a_taken_name_is_409(client: httpx.AsyncClient) -> None:
    await create(client, name="first")
    second = await create(client, name="second")

    response = await client.patch(f"{API}{second['id']}/", json={"name": "first"})

    assert response.status_code == 409
    assert (await client.get(f"{API}{second['id']}/")).json()["name"] == "second"


async def test_rename_to_its_own_name_is_fine(client: httpx.AsyncClient) -> None:
    directive = await create(client, name="same")

    response = await client.patch(f"{API}{directive['id']}/", json={"name": "same"})

    assert response.status_code == 200


async def test_patch_empty_name_is_422(client: httpx.AsyncClient) -> None:
    directive = await create(client)

    response = await client.patch(f"{API}{directive['id']}/", json={"name": "  "})

    assert_field_error(response, "name")


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
async def test_unknown_directive_is_404(client: httpx.AsyncClient, method: str) -> None:
    body = {"description": "x"} if method == "PATCH" else None

    response = await client.request(method, f"{API}9999/", json=body)

    assert response.status_code == 404
    assert response.json() == {"detail": "directive 9999 not found", "code": "not_found"}


async def test_delete_keeps_the_runs_and_their_snapshot(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    directive = await create(client, name="doomed", tasks=["log_triage"])
    snapshot = {k: directive[k] for k in ("id", "name", "description", "tasks", "env")}
    async with app.state.dockfleet.db.session_scope() as session:
        run = Run(directive_id=directive["id"], directive_snapshot=snapshot, status="succeeded")
        session.add(run)
    assert run.id is not None

    response = await client.delete(f"{API}{directive['id']}/")

    assert response.status_code == 204
    async with app.state.dockfleet.db.sessions() as session:
        kept = await session.get(Run, run.id)
    assert kept is not None
    assert kept.directive_id is None
    assert kept.directive_snapshot["name"] == "doomed"


async def test_pagination(client: httpx.AsyncClient) -> None:
    for i in range(3):
        await create(client, name=f"d{i}")

    first = (await client.get(API, params={"limit": 2})).json()
    second = (await client.get(first["next"])).json()

    assert first["count"] == 3
    assert [d["name"] for d in first["results"]] == ["d0", "d1"]
    assert first["previous"] is None
    assert [d["name"] for d in second["results"]] == ["d2"]
    assert second["next"] is None
    assert second["previous"] is not None
