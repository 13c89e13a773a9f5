"""What a Supervisor writes: a new attempt, its container, its end, and the run's final state.

Each method is one short transaction that first fences on ownership (`ownership.fence`): it
writes only while this process still drives the run, else raises LostOwnership. None holds a
transaction across Docker calls. The run's slot and GPUs are released in the same transaction
that ends the run only when its container is known gone; otherwise the hold lingers until a
sweep of the host finds it gone.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from app import clock
from app.db import Database
from app.hosts import holds
from app.runs import store
from app.runs.models import FINAL, Run, RunStatus, RunTask, TaskStatus
from app.scheduling import ownership

log = logging.getLogger("dockfleet.supervisor")


@dataclass
class Outcome:
    """How one attempt ended (`running`: the host was flaky, try the same attempt again)."""

    status: TaskStatus
    exit_code: int | None = None
    error: str | None = None
    logs: str = ""
    truncated: bool = False
    host_lost: bool = False


def retries_left(task: RunTask) -> bool:
    """Whether a failed attempt of this task may be followed by another."""
    return task.attempt <= int(task.task_snapshot.get("max_retries", 0))


async def _skip_rest(session: AsyncSession, run_id: int, to: TaskStatus) -> None:
    stmt = (
        update(RunTask)
        .where(col(RunTask.run_id) == run_id, col(RunTask.status).in_(["pending", "running"]))
        .values(status=to.value)
    )
    await session.exec(stmt)


class RunRecords:
    """The fenced writes of one run's supervisor (`me` is this process's owner id)."""

    def __init__(self, db: Database, run_id: int, me: str, lease: float) -> None:
        self.db = db
        self.run_id = run_id
        self.me = me
        self.lease = lease

    @asynccontextmanager
    async def _owned(self) -> AsyncIterator[AsyncSession]:
        async with self.db.session_scope() as session:
            await ownership.fence(session, self.run_id, self.me, self.lease)
            yield session

    async def begin_attempt(self, task: RunTask) -> None:
        """Record a new attempt before its container exists; updates `task` in place."""
        async with self._owned() as session:
            row = await session.get(RunTask, task.id)
            assert row is not None
            row.status, row.attempt = TaskStatus.running.value, row.attempt + 1
            row.started_at, row.finished_at = None, None
            row.container_id, row.exit_code, row.error = None, None, None
            session.add(row)
        for key in ("status", "attempt", "started_at", "finished_at", "container_id", "exit_code"):
            setattr(task, key, getattr(row, key))

    async def set_container(self, task: RunTask, cid: str) -> None:
        """Remember the attempt's container id."""
        async with self._owned() as session:
            await session.exec(
                update(RunTask).where(col(RunTask.id) == task.id).values(container_id=cid)
            )
        task.container_id = cid

    async def started(self, task: RunTask, when: datetime) -> None:
        """The attempt's container started at `when`: its timeout counts from here; the run is
        `running` and started when its first container did."""
        async with self._owned() as session:
            await session.exec(
                update(RunTask).where(col(RunTask.id) == task.id).values(started_at=when)
            )
            run = await store.get_or_raise(session, self.run_id)
            if run.status == RunStatus.starting:
                await store.transition(session, run, RunStatus.running, started_at=when)
        task.started_at = when

    async def save_attempt(self, task: RunTask, out: Outcome, retry: bool) -> None:
        """Store an attempt's end (exit code, error, log tail); `retry` puts the task back."""
        async with self._owned() as session:
            row = await session.get(RunTask, task.id)
            assert row is not None
            row.status = TaskStatus.pending.value if retry else out.status.value
            row.exit_code, row.error, row.finished_at = out.exit_code, out.error, clock.now()
            row.logs, row.logs_truncated = out.logs, out.truncated
            session.add(row)
        task.status = TaskStatus.pending.value if retry else out.status.value

    async def finish(
        self, status: RunStatus, error: str | None, container_gone: bool, skip: TaskStatus
    ) -> None:
        """Move the run to a final state (tasks not yet run become `skip`). Its slot and GPUs
        are freed only if its container is known gone; else the hold lingers."""
        async with self._owned() as session:
            run = await store.get_or_raise(session, self.run_id)
            if RunStatus(run.status) in FINAL:
                return
            await _skip_rest(session, self.run_id, skip)
            await store.transition(session, run, status, error=error, finished_at=clock.now())
            if container_gone:
                await holds.release_run(session, self.run_id)
            else:
                await holds.linger_run(session, self.run_id, f"run {status.value}: {error}")
        log.info("run %s %s%s", self.run_id, status.value, f": {error}" if error else "")

    async def host_lost(self, task: RunTask, error: str | None) -> RunStatus:
        """The host is lost: the run leaves it — back to pending (retries left), cancelled (a
        cancel was asked for), else failed. Its hold lingers: the container may still run
        there, and a sweep releases it when the host is back."""
        retry = retries_left(task)
        async with self._owned() as session:
            row = await session.get(RunTask, task.id)
            run = await store.get_or_raise(session, self.run_id)
            assert row is not None
            if RunStatus(run.status) in FINAL:
                return RunStatus(run.status)
            cancelled = run.cancel_requested or run.status == RunStatus.cancelling
            requeue = retry and not cancelled
            row.status = TaskStatus.pending.value if requeue else TaskStatus.failed.value
            if cancelled:
                row.status = TaskStatus.cancelled.value
            row.error, row.finished_at = error, clock.now()
            session.add(row)
            await holds.linger_run(session, self.run_id, f"host lost: {error}")
            if requeue:
                released: dict[str, object] = {
                    "worker_host_id": None,
                    "worker_host_name": None,
                    "gpu_device_ids": [],
                    "supervisor": None,  # any orchestrator may pick it up again
                    "lease_expires_at": None,
                }
                to = RunStatus.pending
                await store.transition(session, run, to, **released)
            else:
                to = RunStatus.cancelled if cancelled else RunStatus.failed
                await _skip_rest(session, self.run_id, TaskStatus.skipped)
                why = "cancelled; host unreachable" if cancelled else "host unreachable"
                await store.transition(session, run, to, error=why, finished_at=clock.now())
        log.warning("run %s lost its host (%s)", self.run_id, to.value)
        return to

    async def load(self) -> tuple[Run, list[RunTask]]:
        """The run and its tasks as the database has them now."""
        async with self.db.sessions() as session:
            run = await store.get_or_raise(session, self.run_id)
            tasks = (await store.tasks_of(session, [self.run_id]))[self.run_id]
            return run, tasks
