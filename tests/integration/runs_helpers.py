"""Helpers for the runs integration tests: register/check hosts, make tasks, launch, wait, look.

Everything goes through the real API (an httpx client) and the real daemons of the fleet.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

import aiodocker
import httpx
import uvicorn
from fastapi import FastAPI

from tests.fleet import Daemon
from tests.fleet.aio import docker_for

IMAGE = "busybox:1.36"
FINAL = ("succeeded", "failed", "cancelled")
_seq = itertools.count(1)


def uniq(prefix: str) -> str:
    """A name no other test of this session uses."""
    return f"{prefix}-{next(_seq)}-{time.monotonic_ns() % 100000}"


async def add_host(client: httpx.AsyncClient, daemon: Daemon, name: str, **caps: Any) -> int:
    """Register a fleet daemon and live-check it; returns its id (asserts it is healthy)."""
    r = await client.post("/api/worker-hosts/", json=daemon.host_payload(name, **caps))
    assert r.status_code == 201, r.text
    host_id: int = r.json()["id"]
    r = await client.get(f"/api/worker-hosts/{host_id}/health/", params={"check": "true"})
    assert r.status_code == 200, r.text
    assert r.json()["healthy"] is True, r.json()
    return host_id


async def add_task(client: httpx.AsyncClient, name: str, script: str, **fields: Any) -> str:
    """Create a task running `sh -c script` in busybox with no network; returns its name."""
    body = {
        "name": name,
        "image": IMAGE,
        "command": ["sh", "-c", script],
        "network_mode": "none",
        **fields,
    }
    r = await client.post("/api/tasks/", json=body)
    assert r.status_code == 201, r.text
    return name


async def add_directive(
    client: httpx.AsyncClient, name: str, tasks: list[str] | None = None, **fields: Any
) -> int:
    """Create a directive; returns its id."""
    r = await client.post("/api/directives/", json={"name": name, "tasks": tasks or [], **fields})
    assert r.status_code == 201, r.text
    directive_id: int = r.json()["id"]
    return directive_id


async def launch(client: httpx.AsyncClient, directive_id: int, **body: Any) -> dict[str, Any]:
    """POST /api/runs/launch/ and return the created run (asserts 201)."""
    r = await client.post("/api/runs/launch/", json={"directive_id": directive_id, **body})
    assert r.status_code == 201, r.text
    run: dict[str, Any] = r.json()
    return run


async def get_run(client: httpx.AsyncClient, run_id: int) -> dict[str, Any]:
    r = await client.get(f"/api/runs/{run_id}/")
    assert r.status_code == 200, r.text
    run: dict[str, Any] = r.json()
    return run


async def wait_run(
    client: httpx.AsyncClient,
    run_id: int,
    statuses: Iterable[str] = FINAL,
    within: float = 30.0,
    poll: float = 0.1,
) -> dict[str, Any]:
    """Poll the run until its status is one of `statuses` (at most `within` seconds)."""
    wanted = set(statuses)
    deadline = time.monotonic() + within
    while True:
        run = await get_run(client, run_id)
        if run["status"] in wanted:
            return run
        assert time.monotonic() < deadline, f"run {run_id} still {run['status']}: {run}"
        await asyncio.sleep(poll)


async def run_logs(client: httpx.AsyncClient, run_id: int) -> dict[str, Any]:
    r = await client.get(f"/api/runs/{run_id}/logs/")
    assert r.status_code == 200, r.text
    logs: dict[str, Any] = r.json()
    return logs


async def host(client: httpx.AsyncClient, host_id: int) -> dict[str, Any]:
    r = await client.get(f"/api/worker-hosts/{host_id}/")
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


async def containers(
    daemon: Daemon, *labels: str, all: bool = True, status: str | None = None
) -> list[dict[str, Any]]:
    """Containers on the daemon (via its unix socket) carrying every `key=value` label."""
    filters: dict[str, list[str]] = {"label": list(labels)}
    if status:
        filters["status"] = [status]
    async with docker_for(daemon) as docker:
        items = await docker.containers.list(all=all, filters=filters)
        return [dict(c._container) for c in items]


async def container_events(
    daemon: Daemon, since: float, *labels: str, actions: Iterable[str] = ("create", "start")
) -> list[dict[str, Any]]:
    """Container events since `since` (epoch seconds) up to now, filtered by labels/actions."""
    filters = {"type": ["container"], "event": list(actions), "label": list(labels)}
    params = {"since": f"{since:.3f}", "until": f"{time.time() + 0.5:.3f}"}
    params["filters"] = json.dumps(filters)
    async with docker_for(daemon) as docker, docker._query("events", params=params) as resp:
        text = await resp.text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


async def remove_ours(daemon: Daemon, instance: str) -> int:
    """Force-remove every container of this orchestrator instance; how many there were."""
    filters = {"label": ["dockfleet.managed=true", f"dockfleet.instance={instance}"]}
    async with docker_for(daemon) as docker:
        items = await docker.containers.list(all=True, filters=filters)
        for c in items:
            with contextlib.suppress(aiodocker.DockerError):
                await c.delete(force=True)
        return len(items)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Serve the (already started) app over real HTTP on 127.0.0.1, for streamed responses.

    httpx's ASGITransport buffers a whole response, so `?follow=true` needs a real server.
    """
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="off", log_level="warning", ws="none")
    server = uvicorn.Server(config)
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            assert not task.done(), task
            await asyncio.sleep(0.02)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            yield client
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()
