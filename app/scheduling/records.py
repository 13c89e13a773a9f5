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
from typing import Any

from sqlalchemy import exists, func, literal, select, update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from app import clock
from app.db import Database, UTCDateTime
from app.errors import IllegalTransition
from app.events import store as events
from app.hosts import holds
from app.runs import store
from app.runs.models import FINAL, Run, RunStatus, RunTask, TaskStatus
from app.scheduling import ownership

log = logging.getLogger("dockfleet.supervisor")

# What a run's event tells besides its status, read back by the UPDATE that moves it.
_FACTS = (
    col(Run.worker_host_id),
    col(Run.worker_host_name),
    Run.directive_snapshot["name"].as_string(),
)


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

    def _ours(self) -> Any:
        """The fence of a task write: the run is still driven by this process."""
        return exists(
            select(col(Run.id)).where(col(Run.id) == self.run_id, col(Run.supervisor) == self.me)
        )

    async def _task(self, session: AsyncSession, task: RunTask, **values: Any) -> Any:
        stmt = update(RunTask).where(col(RunTask.id) == task.id, self._ours()).values(**values)
        result = await session.exec(stmt.returning(col(RunTask.attempt)))
        row = result.first()
        if row is None:
            raise ownership.LostOwnership(f"run {self.run_id} is no longer driven by this process")
        return row

    async def begin_attempt(self, task: RunTask) -> None:
        """Record a new attempt before its container exists; updates `task` in place."""
        async with self.db.session_scope() as session:
            (attempt,) = await self._task(
                session,
                task,
                status=TaskStatus.running.value,
                attempt=col(RunTask.attempt) + 1,
                started_at=None,
                finished_at=None,
                container_id=None,
                exit_code=None,
                error=None,
            )
        task.status, task.attempt = TaskStatus.running.value, int(attempt)
        task.started_at = task.finished_at = task.container_id = task.exit_code = None

    async def set_container(self, task: RunTask, cid: str) -> None:
        """Remember the attempt's container id."""
        async with self.db.session_scope() as session:
            await self._task(session, task, container_id=cid)
        task.container_id = cid

    async def started(self, task: RunTask, when: datetime, cid: str | None = None) -> None:
        """The attempt's container (`cid`) started at `when`: its timeout counts from here;
        the run is `running`, started when its first container did."""
        values: dict[str, Any] = {"started_at": when}
        if cid is not None:
            values["container_id"] = cid
        async with self.db.session_scope() as session:
            await self._task(session, task, **values)
            moved = await session.exec(
                update(Run)
                .where(
                    col(Run.id) == self.run_id,
                    col(Run.supervisor) == self.me,
                    col(Run.status) == RunStatus.starting.value,
                )
                .values(
                    status=RunStatus.running.value,
                    started_at=func.coalesce(col(Run.started_at), literal(when, UTCDateTime())),
                    updated_at=clock.now(),
                )
                .returning(*_FACTS)
            )
            for host_id, host_name, directive in moved.all():
                await events.record(
                    session,
                    "run.running",
                    run_id=self.run_id,
                    host_id=host_id,
                    status="running",
                    directive=directive,
                    host=host_name,
                )
        task.started_at = when
        if cid is not None:
            task.container_id = cid

    async def save_attempt(self, task: RunTask, out: Outcome, retry: bool) -> None:
        """Store an attempt's end (exit code, error, log tail); `retry` puts the task back."""
        status = TaskStatus.pending.value if retry else out.status.value
        async with self.db.session_scope() as session:
            await self._task(
                session,
                task,
                status=status,
                exit_code=out.exit_code,
                error=out.error,
                finished_at=clock.now(),
                logs=out.logs,
                logs_truncated=out.truncated,
            )
        task.status, task.error = status, out.error

    async def finish(
        self, status: RunStatus, error: str | None, container_gone: bool, skip: TaskStatus
    ) -> None:
        """Move the run to a final state (tasks not yet run become `skip`). Its slot and GPUs
        are freed only if its container is known gone; else the hold lingers."""
        now = clock.now()
        async with self.db.session_scope() as session:
            moved = (
                await session.exec(
                    update(Run)
                    .where(
                        col(Run.id) == self.run_id,
                        col(Run.supervisor) == self.me,
                        col(Run.status).in_(store.legal_from(status)),
                    )
                    .values(status=status.value, error=error, finished_at=now, updated_at=now)
                    .returning(*_FACTS)
                )
            ).first()
            if moved is None:
                run = await store.get_or_raise(session, self.run_id)
                if RunStatus(run.status) in FINAL:
                    return
                if run.supervisor != self.me:
                    raise ownership.LostOwnership(f"run {self.run_id} is driven by another")
                raise IllegalTransition(f"run {self.run_id} is {run.status}; not {status.value}")
            await _skip_rest(session, self.run_id, skip)
            if container_gone:
                await holds.release_run(session, self.run_id)
            else:
                await holds.linger_run(session, self.run_id, f"run {status.value}: {error}")
            host_id, host_name, directive = moved
            await events.record(
                session,
                f"run.{status.value}",
                run_id=self.run_id,
                host_id=host_id,
                status=status.value,
                directive=directive,
                host=host_name,
                error=error,
            )

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
