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


def _fail_once(
    monkeypatch: pytest.MonkeyPatch, cls: Any, name: str, exc: Exception, times: int = 1
) -> None:
    real = getattr(cls, name)
    calls = {"n": 0}

    async def flaky(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] <= times:
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


async def test_a_pool_timeout_while_docker_is_held_is_waited_for(
    app: FastAPI, client: httpx.AsyncClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seen at 1,000 hosts: the start's write failed (pool ran dry), and so did the retry's,
    which is made while the Docker client is held (the container is found again). That second
    failure was taken for Docker's: the finished container was removed and the run failed
    with SQLAlchemy's text. A database error is the database's: waited for, the run succeeds."""
    async with running(tmp_path / "h", hosts=1, latency_ms=0, run_ms=50) as hollow:
        directive_id = await _setup(client, hollow.paths[0])
        timeout = PoolTimeout("QueuePool limit reached (test)")
        _fail_once(monkeypatch, records.RunRecords, "started", timeout, times=3)
        r = await client.post("/api/runs/launch/", json={"directive_id": directive_id})
        run = await _final(client, r.json()["id"])
        totals = hollow.engine.stats()["totals"]
        assert run["status"] == "succeeded", (run["error"], run["tasks"])
        assert "QueuePool" not in str(run), run
        assert totals["starts"] == 1 and totals["duplicate_starts"] == 0, totals


@pytest.mark.parametrize("exc", [PoolTimeout("pool ran dry (test)"), EngineError("bug (test)")])
async def test_a_run_whose_end_was_not_written_fails_and_runs_no_later_task(
    app: FastAPI,
    client: httpx.AsyncClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    exc: Exception,
) -> None:
    """Seen at 1,000 hosts: a task's failure was stored, the run's was not (its write failed).
    The retry saw no task left to run and tried `succeeded`; with a second task it would have
    run that task after the failure. The run fails with the task's error; nothing else runs."""
    async with running(tmp_path / "h", hosts=1, latency_ms=0, run_ms=50) as hollow:
        await _setup(client, hollow.paths[0])
        bad = {
            "name": "bad",
            "image": "busybox:1.36",
            "command": ["false"],
            "network_mode": "none",
            "env": {"HOLLOW_EXIT_CODE": "3"},
        }
        assert (await client.post("/api/tasks/", json=bad)).status_code == 201
        d = await client.post(
            "/api/directives/", json={"name": "bad-then-t", "tasks": ["bad", "t"]}
        )
        _fail_once(monkeypatch, records.RunRecords, "finish", exc)
        r = await client.post("/api/runs/launch/", json={"directive_id": d.json()["id"]})
        run = await _final(client, r.json()["id"])
        totals = hollow.engine.stats()["totals"]
        assert run["status"] == "failed", (run["error"], run["tasks"])
        assert run["error"] == "task bad failed: exited with code 3", run["error"]
        assert [t["status"] for t in run["tasks"]] == ["failed", "skipped"], run["tasks"]
        assert totals["starts"] == 1 and totals["removes"] == 1, totals
