"""Queries and writes for runs and their tasks; every run status write goes via transition()."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, update
from sqlalchemy.orm import defer
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app import clock
from app.errors import IllegalTransition, not_found
from app.events import store as events
from app.runs.models import (
    RUN_MOVES,
    Run,
    RunRead,
    RunStatus,
    RunTask,
    RunTaskRead,
    TaskStatus,
)


async def get_or_raise(session: AsyncSession, run_id: int) -> Run:
    """One run by id, or 404."""
    run = await session.get(Run, run_id)
    if run is None:
        raise not_found("run", run_id)
    return run


async def tasks_of(
    session: AsyncSession, run_ids: list[int], *, with_logs: bool = False
) -> dict[int, list[RunTask]]:
    """The tasks of each run, in order; their stored logs only when asked (`logs` is "" else)."""
    out: dict[int, list[RunTask]] = defaultdict(list)
    if not run_ids:
        return out
    query = (
        select(RunTask)
        .where(col(RunTask.run_id).in_(run_ids))
        .order_by(col(RunTask.run_id), col(RunTask.position))
    )
    if not with_logs:
        query = query.options(defer(RunTask.logs, raiseload=True))  # type: ignore[arg-type]
    for task in (await session.exec(query)).all():
        out[task.run_id].append(task)
    return out


async def list_runs(
    session: AsyncSession,
    *,
    statuses: list[RunStatus] | None = None,
    worker_host_id: int | None = None,
    directive_id: int | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[int, list[Run]]:
    """A page of runs, newest first, and the total count."""
    where: list[ColumnElement[bool]] = []
    if statuses:
        where.append(col(Run.status).in_([s.value for s in statuses]))
    if worker_host_id is not None:
        where.append(col(Run.worker_host_id) == worker_host_id)
    if directive_id is not None:
        where.append(col(Run.directive_id) == directive_id)
    query = select(Run).where(*where)
    total = (await session.exec(select(func.count(col(Run.id))).where(*where))).one()
    page = (
        query.order_by(col(Run.created_at).desc(), col(Run.id).desc()).limit(limit).offset(offset)
    )
    return total, list((await session.exec(page)).all())


async def runs_in(session: AsyncSession, statuses: set[RunStatus]) -> list[Run]:
    """Every run in one of these states, oldest first."""
    query = (
        select(Run)
        .where(col(Run.status).in_([s.value for s in statuses]))
        .order_by(col(Run.created_at), col(Run.id))
    )
    return list((await session.exec(query)).all())


def legal_from(to: RunStatus) -> list[str]:
    """The states a run may move to `to` from (the table of legal moves, read backwards)."""
    return [s.value for s, moves in RUN_MOVES.items() if to in moves]


async def transition(session: AsyncSession, run: Run, to: RunStatus, **values: Any) -> bool:
    """Move a run to `to` if the table allows it and nobody moved it first (guarded UPDATE).

    Returns False when the run had already left its state; raises on an illegal move.
    """
    current = RunStatus(run.status)
    if to not in RUN_MOVES[current]:
        raise IllegalTransition(f"run {run.id} is {current.value}; it cannot become {to.value}")
    host_id, host_name = run.worker_host_id, run.worker_host_name
    stmt = (
        update(Run)
        .where(col(Run.id) == run.id, col(Run.status) == current.value)
        .values(status=to.value, updated_at=clock.now(), **values)
    )
    result = await session.exec(stmt)
    await session.refresh(run)
    moved = bool(result.rowcount == 1)
    if moved:
        await events.record_all(session, [run_event(run, host_id, host_name)])
    return moved


def run_event(run: Run, host_id: int | None = None, host_name: str | None = None) -> dict[str, Any]:
    """The event of a run's move to its current status (`run.<status>`), for record_all."""
    return events.event_row(
        f"run.{run.status}",
        run_id=run.id,
        host_id=run.worker_host_id or host_id,
        status=run.status,
        directive=(run.directive_snapshot or {}).get("name"),
        host=run.worker_host_name or host_name,
        error=run.error,
    )


def task_read(task: RunTask) -> RunTaskRead:
    """The API view of one task of a run."""
    return RunTaskRead(
        **task.model_dump(exclude={"logs", "logs_truncated", "task_snapshot", "run_id"}),
        image=(task.task_snapshot or {}).get("image"),
    )


