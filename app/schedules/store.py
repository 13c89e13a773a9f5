"""Queries and writes for schedules and their fires; callers own the transaction (we flush).

The one write that makes fires exactly-once is `claim`: the schedule's next fire time moves
forward only if it still is the due time this process read (a guarded UPDATE), in the same
transaction that creates the fire's run. Of two replicas (or two passes) that read the same
due time, one UPDATE matches a row and the other matches none and rolls back."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import column, func, table, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app import clock
from app.directives.store import check_tasks
from app.errors import InvalidField
from app.named import NamedStore
from app.runs.models import FINAL, Run
from app.schedules import cron as cronlib
from app.schedules.models import Schedule, ScheduleFire
from app.schedules.schemas import FireOutcome, FireRead, RunStatus, ScheduleRead

# Read by table so that this room does not import the directives' and hosts' models.
DIRECTIVES = table("directives", column("id"))
HOSTS = table("worker_hosts", column("id"))

_rows = NamedStore(Schedule, "schedule")
get = _rows.get
get_or_raise = _rows.get_or_raise
create = _rows.create
update_row = _rows.update
delete = _rows.delete
UNFINISHED = [s.value for s in RunStatus if s not in FINAL]


def cron_of(schedule: Schedule) -> tuple[cronlib.Cron, Any]:
    """The parsed expression and zone of a stored schedule."""
    return cronlib.parse(schedule.cron), cronlib.zone(schedule.timezone)


def next_fire(schedule: Schedule, after: datetime) -> datetime | None:
    """The first fire time after `after`, or None while disabled."""
    if not schedule.enabled:
        return None
    expr, tz = cron_of(schedule)
    return expr.next_after(after, tz)


async def check(session: AsyncSession, values: dict[str, Any]) -> None:
    """422 naming the field: cron, timezone, directive_id, target_host_id, tasks."""
    if "cron" in values:
        try:
            cronlib.parse(values["cron"])
        except cronlib.CronError as exc:
            raise InvalidField("cron", str(exc)) from None
    if "timezone" in values:
        try:
            cronlib.zone(values["timezone"])
        except cronlib.CronError as exc:
            raise InvalidField("timezone", str(exc)) from None
    for field, tbl, kind in (
        ("directive_id", DIRECTIVES, "directive"),
        ("target_host_id", HOSTS, "worker host"),
    ):
        key = values.get(field)
        if key is not None:
            found = (await session.exec(select(tbl.c.id).where(tbl.c.id == key))).first()
            if found is None:
                raise InvalidField(field, f"{kind} {key} not found")
    if values.get("tasks"):
        await check_tasks(session, values["tasks"])


async def list_schedules(
    session: AsyncSession, *, enabled: bool | None = None, limit: int = 100, offset: int = 0
) -> tuple[int, list[Schedule]]:
    """A page of schedules ordered by id, and the total count."""
    query = select(Schedule)
    if enabled is not None:
        query = query.where(col(Schedule.enabled) == enabled)
    return await _rows.page(session, query, limit, offset)


async def claim(
    session: AsyncSession, schedule_id: int, due: datetime, following: datetime | None
) -> bool:
    """Move the schedule's next fire from `due` to `following` if nobody did yet."""
    result = await session.exec(
        update(Schedule)
        .where(col(Schedule.id) == schedule_id)
        .where(col(Schedule.next_fire_at) == due)
        .where(col(Schedule.enabled))
        .values(next_fire_at=following, last_fire_at=clock.now())
    )
    return bool(result.rowcount == 1)


async def unfinished_run(session: AsyncSession, schedule_id: int) -> int | None:
    """The id of a run of this schedule that has not finished, if there is one."""
    query = (
        select(Run.id)
        .where(col(Run.schedule_id) == schedule_id)
        .where(col(Run.status).in_(UNFINISHED))
        .limit(1)
    )
    return (await session.exec(query)).first()


async def queued_fire(session: AsyncSession, schedule_id: int) -> int | None:
    """The id of this schedule's queued fire, if one waits."""
    query = (
        select(ScheduleFire.id)
        .where(col(ScheduleFire.schedule_id) == schedule_id)
        .where(col(ScheduleFire.outcome) == FireOutcome.queued.value)
        .limit(1)
    )
    return (await session.exec(query)).first()


async def fires(
    session: AsyncSession, schedule_id: int, limit: int = 20, offset: int = 0
) -> tuple[int, list[FireRead]]:
    """A page of a schedule's fires, newest first, with the status of their runs."""
    where = col(ScheduleFire.schedule_id) == schedule_id
    total = (await session.exec(select(func.count()).select_from(ScheduleFire).where(where))).one()
    query = (
        select(ScheduleFire, Run.status)
        .join(Run, col(Run.id) == col(ScheduleFire.run_id), isouter=True)
        .where(where)
        .order_by(col(ScheduleFire.id).desc())
        .limit(limit)
        .offset(offset)
    )
    out = []
    for fire, status in (await session.exec(query)).all():
        out.append(FireRead(**fire.model_dump(), run_status=status))
    return total, out


def to_read(schedule: Schedule, fire_list: list[FireRead] | None = None) -> ScheduleRead:
    """The API view of a schedule."""
    return ScheduleRead(**schedule.model_dump(), fires=fire_list)
