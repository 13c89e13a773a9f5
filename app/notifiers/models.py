"""Notifier, Delivery (the outbox), the feed's cursor and the on-change states: the tables."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, ForeignKey, Integer, Text, UniqueConstraint
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from app import clock
from app.db import UTCDateTime
from app.notifiers.schemas import DeliveryStatus


class Notifier(SQLModel, table=True):
    """A target URL of a kind, and the filters of what it is told. `url` and `secret` are
    never returned nor logged."""

    __tablename__ = "notifiers"

    id: int | None = SQLField(default=None, primary_key=True)
    name: str = SQLField(index=True, unique=True, max_length=200)
    kind: str = SQLField(max_length=20)
    url: str = SQLField(sa_column=Column(Text, nullable=False))
    secret: str | None = SQLField(default=None, sa_column=Column(Text, nullable=True))
    enabled: bool = True
    event_types: list[str] = SQLField(default_factory=list, sa_column=Column(JSON))
    directive_ids: list[int] = SQLField(default_factory=list, sa_column=Column(JSON))
    schedule_ids: list[int] = SQLField(default_factory=list, sa_column=Column(JSON))
    host_ids: list[int] = SQLField(default_factory=list, sa_column=Column(JSON))
    on_change_only: bool = False
    created_at: datetime = SQLField(default_factory=clock.now, sa_type=UTCDateTime)
    updated_at: datetime = SQLField(default_factory=clock.now, sa_type=UTCDateTime)


class Delivery(SQLModel, table=True):
    """One notification to send: the outbox row and its delivery log at once.

    Claimed with a guarded UPDATE (status and attempts as read) that sets a lease; an attempt's
    result is written only by the lease's holder. A process killed mid-attempt leaves its lease
    to lapse, and the row is tried again (at least once)."""

    __tablename__ = "notifier_deliveries"
    __table_args__ = (UniqueConstraint("notifier_id", "event_id"),)

    id: int | None = SQLField(default=None, primary_key=True)
    notifier_id: int = SQLField(
        sa_column=Column(
            Integer, ForeignKey("notifiers.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    event_id: int | None = SQLField(default=None, description="None for a test notification.")
    event_type: str = SQLField(max_length=64)
    message: dict[str, Any] = SQLField(default_factory=dict, sa_column=Column(JSON))
    status: str = SQLField(default=DeliveryStatus.pending.value, max_length=12, index=True)
    attempts: int = 0
    next_attempt_at: datetime | None = SQLField(default_factory=clock.now, sa_type=UTCDateTime)
    lease_owner: str | None = SQLField(default=None, max_length=200)
    lease_expires_at: datetime | None = SQLField(default=None, sa_type=UTCDateTime)
    last_status_code: int | None = None
    last_error: str | None = SQLField(default=None, sa_column=Column(Text))
    log: list[dict[str, Any]] = SQLField(default_factory=list, sa_column=Column(JSON))
    created_at: datetime = SQLField(default_factory=clock.now, sa_type=UTCDateTime, index=True)
    delivered_at: datetime | None = SQLField(default=None, sa_type=UTCDateTime)


class NotifierFeed(SQLModel, table=True):
    """How far the events were turned into deliveries (one row). Advanced with a guarded
    UPDATE in the transaction that enqueues, so two replicas never enqueue an event twice."""

    __tablename__ = "notifier_feed"

    name: str = SQLField(primary_key=True, max_length=20)
    last_event_id: int = 0
    updated_at: datetime = SQLField(default_factory=clock.now, sa_type=UTCDateTime)


class NotifierState(SQLModel, table=True):
    """The last outcome a notifier saw per subject (a schedule, a directive, a host), for
    `on_change_only`."""

    __tablename__ = "notifier_states"

    notifier_id: int = SQLField(
        sa_column=Column(Integer, ForeignKey("notifiers.id", ondelete="CASCADE"), primary_key=True)
    )
    subject: str = SQLField(primary_key=True, max_length=100)
    state: str = SQLField(max_length=20)
    event_id: int | None = None
