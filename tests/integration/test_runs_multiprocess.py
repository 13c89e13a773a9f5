"""Two orchestrator processes on one database: every run is driven by exactly one of them, the
host is never overbooked, and when one process dies the other adopts its runs."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

from tests import pgtemplate
from tests.fleet import Fleet
from tests.integration.runs_helpers import (
    add_directive,
    add_host,
    add_task,
    container_events,
    containers,
    free_port,
    launch,
    remove_ours,
    run_logs,
    wait_run,
)
from tests.integration.test_runs_recovery import Server


def two_servers(workdir: Path) -> tuple[Server, Server]:
    """Two server processes on one database (PostgreSQL when the tests are given one)."""
    env = {"DOCKFLEET_DATABASE_URL": pgtemplate.fresh_database()} if pgtemplate.server_url() else {}
    one, two = Server(workdir, **env), Server(workdir, **env)
    while two.port == one.port:
        two.port = free_port()
    two.url = f"http://127.0.0.1:{two.port}"
    return one, two


async def _creates_per_run(fleet: Fleet, since: float, instance: str) -> Counter[str]:
    events = await container_events(
        fleet.sock, since, f"dockfleet.instance={instance}", actions=("create",)
    )
    return Counter(e["Actor"]["Attributes"]["dockfleet.run_id"] for e in events)


async def test_two_servers_never_drive_a_run_twice(fleet: Fleet, tmp_path: Path) -> None:
    one, two = two_servers(tmp_path)
    await one.start()
    await two.start()
    try:
        async with one.client() as a, two.client() as b:
            host_id = await add_host(a, fleet.sock, "mp-sock", max_concurrency=2)
            assert (await b.get(f"/api/worker-hosts/{host_id}/health/?check=true")).json()[
                "healthy"
            ]
            first = await add_task(a, "mp-one", "sleep 1; echo one")
            second = await add_task(a, "mp-two", "sleep 1; echo two")
            directive = await add_directive(a, "mp", tasks=[first, second])
            instance = one.instance_id()
            since = time.time() - 1
            peak, done = 0, asyncio.Event()

            async def sample() -> None:
                nonlocal peak
                while not done.is_set():
                    running = await containers(
                        fleet.sock, f"dockfleet.instance={instance}", all=False
                    )
                    peak = max(peak, len(running))
                    await asyncio.sleep(0.05)

            sampler = asyncio.create_task(sample())
            launched = await asyncio.gather(
                *(launch(a if i % 2 else b, directive) for i in range(6))
            )
            finals = [await wait_run(a, r["id"], within=120) for r in launched]
            done.set()
            await sampler
            assert [f["status"] for f in finals] == ["succeeded"] * 6, finals
            assert all(t["attempt"] == 1 for f in finals for t in f["tasks"])
            assert peak <= 2
            creates = await _creates_per_run(fleet, since, instance)
            assert sorted(creates.values()) == [2] * 6  # one container per task, never two
            assert await containers(fleet.sock, f"dockfleet.instance={instance}") == []
    finally:
        one.kill()
        two.kill()
        await remove_ours(fleet.sock, one.instance_id())


async def test_a_dead_servers_runs_are_adopted_by_the_other(fleet: Fleet, tmp_path: Path) -> None:
    one, two = two_servers(tmp_path)
    await one.start()
    await two.start()
    try:
        async with one.client() as a, two.client() as b:
            host_id = await add_host(a, fleet.sock, "mp-adopt", max_concurrency=2)
            assert (await a.get(f"/api/worker-hosts/{host_id}/health/?check=true")).json()[
                "healthy"
            ]
            task = await add_task(a, "mp-slow", "sleep 4; echo adopted-ok")
            directive = await add_directive(a, "mp-adopt", tasks=[task])
            instance = one.instance_id()
            since = time.time() - 1
            run = await launch(a, directive)  # placed, and driven, by server one
            for _ in range(100):
                if (await run_logs(a, run["id"]))["status"] == "running":
                    break
                await asyncio.sleep(0.1)
            one.kill()  # kill -9: no lease released; server two sees its pid gone
            final = await wait_run(b, run["id"], within=60)
            assert final["status"] == "succeeded", final
            assert "adopted-ok" in (await run_logs(b, run["id"]))["tasks"][0]["logs"]
            assert (await _creates_per_run(fleet, since, instance))[str(run["id"])] == 1
    finally:
        one.kill()
        two.kill()
        await remove_ours(fleet.sock, one.instance_id())
