"""Benchmarks of the scheduler's hot paths (simulated hosts: no Docker involved).

1. `plan()` alone: pure placement over many hosts and pending runs.
2. A full placement pass (`Scheduler.place`) on SQLite: snapshot, plan, guarded writes.
3. Launch throughput through the HTTP API (ASGI, in process) onto simulated hosts.

Run: `make bench` (or `.venv/bin/python -m bench.placement_bench`). Results: bench/RESULTS.md.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
import tracemalloc
from datetime import timedelta

import httpx

from app import clock
from app.config import Settings
from app.db import upgrade
from app.deps import AppState
from app.hosts.eligibility import HostLoad
from app.hosts.models import WorkerHost
from app.main import create_app, start, stop
from app.runs.models import Run
from app.scheduling.placement import HostView, Need, plan
from app.scheduling.scheduler import Scheduler


class PlacingOnly(Scheduler):
    """Places runs but starts no containers (the hosts are simulated)."""

    def supervise(self, run_id: int) -> None:
        return None


def simulated_hosts(n: int) -> list[WorkerHost]:
    now = clock.now()
    return [
        WorkerHost(
            id=i + 1,
            name=f"sim-{i:04d}",
            type="docker_socket",
            base_url=f"unix:///nonexistent/sim-{i}.sock",
            healthy=i % 10 != 0,
            last_seen_at=now - timedelta(seconds=i % 400),
            capabilities={
                "max_concurrency": 1 + i % 8,
                "gpus": i % 4 == 0,
                "gpu_count": 2 if i % 4 == 0 else 0,
            },
        )
        for i in range(n)
    ]


def bench_plan(hosts: int, runs: int, repeat: int = 5) -> dict[str, float]:
    rows = simulated_hosts(hosts)
    needs = [Need(i, gpu_need=1 if i % 5 == 0 else 0) for i in range(runs)]
    times = []
    tracemalloc.start()
    for _ in range(repeat):
        views = [HostView.of(h, HostLoad(held=(h.id or 0) % 2)) for h in rows]
        t0 = time.perf_counter()
        placed = plan(needs, views, clock.now(), 300)
        times.append(time.perf_counter() - t0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "median_ms": statistics.median(times) * 1000,
        "placed": len(placed),
        "peak_kib": peak / 1024,
    }


def bench_settings(url: str) -> Settings:
    """No background checks, GPU probes or reconcile passes: the hosts are simulated."""
    values = {"database_url": url, "health_interval_seconds": 0, "reconcile_interval_seconds": 0}
    values["gpu_probe_seconds"] = 0
    return Settings(_env_file=None, **values)  # type: ignore[call-arg, arg-type]


async def seeded_state(hosts: int) -> tuple[AppState, str]:
    directory = tempfile.mkdtemp(prefix="dfl-bench-")
    url = f"sqlite+aiosqlite:///{directory}/bench.db"
    await upgrade(url)
    settings = bench_settings(url)
    app = create_app(settings, migrate=False)
    state: AppState = app.state.dockfleet
    async with state.db.session_scope() as session:
        for h in simulated_hosts(hosts):
            h.id = None
            session.add(h)
    return state, url


async def bench_place_pass(hosts: int, runs: int) -> dict[str, float]:
    state, _ = await seeded_state(hosts)
    async with state.db.session_scope() as session:
        for _ in range(runs):
            session.add(Run(directive_snapshot={}))
    scheduler = PlacingOnly(state)
    t0 = time.perf_counter()
    placed = await scheduler.place()
    elapsed = time.perf_counter() - t0
    await state.db.dispose()
    return {
        "seconds": elapsed,
        "placed": len(placed),
        "per_run_ms": elapsed / max(1, len(placed)) * 1000,
    }


async def bench_launch_api(hosts: int, launches: int, concurrency: int) -> dict[str, float]:
    state, url = await seeded_state(hosts)
    await state.db.dispose()
    settings = bench_settings(url)
    app = create_app(settings, migrate=False)
    app_state: AppState = app.state.dockfleet
    await start(app_state)
    real = app_state.services["scheduler"]
    await real.stop()
    app_state.services["scheduler"] = PlacingOnly(app_state)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        await client.post(
            "/api/tasks/", json={"name": "noop", "image": "busybox:1.36", "command": ["true"]}
        )
        await client.post("/api/directives/", json={"name": "bench", "tasks": ["noop"]})
        latencies: list[float] = []
        sem = asyncio.Semaphore(concurrency)

        async def one() -> None:
            async with sem:
                t0 = time.perf_counter()
                r = await client.post("/api/runs/launch/", json={"directive_id": 1})
                latencies.append(time.perf_counter() - t0)
                assert r.status_code == 201, r.text

        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(launches)))
        total = time.perf_counter() - t0
    await stop(app_state)
    latencies.sort()
    return {
        "launches_per_s": launches / total,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p95_ms": latencies[int(len(latencies) * 0.95)] * 1000,
    }


async def main() -> None:
    for hosts, runs in ((10, 100), (100, 1000), (500, 5000)):
        print(f"plan {hosts:>4} hosts x {runs:>5} pending: {bench_plan(hosts, runs)}")
    for hosts, runs in ((10, 200), (100, 1000)):
        result = await bench_place_pass(hosts, runs)
        print(f"place pass {hosts:>4} hosts x {runs:>5} pending (SQLite): {result}")
    print(f"launch API 50 hosts, 500 launches, 20 at once: {await bench_launch_api(50, 500, 20)}")


if __name__ == "__main__":
    asyncio.run(main())
