"""Bad input is a 4xx, never a 500, and never stored: bounds, sizes, NaN, undecodable bodies."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.builders import host_payload

HUGE = "9" * 25  # beyond int64


@pytest.mark.parametrize(
    "path",
    [
        f"/api/worker-hosts/{HUGE}/",
        f"/api/worker-hosts/{HUGE}/health/",
        f"/api/directives/{HUGE}/",
        f"/api/runs/{HUGE}/",
        f"/api/runs/{HUGE}/logs/",
        f"/api/runs/?offset={HUGE}",
        f"/api/runs/?worker_host_id={HUGE}",
        "/api/worker-hosts/0/",
        "/api/runs/-1/",
    ],
)
async def test_integers_beyond_the_database_range_are_422(
    client: httpx.AsyncClient, path: str
) -> None:
    r = await client.get(path)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "invalid"


async def test_a_task_key_of_too_many_digits_is_a_plain_404(client: httpx.AsyncClient) -> None:
    r = await client.get(f"/api/tasks/{HUGE[:20]}/")
    assert r.status_code == 404, r.text


async def test_ids_beyond_the_range_in_bodies_are_422(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/runs/launch/", json={"directive_id": 2**40})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "directive_id"]
    r = await client.post("/api/runs/launch/", json={"directive_id": 1, "target_host_id": 2**70})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "target_host_id"]


async def test_nan_and_infinity_are_422_with_a_json_answer(client: httpx.AsyncClient) -> None:
    raw = '{"name": "nan", "image": "busybox:1.36", "cpu_limit": NaN}'
    r = await client.post("/api/tasks/", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "cpu_limit"]
    body = host_payload()
    text = json.dumps(body).replace('"max_concurrency": 2', '"max_concurrency": Infinity')
    r = await client.post(
        "/api/worker-hosts/", content=text, headers={"content-type": "application/json"}
    )
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["input"] == "inf"


async def test_a_body_that_is_not_utf8_is_a_422(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/api/directives/", content=b"\xff\xfe{", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["body"]


async def test_bodies_over_the_limit_are_413_before_they_are_read(
    client: httpx.AsyncClient,
) -> None:
    labels = {f"k{i}": "v" * 500 for i in range(40_000)}  # ~20 MB
    body = host_payload(capabilities={"max_concurrency": 1, "labels": labels})
    r = await client.post("/api/worker-hosts/", json=body)
    assert r.status_code == 413, r.text[:200]
    assert r.json()["code"] == "payload_too_large"

    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(40):
            yield b" " * 65536  # no Content-Length: counted as it comes

    r = await client.post(
        "/api/directives/", content=chunks(), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413
    assert (await client.get("/api/worker-hosts/")).json()["count"] == 0


@pytest.mark.parametrize(
    "body, field",
    [
        (
            {"capabilities": {"max_concurrency": 1, "labels": {f"k{i}": "v" for i in range(65)}}},
            ["capabilities", "labels"],
        ),
        (
            {"capabilities": {"max_concurrency": 1, "labels": {"k": "v" * 600}}},
            ["capabilities", "labels", "k"],
        ),
        ({"capabilities": {"max_concurrency": 10**9}}, ["capabilities", "max_concurrency"]),
        ({"name": "n" * 201}, ["name"]),
    ],
)
async def test_sizes_are_bounded_on_hosts(
    client: httpx.AsyncClient, body: dict[str, object], field: list[str]
) -> None:
    r = await client.post("/api/worker-hosts/", json=host_payload(**body))
    assert r.status_code == 422, r.text
    locs = [e["loc"] for e in r.json()["detail"]]
    assert any(loc[1 : 1 + len(field)] == field for loc in locs), locs


@pytest.mark.parametrize(
    "field, value",
    [
        ("env", {f"V{i}": "x" for i in range(300)}),
        ("env", {"V": "x" * 40_000}),
        ("command", ["x"] * 600),
        ("command", "x" * 40_000),
        ("binds", ["/var/log:/l:ro"] * 70),
        ("timeout_seconds", 10**12),
        ("memory_limit_mb", 2**40),
    ],
)
async def test_sizes_are_bounded_on_tasks(
    client: httpx.AsyncClient, field: str, value: object
) -> None:
    r = await client.post(
        "/api/tasks/", json={"name": "big", "image": "busybox:1.36", field: value}
    )
    assert r.status_code == 422, r.text[:300]
    assert r.json()["detail"][0]["loc"][:2] == ["body", field]


async def test_a_422_echoes_only_an_excerpt(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/directives/", json={"name": 5, "description": "d" * 5000})
    assert r.status_code == 422
    assert len(r.text) < 2000, len(r.text)
