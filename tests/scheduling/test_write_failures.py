"""A supervisor write that fails (the database busy) never starts an attempt twice.

The Docker side is the hollow engine (bench/hollow), which counts a second start of the same
(run, task, attempt) as a duplicate; the writes fail by injection, one at a time, at each point
of a run's life, alone and together with a Docker error that makes the attempt's container be
removed before its end is stored (seen at 1,000 hosts when the connection pool ran dry).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.exc import TimeoutError as PoolTimeout

from app.engine.client import DockerClient
from app.errors import EngineError
from app.scheduling import records
from bench.hollow import running


async def _setup(client: httpx.AsyncClient, socket: str) -> int:
    body = {
        "name": "h0",
        "type": "docker_socket",
        "base_url": f"unix://{socket}",
        "capabilities": {"max_concurrency": 4},
    }
    host = (await client.post("/api/worker-hosts/", json=body)).json()
    r = await client.get(f"/api/worker-hosts/{host['id']}/health/", params={"check": "true"})
    assert r.json()["check"]["ok"], r.text
    task = {"name": "t", "image": "busybox:1.36", "command": ["true"], "network_mode": "none"}
    assert (await client.post("/api/tasks/", json=task)).status_code == 201
    d = await client.post("/api/directives/", json={"name": "d", "tasks": ["t"]})
    return int(d.json()["id"])


async def _final(client: httpx.AsyncClient, run_id: int) -> dict[str, Any]:
    async with asyncio.timeout(30):
        while True:
            got: dict[str, Any] = (await client.get(f"/api/runs/{run_id}/")).json()
            if got["status"] in ("succeeded", "failed", "cancelled"):
                return got
            await asyncio.sleep(0.05)


def _fail_once(monkeypatch: pytest.MonkeyPatch, cls: Any, name: str, exc: Exception) -> None:
    real = getattr(cls, name)
    calls = {"n": 0}

    async def flaky(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise exc
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(cls, name, flaky)


@pytest.mark.parametrize(
    "writes",
    [
        ("begin_attempt",),
        ("set_container",),
        ("started",),
        ("save_attempt",),
        ("started", "save_attempt"),  # the sequence seen at 1,000 hosts, with inspect_fails
        ("set_container", "save_attempt"),
    ],
)
@pytest.mark.parametrize("inspect_fails", [False, True])
async def test_a_failed_write_never_starts_an_attempt_twice(
    app: FastAPI,
    client: httpx.AsyncClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    writes: tuple[str, ...],
    inspect_fails: bool,
) -> None:
    async with running(tmp_path / "h", hosts=1, latency_ms=0, run_ms=50) as hollow:
        directive_id = await _setup(client, hollow.paths[0])
        for write in writes:
            _fail_once(monkeypatch, records.RunRecords, write, PoolTimeout("pool ran dry (test)"))
        if inspect_fails:  # the retry's look-up fails: the attempt's container is removed
            _fail_once(monkeypatch, DockerClient, "inspect", EngineError("inspect failed (test)"))
        r = await client.post("/api/runs/launch/", json={"directive_id": directive_id})
        run = await _final(client, r.json()["id"])
        totals = hollow.engine.stats()["totals"]
        assert totals["duplicate_starts"] == 0, (run, totals)
        assert totals["starts"] <= 1 + int(inspect_fails), totals
        if not inspect_fails:
            assert run["status"] == "succeeded", (run["error"], run["tasks"])
