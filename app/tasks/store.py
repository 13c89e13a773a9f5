"""Queries and writes for task definitions; callers own the transaction (we only flush)."""

from __future__ import annotations

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.named import NamedStore
from app.tasks.models import TaskDefinition, TaskRead

_rows = NamedStore(TaskDefinition, "task")
get = _rows.get
get_by_name = _rows.get_by_name
get_or_raise = _rows.get_or_raise  # by id or name
create = _rows.create
update = _rows.update
delete = _rows.delete  # runs keep their own snapshot of it


async def list_tasks(
    session: AsyncSession, *, enabled: bool | None = None, limit: int = 100, offset: int = 0
) -> tuple[int, list[TaskDefinition]]:
    """A page of task definitions ordered by id, and the total count."""
    query = select(TaskDefinition)
    if enabled is not None:
        query = query.where(col(TaskDefinition.enabled) == enabled)
    return await _rows.page(session, query, limit, offset)


def to_read(task: TaskDefinition) -> TaskRead:
    """The API view of a task definition."""
    return TaskRead.model_validate(task.model_dump())
