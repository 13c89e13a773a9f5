"""Queries and writes for task definitions; callers own the transaction (we only flush)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app import clock
from app.errors import Conflict, not_found
from app.tasks.models import TaskDefinition, TaskRead


async def get(session: AsyncSession, task_id: int) -> TaskDefinition | None:
    """One task definition by id."""
    return await session.get(TaskDefinition, task_id)


async def get_by_name(session: AsyncSession, name: str) -> TaskDefinition | None:
    """One task definition by its unique name."""
    result = await session.exec(select(TaskDefinition).where(col(TaskDefinition.name) == name))
    return result.first()


def parse_key(key: str) -> int | str:
    """A path key: an int id when it is all (ASCII) digits, else a name."""
    return int(key) if key.isascii() and key.isdigit() else key


async def get_or_raise(session: AsyncSession, key: int | str) -> TaskDefinition:
    """One task definition by id or name, or 404."""
    task = await (get(session, key) if isinstance(key, int) else get_by_name(session, key))
    if task is None:
        raise not_found("task", key)
    return task


async def list_tasks(
    session: AsyncSession, *, enabled: bool | None = None, limit: int = 100, offset: int = 0
) -> tuple[int, list[TaskDefinition]]:
    """A page of task definitions ordered by id, and the total count."""
    query = select(TaskDefinition)
    if enabled is not None:
        query = query.where(col(TaskDefinition.enabled) == enabled)
    total = (await session.exec(select(func.count()).select_from(query.subquery()))).one()
    page = await session.exec(query.order_by(col(TaskDefinition.id)).limit(limit).offset(offset))
    return total, list(page.all())


def _taken(name: str) -> Conflict:
    return Conflict(f"a task named {name!r} already exists")


async def create(session: AsyncSession, task: TaskDefinition) -> TaskDefinition:
    """Insert a task definition; 409 when the name is taken."""
    if await get_by_name(session, task.name) is not None:
        raise _taken(task.name)
    session.add(task)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise _taken(task.name) from exc
    return task


async def update(
    session: AsyncSession, task: TaskDefinition, changes: dict[str, Any]
) -> TaskDefinition:
    """Apply changes to a task definition; 409 when a new name is taken."""
    new_name = changes.get("name")
    if new_name and new_name != task.name and await get_by_name(session, new_name):
        raise _taken(new_name)
    for key, value in changes.items():
        setattr(task, key, value)
    task.updated_at = clock.now()
    session.add(task)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise _taken(task.name) from exc
    return task


async def delete(session: AsyncSession, task: TaskDefinition) -> None:
    """Delete a task definition (runs keep their own snapshot of it)."""
    await session.delete(task)
    await session.flush()


def to_read(task: TaskDefinition) -> TaskRead:
    """The API view of a task definition."""
    return TaskRead.model_validate(task.model_dump())
