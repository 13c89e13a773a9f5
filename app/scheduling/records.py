"""What a Supervisor writes: a new attempt, its container, its end, and the run's final state.

Each function is one short transaction; none holds a transaction across Docker calls.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from app import clock
from app.db import Database
from app.runs import store
from app.runs.models import FINAL, RunStatus, RunTask, TaskStatus

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


async def begin_attempt(db: Database, task: RunTask) -> None:
    """Record a new attempt before its container exists; updates `task` in place."""
    async with db.session_scope() as session:
        row = await session.get(RunTask, task.id)
        assert row is not None
        row.status, row.attempt = TaskStatus.running.value, row.attempt + 1
        row.started_at, row.finished_at = clock.now(), None
        row.container_id, row.exit_code = None, None
        session.add(row)
    for key in ("status", "attempt", "started_at", "finished_at", "container_id", "exit_code"):
        setattr(task, key, getattr(row, key))


async def set_container(db: Database, task: RunTask, cid: str) -> None:
    """Remember the attempt's container id."""
    async with db.session_scope() as session:
        await session.exec(
            update(RunTask).where(col(RunTask.id) == task.id).values(container_id=cid)
        )
    task.container_id = cid


async def mark_running(db: Database, run_id: int) -> None:
    """starting → running, once its first container is up."""
    async with db.session_scope() as session:
        run = await store.get_or_raise(session, run_id)
        if run.status == RunStatus.starting:
            await store.transition(session, run, RunStatus.running, started_at=clock.now())


async def save_attempt(db: Database, task: RunTask, out: Outcome, retry: bool) -> None:
    """Store an attempt's end (exit code, error, log tail); `retry` puts the task back in line."""
    async with db.session_scope() as session:
        row = await session.get(RunTask, task.id)
        assert row is not None
        row.status = TaskStatus.pending.value if retry else out.status.value
        row.exit_code, row.error, row.finished_at = out.exit_code, out.error, clock.now()
        row.logs, row.logs_truncated = out.logs, out.truncated
        session.add(row)


async def _skip_rest(session: AsyncSession, run_id: int) -> None:
    stmt = (
        update(RunTask)
        .where(col(RunTask.run_id) == run_id, col(RunTask.status).in_(["pending", "running"]))
        .values(status=TaskStatus.skipped.value)
    )
    await session.exec(stmt)


async def finish(db: Database, run_id: int, status: RunStatus, error: str | None = None) -> None:
    """Move the run to a final state (tasks not yet run are skipped); frees its slot."""
    async with db.session_scope() as session:
        run = await store.get_or_raise(session, run_id)
        if RunStatus(run.status) in FINAL:
            return
        await _skip_rest(session, run_id)
        await store.transition(session, run, status, error=error, finished_at=clock.now())
    log.info("run %s %s%s", run_id, status.value, f": {error}" if error else "")


async def host_lost(db: Database, run_id: int, task: RunTask, error: str | None) -> None:
    """The host is gone: send the run back to pending (retries left), else fail it."""
    retry = retries_left(task)
    async with db.session_scope() as session:
        row = await session.get(RunTask, task.id)
        run = await store.get_or_raise(session, run_id)
        assert row is not None
        if RunStatus(run.status) in FINAL:
            return
        row.status = TaskStatus.pending.value if retry else TaskStatus.failed.value
        row.error, row.finished_at = error, clock.now()
        session.add(row)
        if retry:
            released: dict[str, object] = {
                "worker_host_id": None,  # the slot and GPU ids go back to the pool
                "worker_host_name": None,
                "gpu_device_ids": [],
                "supervisor": None,  # any orchestrator may pick it up again
                "lease_expires_at": None,
            }
            await store.transition(session, run, RunStatus.pending, **released)
        else:
            await _skip_rest(session, run_id)
            await store.transition(
                session, run, RunStatus.failed, error="host unreachable", finished_at=clock.now()
            )
    log.warning("run %s lost its host (%s)", run_id, "re-queued" if retry else "failed")
