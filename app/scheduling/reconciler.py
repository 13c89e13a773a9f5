"""Reconciler: matches Docker's containers to the database, at start-up and every few minutes.

Active runs get a Supervisor again (it adopts their containers by name). A host is *swept*:
our containers there that no live attempt claims are stopped and removed, and then the slot
holds that no longer belong to a run active there (lingering ones) are released. The health
monitor sweeps a host this way on its first good check after a failure, before the host is
healthy again — so a host coming back from a partition never runs more than its slots.
"""

from __future__ import annotations

import asyncio
import logging

from sqlmodel import col, or_, select

from app.deps import AppState
from app.engine.endpoint import Endpoint
from app.errors import EngineError
from app.hosts import holds
from app.hosts.models import WorkerHost
from app.runs.models import ACTIVE, Run, RunTask
from app.scheduling.scheduler import Scheduler

log = logging.getLogger("dockfleet.reconciler")

_ACTIVE = [s.value for s in ACTIVE]


class Reconciler:
    """Adopts what survived a restart and cleans up what nobody owns."""

    def __init__(self, state: AppState, scheduler: Scheduler) -> None:
        self.state = state
        self.scheduler = scheduler
        self.interval = state.settings.reconcile_interval_seconds
        self._task: asyncio.Task[None] | None = None

    async def _claimed(self, host_id: int) -> set[tuple[str, str, str]]:
        """(run_id, task_id, attempt) of every attempt the database says is live on the host."""
        async with self.state.db.sessions() as session:
            query = (
                select(RunTask.run_id, RunTask.id, RunTask.attempt)
                .join(Run, col(Run.id) == col(RunTask.run_id))
                .where(col(Run.status).in_(_ACTIVE), col(Run.worker_host_id) == host_id)
                .where(col(RunTask.status) == "running")
            )
            rows = (await session.exec(query)).all()
        return {(str(r), str(t), str(a)) for r, t, a in rows}

    async def _stale_holds(self, host_id: int) -> list[int]:
        """Holds on the host that no run active there uses (lingering, or left behind)."""
        async with self.state.db.sessions() as session:
            query = (
                select(holds.SlotHold.id)
                .join(Run, col(Run.id) == col(holds.SlotHold.run_id))
                .where(col(holds.SlotHold.host_id) == host_id)
                .where(
                    or_(
                        col(holds.SlotHold.lingering),
                        col(Run.status).not_in(_ACTIVE),
                        col(Run.worker_host_id) != host_id,
                    )
                )
            )
            return [i for i in (await session.exec(query)).all() if i is not None]

    async def sweep(self, ep: Endpoint) -> str | None:
        """Remove our containers on the host that no live attempt claims, then release the
        holds that were stale before the listing. None when clean, else what went wrong."""
        # Read the stale holds first: a hold that goes stale later may still have a container.
        stale = await self._stale_holds(ep.host_id)
        failed = 0
        try:
            async with self.state.pool.docker(ep) as docker:
                found = await docker.list_ours(self.state.instance_id)
                # Read the claims only after listing: an attempt is recorded before its
                # container is created, so every container listed is claimed if it is live.
                claimed = await self._claimed(ep.host_id) if found else set()
                for c in found:
                    labels = c.labels
                    key = tuple(labels.get(f"dockfleet.{k}", "") for k in ("run_id", "task_id"))
                    key += (labels.get("dockfleet.attempt", ""),)
                    if key in claimed:
                        continue
                    try:
                        await docker.remove(c.id)  # forced: a running one is killed
                        log.info("removed orphan container %s on %s", c.id[:12], ep.name)
                    except EngineError as exc:
                        failed += 1
                        log.warning("could not remove %s on %s: %s", c.id[:12], ep.name, exc)
        except EngineError as exc:
            return str(exc.detail)
        if failed:
            return f"{failed} leftover containers could not be removed"
        if stale:
            async with self.state.db.session_scope() as session:
                await holds.release(session, stale)
            log.info("released %s lingering slot holds on %s", len(stale), ep.name)
            self.scheduler.host_changed(ep.host_id)
        return None

    async def tick(self) -> None:
        """Adopt active runs, then sweep every enabled, healthy host."""
        await self.scheduler.adopt()
        async with self.state.db.sessions() as session:
            query = select(WorkerHost).where(col(WorkerHost.enabled), col(WorkerHost.healthy))
            hosts = (await session.exec(query)).all()
        problems = await asyncio.gather(*(self.sweep(Endpoint.of(h)) for h in hosts))
        for host, problem in zip(hosts, problems, strict=True):
            if problem:
                log.info("reconcile of %s incomplete: %s", host.name, problem)

    async def run(self) -> None:
        """Tick at start-up, then every interval (if the interval is not 0)."""
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("reconcile failed")
            if self.interval <= 0:
                return
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        """Start the loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run(), name="reconciler")

    async def stop(self) -> None:
        """Stop the loop."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
