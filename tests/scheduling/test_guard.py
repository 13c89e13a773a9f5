"""The guarded write: several schedulers (as several orchestrators would) racing on one database
never overbook a host or hand one GPU id to two runs."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace

from fastapi import FastAPI
from sqlmodel import select

from app import clock
from app.deps import AppState
from app.hosts.models import WorkerHost
from app.runs.models import ACTIVE, Run
from app.scheduling.scheduler import Scheduler


class PlacingOnly(Scheduler):
    """A scheduler that places but starts no containers."""

    def supervise(self, run_id: int) -> None:
        return None


async def seed(state: AppState, runs: int, gpu_runs: int) -> None:
    async with state.db.session_scope() as session:
        now = clock.now()
        session.add(
            WorkerHost(
                name="a",
                type="docker_socket",
                base_url="unix:///tmp/a.sock",
                healthy=True,
                last_seen_at=now,
                capabilities={"max_concurrency": 2},
            )
        )
        session.add(
            WorkerHost(
                name="b",
                type="docker_socket",
                base_url="unix:///tmp/b.sock",
                healthy=True,
                last_seen_at=now,
                capabilities={"max_concurrency": 3, "gpus": True, "gpu_count": 2},
            )
        )
        for i in range(runs):
            session.add(Run(gpu_need=1 if i < gpu_runs else 0, directive_snapshot={"n": i}))


async def test_racing_schedulers_respect_slots_and_gpus(app: FastAPI) -> None:
    state: AppState = app.state.dockfleet
    await state.services["scheduler"].stop()  # the app's own loop stays out of this
    await seed(state, runs=30, gpu_runs=10)
    schedulers = [PlacingOnly(state) for _ in range(4)]
    results = await asyncio.gather(*(s.place() for s in schedulers for _ in range(3)))
    placed = [p for r in results for p in r]

    async with state.db.sessions() as session:
        hosts = {h.id: h for h in (await session.exec(select(WorkerHost))).all()}
        active = [r for r in (await session.exec(select(Run))).all() if r.status in ACTIVE]
    per_host = Counter(r.worker_host_id for r in active)
    # b: both GPUs taken by the two oldest runs; its third slot stays reserved for the next GPU
    # run in line (oldest first), so the CPU runs get only a's two slots.
    assert len(placed) == len(active) == 4
    for host_id, n in per_host.items():
        assert n <= hosts[host_id].caps().max_concurrency
    gpu_ids = [g for r in active for g in r.gpu_device_ids]
    assert len(gpu_ids) == len(set(gpu_ids)) == 2


async def test_a_plan_from_a_stale_snapshot_loses_its_guard(app: FastAPI) -> None:
    state: AppState = app.state.dockfleet
    await state.services["scheduler"].stop()
    async with state.db.session_scope() as session:
        session.add(
            WorkerHost(
                name="one-slot",
                type="docker_socket",
                base_url="unix:///tmp/x.sock",
                healthy=True,
                last_seen_at=clock.now(),
                capabilities={"max_concurrency": 1},
            )
        )
        session.add(Run(directive_snapshot={}))
    x, y = PlacingOnly(state), PlacingOnly(state)
    [stale] = await x._plan()  # x sees run 1 and a free slot
    async with state.db.session_scope() as session:
        session.add(Run(directive_snapshot={}))  # run 2 arrives; y places it first
    done, lost = await y._apply([replace(stale, run_id=2)])
    assert done and not lost
    done, lost = await x._apply([stale])
    assert not done and lost  # the host moved on: x must re-plan, not overbook
    assert await x.place() == []  # and re-planning finds the host full
