"""Facts about this database itself: its instance id, written on every container we start."""

from __future__ import annotations

import uuid

from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel

from app import clock
from app.db import Database


class Meta(SQLModel, table=True):
    """Key/value facts about the installation."""

    __tablename__ = "meta"

    key: str = Field(primary_key=True, max_length=64)
    value: str = Field(max_length=500)


async def instance_id(db: Database) -> str:
    """This database's orchestrator id (made once, then stable across restarts)."""
    async with db.sessions() as session:
        row = await session.get(Meta, "instance_id")
        if row is not None:
            return row.value
        session.add(Meta(key="instance_id", value=uuid.uuid4().hex[:12]))
        try:
            await session.commit()
        except IntegrityError:  # another process made it first
            await session.rollback()
        row = await session.get(Meta, "instance_id")
        assert row is not None
        return row.value


async def touch(db: Database) -> None:
    """Write a row (the health check's proof that the database takes writes)."""
    async with db.session_scope() as session:
        row = await session.get(Meta, "healthz")
        stamp = clock.now().isoformat()
        if row is None:
            session.add(Meta(key="healthz", value=stamp))
        else:
            row.value = stamp
            session.add(row)
