"""Read path at scale (issue 9): 100,000 finished runs, then the hot lists, timed.

Fills a fresh SQLite file (migrated) with `--hosts` simulated hosts and `--runs` finished
one-task runs whose tasks carry `--log-bytes` of stored logs each, plus `--running` running
runs, then times requests through the HTTP API in process (ASGI; the monitor and scheduler off,
no Docker involved): `GET /api/runs/?status=running`, `GET /api/worker-hosts/`, the first page of
`GET /api/runs/` (the count over every run) and one run by id.

Run: `.venv/bin/python -m bench.read_bench` (about a minute). Results: bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, insert

from app import clock
from app.config import Settings
from app.db import upgrade_sync
from app.hosts.models import WorkerHost
from app.main import create_app, start, stop
from app.runs.models import Run, RunTask


def fill(path: Path, hosts: int, runs: int, running: int, log_bytes: int) -> float:
    """Insert the rows straight through SQLAlchemy Core (sync); seconds taken."""
    t0 = time.perf_counter()
    engine = create_engine(f"sqlite:///{path}")
    now = clock.now()
    logs = ("x" * 79 + "\n") * max(1, log_bytes // 80)
    lease = now + timedelta(days=1)
    with engine.begin() as conn:
        conn.execute(
            insert(WorkerHost.__table__),  # type: ignore[arg-type]
            [
                {
                    "name": f"sim-{i:04d}",
                    "type": "docker_socket",
                    "base_url": f"unix:///nonexistent/sim-{i}.sock",
                    "enabled": False,  # never contacted
                    "draining": False,
                    "healthy": True,
                    "last_seen_at": now,
                    "capabilities": {"max_concurrency": 4},
                    "labels": {},
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(hosts)
            ],
        )
        batch = 5000
        total = runs + running
        for start_at in range(0, total, batch):
            rows = []
            for i in range(start_at, min(total, start_at + batch)):
                status = "running" if i >= runs else ("succeeded" if i % 7 else "failed")
                at = now - timedelta(seconds=total - i)
                rows.append(
                    {
                        "id": i + 1,
                        "directive_id": None,
                        "directive_snapshot": {"name": "bench", "tasks": ["t"], "env": {}},
                        "status": status,
                        "worker_host_id": i % hosts + 1,
                        "worker_host_name": f"sim-{i % hosts:04d}",
                        "gpu_need": 0,
                        "gpu_device_ids": [],
                        "placements": 1,
                        "cancel_requested": False,
                        # driven elsewhere (a live lease): this server adopts none of them
                        "supervisor": "bench-elsewhere" if status == "running" else None,
                        "lease_expires_at": lease if status == "running" else None,
                        "created_at": at,
                        "placed_at": at,
                        "started_at": at,
                        "finished_at": None if status == "running" else at,
                        "updated_at": at,
                    }
                )
            conn.execute(insert(Run.__table__), rows)  # type: ignore[arg-type]
            conn.execute(
                insert(RunTask.__table__),  # type: ignore[arg-type]
                [
                    {
                        "run_id": r["id"],
                        "position": 0,
                        "task_name": "t",
                        "task_snapshot": {"name": "t", "image": "busybox:1.36"},
                        "status": "running" if r["status"] == "running" else r["status"],
                        "attempt": 1,
                        "exit_code": None if r["status"] == "running" else 0,
                        "logs": "" if r["status"] == "running" else logs,
                        "logs_truncated": False,
                    }
                    for r in rows
                ],
            )
    engine.dispose()
    return time.perf_counter() - t0


async def timed(client: httpx.AsyncClient, path: str, n: int) -> dict[str, Any]:
    """`n` sequential GETs: p50/p99 in ms, and the response's count when it has one."""
    times = []
    body: Any = None
    for _ in range(n):
        t0 = time.perf_counter()
        r = await client.get(path)
        times.append((time.perf_counter() - t0) * 1000)
        r.raise_for_status()
        body = r.json()
    times.sort()
    out: dict[str, Any] = {
        "p50_ms": round(statistics.median(times), 1),
        "p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))], 1),
        "bytes": len(json.dumps(body)),
    }
    if isinstance(body, dict) and "count" in body:
        out["count"] = body["count"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--running", type=int, default=50)
    parser.add_argument("--log-bytes", type=int, default=4000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "read.db"
        upgrade_sync(f"sqlite+aiosqlite:///{path}")
        took = fill(path, args.hosts, args.runs, args.running, args.log_bytes)
        size = path.stat().st_size / 2**20
        print(
            f"filled {args.runs} finished + {args.running} running runs, {args.hosts} hosts "
            f"in {took:.1f} s ({size:.0f} MiB)"
        )
        asyncio.run(measure(path, args))


async def measure(path: Path, args: argparse.Namespace) -> None:
    """Serve the filled database in process and time the hot reads."""
    if True:
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None,
            database_url=f"sqlite+aiosqlite:///{path}",
            health_interval_seconds=0,
            reconcile_interval_seconds=0,
            scheduler_interval_seconds=60,
        )
        app = create_app(settings, migrate=False)
        state = app.state.dockfleet
        await start(state)
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                paths = [
                    "/api/runs/?status=running",
                    "/api/worker-hosts/",
                    "/api/runs/",
                    "/api/runs/?status=failed&limit=20",
                    f"/api/runs/{args.runs // 2}/",
                ]
                for p in paths:
                    await timed(client, p, 3)  # warm-up
                for p in paths:
                    print(f"GET {p:<36} {await timed(client, p, args.requests)}")
        finally:
            await stop(state)


if __name__ == "__main__":
    main()
