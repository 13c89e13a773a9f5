"""Store operations shared by the rooms whose rows have a unique name: hosts, directives, tasks.

Each room binds one `NamedStore` to its table and exposes its methods as the room's store
functions. Like every store, these only flush: the caller owns the transaction.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from app import clock
from app.errors import Conflict, not_found
from app.limits import DB_INT_MAX

Row = TypeVar("Row", bound=SQLModel)


def parse_key(key: str) -> int | str:
    """A path key: an int id when it is all (ASCII) digits, else a name.

    Digits beyond the database's integer range stay a string: no row has that id (and no name
    is all digits), so the lookup is a plain 404 instead of an overflow."""
    if key.isascii() and key.isdigit() and len(key) <= 10 and int(key) <= DB_INT_MAX:
        return int(key)
    return key


class NamedStore(Generic[Row]):
    """get / get_by_name / get_or_raise / page / create / update / delete for one table."""

    def __init__(self, model: type[Row], kind: str) -> None:
        self.model = model
        self.kind = kind

    def _taken(self, name: str) -> Conflict:
        return Conflict(f"a {self.kind} named {name!r} already exists")

    async def get(self, session: AsyncSession, row_id: int) -> Row | None:
        """One row by id."""
        return await session.get(self.model, row_id)

    async def get_by_name(self, session: AsyncSession, name: str) -> Row | None:
        """One row by its unique name."""
        name_col = col(self.model.name)  # type: ignore[attr-defined]
        return (await session.exec(select(self.model).where(name_col == name))).first()

    async def get_or_raise(self, session: AsyncSession, key: int | str) -> Row:
        """One row by id (int) or name (str), or 404."""
        if isinstance(key, int):
            row = await self.get(session, key)
        else:
            row = await self.get_by_name(session, key)
        if row is None:
            raise not_found(self.kind, key)
        return row

    async def page(
        self, session: AsyncSession, query: SelectOfScalar[Row], limit: int, offset: int
    ) -> tuple[int, list[Row]]:
        """A page of `query` ordered by id, and the total count."""
        total = (await session.exec(select(func.count()).select_from(query.subquery()))).one()
        id_col = col(self.model.id)  # type: ignore[attr-defined]
        rows = await session.exec(query.order_by(id_col).limit(limit).offset(offset))
        return total, list(rows.all())

    async def create(self, session: AsyncSession, row: Row) -> Row:
        """Insert a row; 409 when the name is taken."""
        name: str = row.name  # type: ignore[attr-defined]
        if await self.get_by_name(session, name) is not None:
            raise self._taken(name)
        session.add(row)
        try:
            await session.flush()
        except IntegrityError as exc:
            raise self._taken(name) from exc
        return row

    async def update(self, session: AsyncSession, row: Row, changes: dict[str, Any]) -> Row:
        """Apply changes to a row; 409 when a new name is taken."""
        current: str = row.name  # type: ignore[attr-defined]
        new_name = changes.get("name")
        if new_name and new_name != current and await self.get_by_name(session, new_name):
            raise self._taken(new_name)
        for key, value in changes.items():
            setattr(row, key, value)
        row.updated_at = clock.now()
        session.add(row)
        try:
            await session.flush()
        except IntegrityError as exc:
            raise self._taken(new_name or current) from exc
        return row

    async def delete(self, session: AsyncSession, row: Row) -> None:
        """Delete a row."""
        await session.delete(row)
        await session.flush()