def to_read(run: Run, tasks: list[RunTask], waiting_for: str | None = None) -> RunRead:
    """The API view of a run and its tasks."""
    assert run.id is not None
    return RunRead(
        **run.model_dump(exclude={"directive_snapshot", "updated_at"}),
        directive_name=(run.directive_snapshot or {}).get("name"),
        waiting_for=waiting_for,
        tasks=[task_read(t) for t in tasks],
    )


async def read(session: AsyncSession, run: Run, waiting_for: str | None = None) -> RunRead:
    """Load a run's tasks and build its API view."""
    assert run.id is not None
    return to_read(run, (await tasks_of(session, [run.id]))[run.id], waiting_for)


async def place_group(
    session: AsyncSession,
    group: Sequence[Any],
    supervisor: str,
    now: datetime,
    lease: float,
) -> set[int]:
    """pending → starting for placements on one host (one UPDATE for those without GPUs, one
    per GPU run); returns the run ids that moved (a run placed or cancelled meanwhile stays)."""
    plain = [p.run_id for p in group if not p.gpu_ids]
    moved: set[int] = set()
    if plain:
        first = group[0]
        stmt = (
            update(Run)
            .where(
                col(Run.id).in_(plain),
                col(Run.status) == RunStatus.pending.value,
                ~col(Run.cancel_requested),
            )
            .values(
                status=RunStatus.starting.value,
                worker_host_id=first.host_id,
                worker_host_name=first.host_name,
                gpu_device_ids=[],
                placed_at=now,
                placements=col(Run.placements) + 1,
                supervisor=supervisor,
                lease_expires_at=now + timedelta(seconds=lease),
                updated_at=now,
            )
            .returning(col(Run.id))
        )
        moved.update(int(i) for (i,) in (await session.exec(stmt)).all())
    for p in group:
        if p.gpu_ids and await place_pending(session, p, supervisor, now, lease):
            moved.add(p.run_id)
    await events.record_all(session, [_placed(p) for p in group if p.run_id in moved])
    return moved


def _placed(p: Any) -> dict[str, Any]:
    gpus = list(p.gpu_ids) or None
    return events.event_row(
        "run.starting",
        run_id=p.run_id,
        host_id=p.host_id,
        status="starting",
        host=p.host_name,
        gpus=gpus,
    )


async def place_pending(
    session: AsyncSession,
    placement: Any,
    supervisor: str,
    now: datetime,
    lease: float,
) -> bool:
    """pending → starting on the placement's host, if the run is still pending and no cancel
    was asked for (a run that moved meanwhile is skipped, never blocks others)."""
    stmt = (
        update(Run)
        .where(
            col(Run.id) == placement.run_id,
            col(Run.status) == RunStatus.pending.value,
            ~col(Run.cancel_requested),
        )
        .values(
            status=RunStatus.starting.value,
            worker_host_id=placement.host_id,
            worker_host_name=placement.host_name,
            gpu_device_ids=list(placement.gpu_ids),
            placed_at=now,
            placements=col(Run.placements) + 1,
            supervisor=supervisor,
            lease_expires_at=now + timedelta(seconds=lease),
            updated_at=now,
        )
    )
    return bool((await session.exec(stmt)).rowcount == 1)


async def cancel_unfinished_tasks(session: AsyncSession, run_ids: Sequence[int]) -> None:
    """Tasks of these runs that have not run (or were interrupted) become cancelled; finished
    ones stay as they ended."""
    await session.exec(
        update(RunTask)
        .where(col(RunTask.run_id).in_(list(run_ids)))
        .where(col(RunTask.status).in_([TaskStatus.pending.value, TaskStatus.running.value]))
        .values(status=TaskStatus.cancelled.value)
    )


async def cancel_pending(session: AsyncSession, run_ids: Sequence[int]) -> list[int]:
    """pending → cancelled for these runs (those still pending); their unfinished tasks too."""
    if not run_ids:
        return []
    now = clock.now()
    stmt = (
        update(Run)
        .where(col(Run.id).in_(list(run_ids)), col(Run.status) == RunStatus.pending.value)
        .values(
            status=RunStatus.cancelled.value,
            error="cancelled",
            finished_at=now,
            updated_at=now,
            cancel_requested=True,
        )
        .returning(col(Run.id))
    )
    done = [int(i) for (i,) in (await session.exec(stmt)).all()]
    if done:
        await cancel_unfinished_tasks(session, done)
        rows = [events.event_row("run.cancelled", run_id=i, status="cancelled") for i in done]
        await events.record_all(session, rows)
    return done
