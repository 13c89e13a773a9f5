"""Bad worker-host bodies: 422, nothing stored, and the offending field named in `loc`."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.builders import assert_field_error, host_payload, ssh_host_payload

API = "/api/worker-hosts/"


def _without_name() -> dict[str, Any]:
    body = host_payload()
    del body["name"]
    return body


def _ssh_without(field: str) -> dict[str, Any]:
    body = ssh_host_payload()
    del body["ssh_config"][field]
    return body


BAD_BODIES = [
    pytest.param(_without_name(), ("name",), id="missing-name"),
    pytest.param(host_payload(name=""), ("name",), id="empty-name"),
    pytest.param(host_payload(name="   "), ("name",), id="whitespace-name"),
    pytest.param(host_payload(type="podman"), ("type",), id="unknown-type"),
    pytest.param(
        host_payload(base_url="tcp://127.0.0.1:2375"), ("base_url",), id="tcp-url-for-socket"
    ),
    pytest.param(
        ssh_host_payload(base_url="unix:///var/run/docker.sock"),
        ("base_url",),
        id="unix-url-for-tcp",
    ),
    pytest.param(
        host_payload(base_url="unix://var/run/docker.sock"), ("base_url",), id="relative-unix-path"
    ),
    pytest.param(
        host_payload(type="docker_tcp", base_url="tcp://10.0.0.5"),
        ("base_url",),
        id="tcp-without-port",
    ),
    pytest.param(
        host_payload(capabilities={"max_concurrency": 0}),
        ("capabilities", "max_concurrency"),
        id="max-concurrency-zero",
    ),
    pytest.param(
        host_payload(capabilities={"max_concurrency": -3}),
        ("capabilities", "max_concurrency"),
        id="max-concurrency-negative",
    ),
    pytest.param(
        host_payload(capabilities={"gpus": True, "gpu_count": -1}),
        ("capabilities", "gpu_count"),
        id="gpu-count-negative",
    ),
    pytest.param(
        host_payload(capabilities={"gpus": False, "gpu_count": 2}),
        ("capabilities",),
        id="gpu-count-without-gpus",
    ),
    pytest.param(_ssh_without("host"), ("ssh_config", "host"), id="ssh-without-host"),
    pytest.param(_ssh_without("user"), ("ssh_config", "user"), id="ssh-without-user"),
    pytest.param(_ssh_without("key_path"), ("ssh_config", "key_path"), id="ssh-without-key-path"),
    pytest.param(
        ssh_host_payload(
            ssh_config={"host": "127.0.0.1", "user": "fleetadmin", "key_path": "keys/id_ed25519"}
        ),
        ("ssh_config",),
        id="ssh-relative-key-path",
    ),
    pytest.param(
        host_payload(ssh_config=ssh_host_payload()["ssh_config"]),
        ("ssh_config",),
        id="ssh-config-on-a-socket-host",
    ),
    pytest.param(
        host_payload(capabilities={"max_concurrency": "5"}),
        ("capabilities", "max_concurrency"),
        id="max-concurrency-as-string",
    ),
    pytest.param(host_payload(enabled="yes"), ("enabled",), id="enabled-as-string"),
    pytest.param(host_payload(colour="blue"), ("colour",), id="unknown-field"),
]


@pytest.mark.parametrize(("body", "field"), BAD_BODIES)
async def test_bad_host_body_is_422_naming_the_field(
    client: httpx.AsyncClient, body: dict[str, Any], field: tuple[str, ...]
) -> None:
    response = await client.post(API, json=body)

    assert_field_error(response, *field)
    assert (await client.get(API)).json()["count"] == 0


async def test_relative_key_path_message_names_key_path(client: httpx.AsyncClient) -> None:
    body = ssh_host_payload()
    body["ssh_config"]["key_path"] = "id_ed25519"

    response = await client.post(API, json=body)

    assert response.status_code == 422
    assert "key_path" in response.text


async def test_non_json_body_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        API, content=b"name=Unraid&type=docker_socket", headers={"content-type": "application/json"}
    )

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][0] == "body"


async def test_bad_patch_is_422_and_changes_nothing(client: httpx.AsyncClient) -> None:
    host = (await client.post(API, json=host_payload())).json()

    response = await client.patch(f"{API}{host['id']}/", json={"base_url": "tcp://10.0.0.5:2375"})

    assert_field_error(response, "base_url")
    assert (await client.get(f"{API}{host['id']}/")).json()["base_url"] == host["base_url"]
