"""Replicas: two and three `dockfleet serve` processes on one database behave as one service.

Counted from the daemons' own view (tests/fleet/observe.py): concurrent launches through every
replica never overbook a host (peak running containers per daemon <= max_concurrency) nor a GPU
(no device id in two running containers), each task attempt is created exactly once (one
process drives each run), and `kill -9` of a replica loses nothing, starts nothing twice, and
its runs are adopted within 2 x DOCKFLEET_LEASE_SECONDS (measured, printed in the summary).

The victim of a kill runs either beside the others (its pid is seen gone: adopted at the next
lease pass) or in a pid namespace of its own, which makes it look like another machine: then
only the lapse of its lease lets the others adopt. Two and three replicas, and both kinds of
kill, on PostgreSQL; two replicas on one machine on SQLite.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest
from sqlmodel import col, select

from app.db import Database
from app.runs.models import Run
from tests.fleet import Fleet
from tests.fleet.observe import EventLog, Sampler
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
    uniq,
    wait_run,
)
from tests.integration.test_runs_recovery import Server
from tests.measured import MEASURED

LEASE = 3.0  # DOCKFLEET_LEASE_SECONDS of the replicas (the smallest allowed)
OTHER_MACHINE = ("unshare", "--pid", "--fork", "--kill-child")


def replicas(
    workdir: Path, db_url: str, n: int, *, other_machine: frozenset[int] = frozenset()
) -> list[Server]:
    """`n` `dockfleet serve` processes on one database, each on its own port."""
    servers: list[Server] = []
    for i in range(n):
        server = Server(
            workdir / f"replica-{i}",
            cli=True,
            prefix=OTHER_MACHINE if i in other_machine else (),
            DOCKFLEET_DATABASE_URL=db_url,
            DOCKFLEET_LEASE_SECONDS=str(LEASE),
        )
        while server.port in {s.port for s in servers}:
            server.port = free_port()
            server.url = f"http://127.0.0.1:{server.port}"
        servers.append(server)
    return servers


async def supervisors(db_url: str, run_ids: list[int]) -> dict[int, str | None]:
    """runs.supervisor of each run, read from the database itself."""
    db = Database(db_url)
    try:
        async with db.sessions() as session:
            rows = await session.exec(
                select(Run.id, Run.supervisor).where(col(Run.id).in_(run_ids))
            )
            return {int(rid): owner for rid, owner in rows.all() if rid is not None}
    finally:
        await db.dispose()


def owner_of(server: Server, owners: set[str]) -> str | None:
    """The owner id (host:pid:start:boot:pidns:nonce) among `owners` that is `server`'s."""
    assert server.proc is not None
    my_pidns = str(os.stat("/proc/self/ns/pid").st_ino)
    for owner in owners:
        parts = owner.split(":")
        if server.prefix and parts[4] != my_pidns:
            return owner
        if not server.prefix and parts[1] == str(server.proc.pid):
            return owner
    return None


PG = pytest.mark.postgresql


# Replicas are PostgreSQL's use; SQLite (one file, so one machine) gets the smaller cases.
@pytest.mark.parametrize(
    ("db_backend", "n"),
    [
        ("sqlite", 2),
        pytest.param("postgresql", 2, marks=PG),
        pytest.param("postgresql", 3, marks=PG),
    ],
    indirect=["db_backend"],
)
async def test_replicas_never_overbook_a_host_or_a_gpu_and_drive_each_run_once(
    fleet: Fleet, tmp_path: Path, db_url: str, n: int
) -> None:
    servers = replicas(tmp_path, db_url, n)
    await asyncio.gather(*(s.start() for s in servers))
    instance = servers[0].instance_id()
    assert {s.instance_id() for s in servers} == {instance}  # the database's id
    label = f"dockfleet.instance={instance}"
    try:
        async with AsyncExitStack() as stack:
            https = [await stack.enter_async_context(s.client()) for s in servers]
            await _share_the_work(fleet, https, label)
    finally:
        for server in servers:
            server.kill()
        await remove_ours(fleet.sock, instance)
        await remove_ours(fleet.gpu, instance)


