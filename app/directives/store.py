"""Queries and writes for directives; callers own the transaction (we only flush)."""

from __future__ import annotations

from sqlalchemy import column, table
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.directives.models import Directive, DirectiveRead
from app.errors import InvalidField
from app.named import NamedStore

# Task names, read by table so that the directives room does not import the tasks room.
TASKS = table("task_definitions", column("name"))


_rows = NamedStore(Directive, "directive")
get = _rows.get
get_by_name = _rows.get_by_name
get_or_raise = _rows.get_or_raise
create = _rows.create
update = _rows.update
delete = _rows.delete  # its runs keep their snapshot (the FK sets directive_id to NULL)


async def list_directives(
    session: AsyncSession, *, name: str | None = None, limit: int = 100, offset: int = 0
) -> tuple[int, list[Directive]]:
    """A page of directives ordered by id (optionally the one named), and the total count."""
    query = select(Directive)
    if name is not None:
        query = query.where(col(Directive.name) == name)
    return await _rows.page(session, query, limit, offset)


async def check_tasks(session: AsyncSession, names: list[str]) -> None:
    """422 on `tasks` naming every name that is not a task definition."""
    if not names:
        return
    rows = await session.exec(select(TASKS.c.name).where(TASKS.c.name.in_(set(names))))
    known = set(rows.all())
    unknown = [n for n in dict.fromkeys(names) if n not in known]
    if unknown:
        raise InvalidField("tasks", f"unknown tasks: {', '.join(unknown)}")


def to_read(directive: Directive) -> DirectiveRead:
    """The API view of a directive."""
    return DirectiveRead.model_validate(directive.model_dump())
