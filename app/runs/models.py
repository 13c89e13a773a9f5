"""Run and RunTask: the tables (states, legal moves and API schemas live in schemas.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, ForeignKey, Index, Integer, Text, UniqueConstraint
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from app import clock
from app.db import UTCDateTime
from app.runs.schemas import (
    ACTIVE,
    FINAL,
    RUN_MOVES,
    HostRejection,
    LaunchRequest,
    NoHostsBody,
    RunLogs,
    RunPage,
    RunRead,
    RunStatus,
    RunTaskRead,
    TaskLogs,
    TaskStatus,
)

# The schemas are re-exported so `from app.runs.models import RunStatus` keeps working;
# the client and the CLI import schemas.py, which loads no database layer.
__all__ = [
    "ACTIVE",
    "FINAL",
    "RUN_MOVES",
    "HostRejection",
    "LaunchRequest",
    "NoHostsBody",
    "Run",
    "RunLogs",
    "RunPage",
    "RunRead",
    "RunStatus",
    "RunTask",
    "RunTaskRead",
    "TaskLogs",
    "TaskStatus",
]


class Run(SQLModel, table=True):
    """An ordered list of tasks run on one host, one container at a time."""

    __tablename__ = "runs"
    # The hot list: "runs in these states, newest first" reads the index in order, no sort.
    __table_args__ = (Index("ix_runs_status_created_at", "status", "created_at"),)

    id: int | None = SQLField(default=None, primary_key=True)
    directive_id: int | None = SQLField(
        default=None,
        sa_column=Column(Integer, ForeignKey("directives.id", ondelete="SET NULL"), index=True),
    )
    directive_snapshot: dict[str, Any] = SQLField(default_factory=dict, sa_column=Column(JSON))
    status: str = SQLField(default=RunStatus.pending.value, index=True, max_length=20)
    worker_host_id: int | None = SQLField(
        default=None,
        sa_column=Column(Integer, ForeignKey("worker_hosts.id", ondelete="SET NULL"), index=True),
    )
    worker_host_name: str | None = SQLField(default=None, max_length=200)
    target_host_id: int | None = SQLField(
        default=None,
        sa_column=Column(Integer, ForeignKey("worker_hosts.id", ondelete="SET NULL")),
    )
    schedule_id: int | None = SQLField(
        default=None,
        sa_column=Column(Integer, ForeignKey("schedules.id", ondelete="SET NULL"), index=True),
        description="The schedule that fired the run (null: launched by hand).",
    )
    gpu_need: int = 0
    gpu_memory_mb: int = SQLField(default=0, description="Least total memory of each GPU (MiB).")
    gpu_name: str | None = SQLField(
        default=None, max_length=100, description="Substring each GPU's name must contain."
    )
    gpu_device_ids: list[str] = SQLField(default_factory=list, sa_column=Column(JSON))
    placements: int = SQLField(default=0, description="How many times the run was placed.")
    cancel_requested: bool = False
    supervisor: str | None = SQLField(
        default=None, max_length=200, description="The orchestrator process driving the run."
    )
    lease_expires_at: datetime | None = SQLField(
        default=None, sa_type=UTCDateTime, description="Others may take the run over after this."
    )
    error: str | None = SQLField(default=None, sa_column=Column(Text))
    created_at: datetime = SQLField(default_factory=clock.now, sa_type=UTCDateTime, index=True)
    placed_at: datetime | None = SQLField(default=None, sa_type=UTCDateTime)
    started_at: datetime | None = SQLField(default=None, sa_type=UTCDateTime)
    finished_at: datetime | None = SQLField(default=None, sa_type=UTCDateTime)
    updated_at: datetime = SQLField(default_factory=clock.now, sa_type=UTCDateTime)


class RunTask(SQLModel, table=True):
    """One task of a run: its snapshot, state, container and the tail of its logs."""

    __tablename__ = "run_tasks"
    __table_args__ = (UniqueConstraint("run_id", "position"),)

    id: int | None = SQLField(default=None, primary_key=True)
    run_id: int = SQLField(
        sa_column=Column(
            Integer, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    position: int
    task_name: str = SQLField(max_length=100)
    task_snapshot: dict[str, Any] = SQLField(default_factory=dict, sa_column=Column(JSON))
    status: str = SQLField(default=TaskStatus.pending.value, max_length=20)
    attempt: int = 0
    container_id: str | None = SQLField(default=None, max_length=100)
    exit_code: int | None = None
    started_at: datetime | None = SQLField(default=None, sa_type=UTCDateTime)
    finished_at: datetime | None = SQLField(default=None, sa_type=UTCDateTime)
    error: str | None = SQLField(default=None, sa_column=Column(Text))
    logs: str = SQLField(default="", sa_column=Column(Text, nullable=False, server_default=""))
    logs_truncated: bool = False