async def _share_the_work(fleet: Fleet, https: list[httpx.AsyncClient], label: str) -> None:
    n = len(https)
    first = https[0]
    await add_host(first, fleet.sock, uniq("rep-cpu"), max_concurrency=2)
    await add_host(first, fleet.gpu, uniq("rep-gpu"), gpu_count=2, max_concurrency=3)
    for http in https[1:]:  # every replica sees the hosts healthy
        hosts = (await http.get("/api/worker-hosts/")).json()["results"]
        assert all(h["healthy"] for h in hosts if h["name"].startswith("rep-")), hosts
    cpu = await add_task(first, uniq("rep-cpu"), "sleep 1; echo cpu")
    gpu = await add_task(
        first,
        uniq("rep-gpu"),
        'echo "NV=$NVIDIA_VISIBLE_DEVICES"; sleep 1',
        requires_gpu=True,
        gpu_count=1,
    )
    cpu_directive = await add_directive(first, uniq("rep-cpu"), tasks=[cpu, cpu])
    gpu_directive = await add_directive(first, uniq("rep-gpu"), tasks=[gpu])
    plan = [cpu_directive] * (3 * n) + [gpu_directive] * (2 * n)
    async with (
        EventLog([fleet.sock, fleet.gpu], label) as events,
        Sampler([fleet.sock, fleet.gpu], label) as sampler,
    ):
        launched = await asyncio.gather(*(launch(https[i % n], d) for i, d in enumerate(plan)))
        finals = [await wait_run(https[i % n], r["id"], within=180) for i, r in enumerate(launched)]
    assert [f["status"] for f in finals] == ["succeeded"] * len(plan), finals
    assert all(t["attempt"] == 1 for f in finals for t in f["tasks"]), finals
    assert sampler[fleet.sock].peak == 2, sampler[fleet.sock]  # full, never over
    assert sampler[fleet.gpu].peak <= 3, sampler[fleet.gpu]
    assert sampler[fleet.gpu].overlaps == [], sampler[fleet.gpu].overlaps
    creates = events.creates_per_attempt(fleet.sock) | events.creates_per_attempt(fleet.gpu)
    assert set(creates.values()) == {1}, creates  # one container per task attempt, ever
    tasks_per_run = Counter(key[0] for key in creates)
    assert tasks_per_run == {str(f["id"]): len(f["tasks"]) for f in finals}, tasks_per_run
    for run in finals:
        if run["gpu_need"]:
            logs = (await run_logs(first, run["id"]))["tasks"][0]["logs"]
            assert logs == f"NV={run['gpu_device_ids'][0]}\n", (run, logs)
    assert await containers(fleet.sock, label) == []
    assert await containers(fleet.gpu, label) == []


@pytest.mark.parametrize(
    ("db_backend", "n", "where"),
    [
        ("sqlite", 2, "same-machine"),
        pytest.param("postgresql", 2, "same-machine", marks=PG),
        pytest.param("postgresql", 3, "other-machine", marks=PG),
    ],
    indirect=["db_backend"],
)
async def test_kill_9_of_a_replica_loses_nothing_and_its_runs_are_adopted_in_time(
    fleet: Fleet, tmp_path: Path, db_url: str, n: int, where: str
) -> None:
    elsewhere = frozenset({0}) if where == "other-machine" else frozenset()
    servers = replicas(tmp_path, db_url, n, other_machine=elsewhere)
    await asyncio.gather(*(s.start() for s in servers))
    victim, survivors = servers[0], servers[1:]
    instance = victim.instance_id()
    label = f"dockfleet.instance={instance}"
    since = time.time() - 1
    try:
        async with victim.client() as v, survivors[0].client() as b:
            await add_host(v, fleet.sock, uniq("rep-adopt"), max_concurrency=4)
            task = await add_task(v, uniq("rep-slow"), 'sleep 5; echo "adopted-ok"')
            directive = await add_directive(v, uniq("rep-adopt"), tasks=[task])
            runs = [await launch(v, directive) for _ in range(3)]
            ids = [r["id"] for r in runs]
            for run_id in ids:
                await wait_run(v, run_id, {"running"}, within=30, poll=0.05)
            owners = await supervisors(db_url, ids)
            mine = owner_of(victim, {o for o in owners.values() if o})
            assert mine is not None, (owners, victim.log())
            orphaned = [rid for rid, owner in owners.items() if owner == mine]
            assert orphaned, owners

            victim.kill()  # kill -9: no lease released
            killed_at = time.monotonic()
            while True:
                now = await supervisors(db_url, orphaned)
                if all(owner not in (None, mine) for owner in now.values()):
                    adopted_after = time.monotonic() - killed_at
                    break
                assert time.monotonic() - killed_at < 4 * LEASE, (now, mine)
                await asyncio.sleep(0.05)
            MEASURED.append(
                f"replicas: kill -9 of 1 of {n} ({where}, {len(orphaned)} runs, "
                f"{db_url.split(':', 1)[0]}): adopted after {adopted_after:.2f} s "
                f"(lease {LEASE:g} s, bound {2 * LEASE:g} s)"
            )
            assert adopted_after <= 2 * LEASE, adopted_after
            survivors_owners = {o for o in now.values()}
            assert mine not in survivors_owners

            ids.append((await launch(b, directive))["id"])  # the service goes on serving
            finals = [await wait_run(b, run_id, within=60) for run_id in ids]
            assert [f["status"] for f in finals] == ["succeeded"] * 4, finals
            for run in finals:
                assert run["tasks"][0]["attempt"] == 1 and run["placements"] == 1, run
                assert (await run_logs(b, run["id"]))["tasks"][0]["logs"] == "adopted-ok\n"
        events = await container_events(fleet.sock, since, label, actions=("create",))
        creates = Counter(e["Actor"]["Attributes"]["dockfleet.run_id"] for e in events)
        assert creates == {str(run_id): 1 for run_id in ids}, creates  # nothing started twice
        assert await containers(fleet.sock, label) == []
    finally:
        for server in servers:
            server.kill()
        await remove_ours(fleet.sock, instance)
