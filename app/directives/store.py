"""Queries and writes for directives; callers own the transaction (we only flush)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import column, func, table
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app import clock
from app.directives.models import Directive, DirectiveRead
from app.errors import Conflict, InvalidField, not_found

# Task names, read by table so that the directives room does not import the tasks room.
TASKS = table("task_definitions", column("name"))


async def get(session: AsyncSession, directive_id: int) -> Directive | None:
    """One directive by id."""
    return await session.get(Directive, directive_id)


async def get_or_raise(session: AsyncSession, directive_id: int) -> Directive:
    """One directive by id, or 404."""
    directive = await get(session, directive_id)
    if directive is None:
        raise not_found("directive", directive_id)
    return directive


async def get_by_name(session: AsyncSession, name: str) -> Directive | None:
    """One directive by its unique name."""
    result = await session.exec(select(Directive).where(col(Directive.name) == name))
    return result.first()


async def list_directives(
    session: AsyncSession, *, limit: int = 100, offset: int = 0
) -> tuple[int, list[Directive]]:
    """A page of directives ordered by id, and the total count."""
    total = (await session.exec(select(func.count()).select_from(Directive))).one()
    query = select(Directive).order_by(col(Directive.id)).limit(limit).offset(offset)
    return total, list((await session.exec(query)).all())


async def check_tasks(session: AsyncSession, names: list[str]) -> None:
    """422 on `tasks` naming every name that is not a task definition."""
    if not names:
        return
    rows = await session.exec(select(TASKS.c.name).where(TASKS.c.name.in_(set(names))))
    known = set(rows.all())
    unknown = [n for n in dict.fromkeys(names) if n not in known]
    if unknown:
        raise InvalidField("tasks", f"unknown tasks: {', '.join(unknown)}")


def _taken(name: str) -> Conflict:
    return Conflict(f"a directive named {name!r} already exists")


async def create(session: AsyncSession, directive: Directive) -> Directive:
    """Insert a directive; 409 when the name is taken."""
    if await get_by_name(session, directive.name) is not None:
        raise _taken(directive.name)
    session.add(directive)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise _taken(directive.name) from exc
    return directive


async def update(session: AsyncSession, directive: Directive, changes: dict[str, Any]) -> Directive:
    """Apply changes to a directive; 409 when a new name is taken."""
    new_name = changes.get("name")
    if new_name and new_name != directive.name and await get_by_name(session, new_name):
        raise _taken(new_name)
    for key, value in changes.items():
        setattr(directive, key, value)
    directive.updated_at = clock.now()
    session.add(directive)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise _taken(directive.name) from exc
    return directive


async def delete(session: AsyncSession, directive: Directive) -> None:
    """Delete a directive; its runs keep their snapshot (the FK sets directive_id to NULL)."""
    await session.delete(directive)
    await session.flush()


def to_read(directive: Directive) -> DirectiveRead:
    """The API view of a directive."""
    return DirectiveRead.model_validate(directive.model_dump())
