"""End-to-end benchmark on the real test fleet (needs root: it starts its own dockerds and sshd).

1. Live-check latency per connector: unix socket, TCP + mutual TLS, SSH tunnel.
2. Run throughput: N one-task runs (`true`) launched at once onto the socket, TLS and SSH hosts;
   time to drain, launch-to-finish latency, the peak of running containers per host against its
   max_concurrency, and the orchestrator's memory.

Run: `make bench-fleet` (or `.venv/bin/python -m bench.fleet_bench [RUNS]`). Results: RESULTS.md.
"""

from __future__ import annotations

import asyncio
import resource
import statistics
import sys
import tempfile
import time
from collections import Counter
from typing import Any

import aiodocker
import httpx

from app.config import Settings
from app.db import upgrade
from app.main import create_app, start, stop
from tests.fleet import Daemon, Fleet, start_fleet

MAX_CONCURRENCY = 3


def rss_mib() -> float:
    """Peak resident memory of this process so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def check_latency(client: httpx.AsyncClient, host_id: int, n: int = 20) -> float:
    """Median latency of live checks, as measured by dockfleet itself."""
    latencies = []
    for _ in range(n):
        body = (await client.get(f"/api/worker-hosts/{host_id}/health/?check=true")).json()
        assert body["check"]["ok"], body
        latencies.append(body["check"]["latency_ms"])
    return statistics.median(latencies)


async def sample_peaks(
    daemons: dict[str, Daemon], peaks: Counter[str], done: asyncio.Event
) -> None:
    """Keep the highest number of our running containers seen on each daemon."""
    clients = {n: aiodocker.Docker(url=f"unix://{d.socket_path}") for n, d in daemons.items()}
    try:
        while not done.is_set():
            for name, docker in clients.items():
                running = await docker.containers.list(
                    filters={"label": ["dockfleet.managed=true"]}
                )
                peaks[name] = max(peaks[name], len(running))
            await asyncio.sleep(0.05)
    finally:
        for docker in clients.values():
            await docker.close()


async def throughput(client: httpx.AsyncClient, fleet: Fleet, runs: int) -> dict[str, Any]:
    """Launch `runs` runs at once and wait for all of them."""
    peaks: Counter[str] = Counter()
    done = asyncio.Event()
    sampler = asyncio.create_task(
        sample_peaks({"sock": fleet.sock, "tls": fleet.tls, "ssh": fleet.ssh}, peaks, done)
    )
    t0 = time.perf_counter()
    answers = await asyncio.gather(
        *(client.post("/api/runs/launch/", json={"directive_id": 1}) for _ in range(runs))
    )
    ids = [a.json()["id"] for a in answers]
    finished: dict[int, dict[str, Any]] = {}
    while len(finished) < runs:
        page = (
            await client.get("/api/runs/", params={"status": "succeeded,failed", "limit": 1000})
        ).json()
        finished = {r["id"]: r for r in page["results"] if r["id"] in ids}
        await asyncio.sleep(0.2)
    elapsed = time.perf_counter() - t0
    done.set()
    await sampler
    from datetime import datetime

    def secs(run: dict[str, Any]) -> float:
        created = datetime.fromisoformat(run["created_at"])
        return (datetime.fromisoformat(run["finished_at"]) - created).total_seconds()

    latencies = sorted(secs(r) for r in finished.values())
    return {
        "runs": runs,
        "failed": sum(r["status"] != "succeeded" for r in finished.values()),
        "seconds": round(elapsed, 2),
        "runs_per_s": round(runs / elapsed, 2),
        "p50_s": round(latencies[len(latencies) // 2], 2),
        "p95_s": round(latencies[int(len(latencies) * 0.95) - 1], 2),
        "peak_running": dict(peaks),
        "max_concurrency": MAX_CONCURRENCY,
        "per_host": dict(Counter(r["worker_host_name"] for r in finished.values())),
    }


async def main(runs: int) -> None:
    fleet = await asyncio.to_thread(start_fleet)
    try:
        url = f"sqlite+aiosqlite:///{tempfile.mkdtemp(prefix='dfl-bench-')}/bench.db"
        await upgrade(url)
        values = {
            "database_url": url,
            "health_interval_seconds": 0,
            "reconcile_interval_seconds": 0,
            "allowed_networks": "loopback,10.0.0.0/8",
            "secrets_dir": "/tmp",  # the fleet's keys and certificates live under /tmp
        }
        app = create_app(Settings(_env_file=None, **values), migrate=False)  # type: ignore[call-arg, arg-type]
        await start(app.state.dockfleet)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bench", timeout=60
        ) as client:
            rss_before = rss_mib()
            for daemon in (fleet.sock, fleet.tls, fleet.ssh):
                body = daemon.host_payload(daemon.name, max_concurrency=MAX_CONCURRENCY)
                r = await client.post("/api/worker-hosts/", json=body)
                if r.status_code != 201:
                    raise SystemExit(f"registering {daemon.name} failed: {r.status_code} {r.text}")
                host_id = r.json()["id"]
                median = await check_latency(client, host_id)
                print(f"live check {daemon.name:>4}: median {median:.1f} ms")
            await client.post(
                "/api/tasks/",
                json={
                    "name": "noop",
                    "image": "busybox:1.36",
                    "command": ["true"],
                    "network_mode": "none",
                },
            )
            await client.post("/api/directives/", json={"name": "bench", "tasks": ["noop"]})
            print(f"throughput: {await throughput(client, fleet, runs)}")
            print(f"orchestrator peak RSS: {rss_mib():.0f} MiB (before: {rss_before:.0f} MiB)")
        await stop(app.state.dockfleet)
    finally:
        await asyncio.to_thread(fleet.teardown)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 60))
