"""Event: the table of state changes (the stream's record; its API schemas live in schemas.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Integer
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from app import clock
from app.db import UTCDateTime


class Event(SQLModel, table=True):
    """One state change of a run or a host; `id` is the stream's id (monotonic)."""

    __tablename__ = "events"
    __table_args__ = {"sqlite_autoincrement": True}  # ids are never reused

    id: int | None = SQLField(
        default=None, sa_column=Column(Integer, primary_key=True, autoincrement=True)
    )
    created_at: datetime = SQLField(default_factory=clock.now, sa_type=UTCDateTime, index=True)
    type: str = SQLField(max_length=64, index=True)
    run_id: int | None = SQLField(default=None, index=True)
    host_id: int | None = SQLField(default=None, index=True)
    data: dict[str, Any] = SQLField(default_factory=dict, sa_column=Column(JSON, nullable=False))
