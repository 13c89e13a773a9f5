"""The app as a whole: service endpoints, OpenAPI, the 500 handler and the API token."""

from __future__ import annotations

import logging

import httpx
import pytest
from fastapi import FastAPI

from tests.builders import app_client, host_payload
from tests.conftest import make_settings


async def test_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")

    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response.json()["database"] == "ok"


async def test_metrics_show_a_registered_host(client: httpx.AsyncClient) -> None:
    host = (await client.post("/api/worker-hosts/", json=host_payload(name="Unraid"))).json()

    response = await client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert f'dockfleet_host_up{{host="Unraid",id="{host["id"]}"}} 0' in response.text
    assert "# TYPE dockfleet_host_up gauge" in response.text


async def test_openapi_lists_every_room(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()

    paths = spec["paths"]
    for path in (
        "/api/worker-hosts/",
        "/api/worker-hosts/{host_id}/",
        "/api/worker-hosts/{host_id}/health/",
        "/api/worker-hosts/{host_id}/drain/",
        "/api/worker-hosts/{host_id}/undrain/",
        "/api/directives/",
        "/api/directives/{directive_id}/",
        "/api/tasks/",
        "/api/tasks/{key}/",
    ):
        assert path in paths, path
    for path in paths:
        if not path.startswith(("/api/directives", "/api/tasks")):
            continue
        for method, operation in paths[path].items():
            assert operation.get("summary"), (method, path)
            assert operation.get("description"), (method, path)
            if method in ("post", "patch"):
                body = operation["requestBody"]["content"]["application/json"]
                assert body.get("examples"), (method, path)


async def test_unexpected_error_is_a_json_500_without_internals(
    app: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    async def explode() -> None:
        raise RuntimeError("secret internals: /secrets/vm_ssh_key")

    app.add_api_route("/api/explode/", explode)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    with caplog.at_level(logging.ERROR, logger="dockfleet"):
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.get("/api/explode/")

    assert response.status_code == 500
    assert response.json() == {"detail": "internal server error", "code": "internal"}
    assert "Traceback" not in response.text
    assert "secret internals" not in response.text
    assert "unexpected error on GET /api/explode/" in caplog.text  # logged with its traceback


# --- the API token --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}, {"Authorization": ""}],
    ids=["none", "wrong-token", "no-scheme", "empty"],
)
async def test_api_without_the_right_token_is_401(db_url: str, headers: dict[str, str]) -> None:
    async with app_client(make_settings(db_url, api_token="s3cret")) as client:
        response = await client.get("/api/worker-hosts/", headers=headers)

    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"


async def test_api_with_the_token_works(db_url: str) -> None:
    async with app_client(make_settings(db_url, api_token="s3cret")) as client:
        auth = {"Authorization": "Bearer s3cret"}
        listed = await client.get("/api/worker-hosts/", headers=auth)
        created = await client.post("/api/worker-hosts/", json=host_payload(), headers=auth)
        tasks = await client.get("/api/tasks/", headers=auth)

    assert listed.status_code == 200
    assert created.status_code == 201
    assert tasks.status_code == 200


async def test_healthz_needs_no_token(db_url: str) -> None:
    async with app_client(make_settings(db_url, api_token="s3cret")) as client:
        response = await client.get("/healthz")

    assert response.status_code == 200


async def test_metrics_escape_label_values(client: httpx.AsyncClient) -> None:
    body = {
        "name": 'quote"back\\slash',
        "type": "docker_socket",
        "base_url": "unix:///tmp/none.sock",
    }
    assert (await client.post("/api/worker-hosts/", json=body)).status_code == 201
    text = (await client.get("/metrics")).text
    assert 'host="quote\\"back\\\\slash"' in text


async def test_request_validation_errors_carry_the_invalid_code(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/worker-hosts/", json={"type": "docker_socket"})
    assert r.status_code == 422
    body = r.json()
    assert body["code"] == "invalid"
    assert ["body", "name"] in [e["loc"] for e in body["detail"]]


async def test_openapi_declares_the_bearer_scheme(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    assert any(
        s.get("scheme") == "bearer" for s in schema["components"]["securitySchemes"].values()
    )
