"""Each run costs a small, fixed number of SQL statements (issue 9), counted on the engine.

The Docker side is the hollow engine (bench/hollow): this counts our own database work, not
launching, which the fleet tests prove on real daemons.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import event

from app.deps import AppState
from bench.hollow import running

# Per one-task run, launched one at a time (so every placement pass carries one run): launch
# 7 (directive, tasks, insert run + task, the reply), placement 6 (the touched host and its
# holds read again, guard, run, hold), supervision 12 (load, host, start, container, running,
# result, final, release). Measured 25-26 when this was written (issue 9 counted 45-50); under
# load a pass carries many runs and its reads are shared. Issue 10 adds one INSERT per move
# (pending, starting, running, succeeded: the run's events, in the moves' own transactions),
# and the notification feed reading those events (issue 12) about 1-2 more.
PER_RUN_BOUND = 28 + 4 + 2


def _kind(statement: str) -> str:
    head = statement.lstrip().split(None, 1)[0].upper()
    return head if head in {"SELECT", "INSERT", "UPDATE", "DELETE"} else "OTHER"


async def _launch_and_finish(client: httpx.AsyncClient, directive_id: int, n: int) -> None:
    """Launch `n` runs, then wait until every run so far has succeeded."""
    for _ in range(n):
        r = await client.post("/api/runs/launch/", json={"directive_id": directive_id})
        assert r.status_code in (200, 201, 202), r.text
        last = r.json()["id"]
    async with asyncio.timeout(30):
        while True:
            r = await client.get("/api/runs/", params={"status": "succeeded", "limit": 1})
            if r.json()["count"] == last:
                return
            await asyncio.sleep(0.05)


async def test_a_run_costs_a_fixed_number_of_statements(
    app: FastAPI, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    state: AppState = app.state.dockfleet
    async with running(tmp_path / "h", hosts=1, latency_ms=0, run_ms=20) as hollow:
        body = {
            "name": "hollow0",
            "type": "docker_socket",
            "base_url": f"unix://{hollow.paths[0]}",
            "capabilities": {"max_concurrency": 4},
        }
        host = (await client.post("/api/worker-hosts/", json=body)).json()
        r = await client.get(f"/api/worker-hosts/{host['id']}/health/", params={"check": "true"})
        assert r.json()["check"]["ok"], r.text
        task = {"name": "t", "image": "busybox:1.36", "command": ["true"], "network_mode": "none"}
        assert (await client.post("/api/tasks/", json=task)).status_code == 201
        d = await client.post("/api/directives/", json={"name": "d", "tasks": ["t"]})
        directive_id = d.json()["id"]
        await _launch_and_finish(client, directive_id, 2)  # warm-up: caches, first connections

        counts: Counter[str] = Counter()
        polls = 0

        def count(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
            counts[_kind(statement)] += 1

        engine = state.db.engine.sync_engine
        event.listen(engine, "before_cursor_execute", count)
        try:
            n = 20
            real_get = client.get

            async def counting_get(*args: Any, **kwargs: Any) -> httpx.Response:
                nonlocal polls
                polls += 1
                return await real_get(*args, **kwargs)

            client.get = counting_get  # type: ignore[method-assign]
            await _launch_and_finish(client, directive_id, n)
        finally:
            event.remove(engine, "before_cursor_execute", count)
            del client.get
        # The test's own polling reads (a count and a page each) are not the run's cost.
        total = sum(counts.values()) - 2 * polls
        per_run = total / n
        print(f"statements per run: {per_run:.1f} ({dict(counts)}, {polls} polls)")
        assert per_run <= PER_RUN_BOUND, (per_run, dict(counts))
        assert hollow.engine.stats()["totals"]["duplicate_starts"] == 0
