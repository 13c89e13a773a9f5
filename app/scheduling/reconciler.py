"""Reconciler: after a restart and every few minutes, matches Docker's containers to the database.

Active runs get a Supervisor again (it adopts their containers by name); containers of ours
that no active task attempt claims are removed.
"""

from __future__ import annotations

import asyncio
import logging

from sqlmodel import col, select

from app.deps import AppState
from app.engine import containers
from app.engine.endpoint import Endpoint
from app.errors import EngineError
from app.hosts.models import WorkerHost
from app.runs.models import ACTIVE, Run, RunTask
from app.scheduling.scheduler import Scheduler

log = logging.getLogger("dockfleet.reconciler")


class Reconciler:
    """Adopts what survived a restart and cleans up what nobody owns."""

    def __init__(self, state: AppState, scheduler: Scheduler) -> None:
        self.state = state
        self.scheduler = scheduler
        self.interval = state.settings.reconcile_interval_seconds
        self._task: asyncio.Task[None] | None = None

    async def _claimed(self) -> set[tuple[str, str, str, int]]:
        """(run_id, task_id, attempt, host_id) of every attempt the database says is live."""
        async with self.state.db.sessions() as session:
            query = (
                select(RunTask.run_id, RunTask.id, RunTask.attempt, Run.worker_host_id)
                .join(Run, col(Run.id) == col(RunTask.run_id))
                .where(col(Run.status).in_([s.value for s in ACTIVE]))
                .where(col(RunTask.status) == "running")
            )
            rows = (await session.exec(query)).all()
        return {(str(r), str(t), str(a), h or 0) for r, t, a, h in rows}

    async def sweep_host(self, host: WorkerHost) -> int:
        """Remove containers of ours on one host that no live attempt claims; how many."""
        ep = Endpoint.of(host)
        removed = 0
        try:
            async with self.state.pool.docker(ep) as docker:
                found = await containers.list_ours(docker, self.state.instance_id)
                # Read the claims only after listing: an attempt is recorded before its
                # container is created, so every container listed is claimed if it is live.
                claimed = await self._claimed() if found else set()
                for c in found:
                    key = (
                        c.labels.get("dockfleet.run_id", ""),
                        c.labels.get("dockfleet.task_id", ""),
                        c.labels.get("dockfleet.attempt", ""),
                        host.id or 0,
                    )
                    if key not in claimed:
                        await containers.remove(docker, c.id)
                        removed += 1
                        log.info("removed orphan container %s on %s", c.id[:12], host.name)
        except EngineError as exc:
            log.info("reconcile skipped %s: %s", host.name, exc.detail)
        return removed

    async def tick(self) -> int:
        """Adopt active runs, then sweep every enabled host; returns orphans removed."""
        await self.scheduler.adopt()
        async with self.state.db.sessions() as session:
            hosts = (await session.exec(select(WorkerHost).where(col(WorkerHost.enabled)))).all()
        counts = await asyncio.gather(*(self.sweep_host(h) for h in hosts))
        return sum(counts)

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
