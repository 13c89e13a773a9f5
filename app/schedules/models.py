"""Schedule and ScheduleFire: the tables (the API schemas live in schemas.py)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column, ForeignKey, Integer, Text, UniqueConstraint
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from app import clock
from app.db import UTCDateTime
from app.schedules.schemas import CatchUp, FireOutcome, Overlap


class Schedule(SQLModel, table=True):
    """A cron expression in a time zone that launches runs of a directive.

    `directive_id` and `target_host_id` are plain ids, not foreign keys: a schedule whose
    directive or host was deleted keeps firing, and each fire records the launch's 404."""

    __tablename__ = "schedules"

    id: int | None = SQLField(default=None, primary_key=True)
    name: str = SQLField(index=True, unique=True, max_length=200)
    description: str = SQLField(default="", max_length=2000)
    directive_id: int
    tasks: list[str] | None = SQLField(default=None, sa_column=Column(JSON, nullable=True))
    target_host_id: int | None = None
    cron: str = SQLField(max_length=200)
    timezone: str = SQLField(default="UTC", max_length=64)
    enabled: bool = True
    overlap: str = SQLField(default=Overlap.skip.value, max_length=10)
    catch_up: str = SQLField(default=CatchUp.none.value, max_length=10)
    # The claim: a fire moves this forward with a guarded UPDATE (WHERE next_fire_at = due)
    # in the transaction that creates its run. NULL while disabled.
    next_fire_at: datetime | None = SQLField(default=None, sa_type=UTCDateTime, index=True)
    last_fire_at: datetime | None = SQLField(default=None, sa_type=UTCDateTime)
    created_at: datetime = SQLField(default_factory=clock.now, sa_type=UTCDateTime)
    updated_at: datetime = SQLField(default_factory=clock.now, sa_type=UTCDateTime)


class ScheduleFire(SQLModel, table=True):
    """One fire: due time, trigger, outcome, the run it made (or why it made none)."""

    __tablename__ = "schedule_fires"
    # A second guard behind the claim: one cron fire per due time and schedule.
    __table_args__ = (UniqueConstraint("schedule_id", "trigger", "due_at"),)

    id: int | None = SQLField(default=None, primary_key=True)
    schedule_id: int = SQLField(
        sa_column=Column(
            Integer, ForeignKey("schedules.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    trigger: str = SQLField(max_length=10)
    due_at: datetime = SQLField(sa_type=UTCDateTime)
    fired_at: datetime = SQLField(default_factory=clock.now, sa_type=UTCDateTime)
    outcome: str = SQLField(default=FireOutcome.launched.value, max_length=10, index=True)
    run_id: int | None = SQLField(
        default=None,
        sa_column=Column(Integer, ForeignKey("runs.id", ondelete="SET NULL"), nullable=True),
    )
    status_code: int | None = None
    detail: str | None = SQLField(default=None, sa_column=Column(Text))
