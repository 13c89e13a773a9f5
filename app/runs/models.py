"""Run and RunTask tables, their states, and the table of legal state moves."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import JSON, Column, ForeignKey, Integer, Text, UniqueConstraint
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from app import clock
from app.db import UTCDateTime


class RunStatus(StrEnum):
    """Where a run is in its life."""

    pending = "pending"
    starting = "starting"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


class TaskStatus(StrEnum):
    """Where one task of a run is."""

    pending = "pending"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    skipped = "skipped"
    cancelled = "cancelled"


ACTIVE = frozenset({RunStatus.starting, RunStatus.running})
FINAL = frozenset({RunStatus.succeeded, RunStatus.failed, RunStatus.cancelled})

# The only moves a run may make. "host lost" sends starting/running back to pending.
RUN_MOVES: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.pending: frozenset({RunStatus.starting, RunStatus.cancelled, RunStatus.failed}),
    RunStatus.starting: frozenset(
        {RunStatus.running, RunStatus.failed, RunStatus.cancelled, RunStatus.pending}
    ),
    RunStatus.running: frozenset(
        {RunStatus.succeeded, RunStatus.failed, RunStatus.cancelled, RunStatus.pending}
    ),
    RunStatus.succeeded: frozenset(),
    RunStatus.failed: frozenset(),
    RunStatus.cancelled: frozenset(),
}


class Run(SQLModel, table=True):
    """An ordered list of tasks run on one host, one container at a time."""

    __tablename__ = "runs"

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
    gpu_need: int = 0
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


class LaunchRequest(BaseModel):
    """Body of POST /api/runs/launch/."""

    model_config = ConfigDict(strict=True, extra="forbid")

    directive_id: int = Field(gt=0)
    tasks: list[str] | None = Field(
        None, description="Task names in order; default: the directive's, else every enabled task."
    )
    target_host_id: int | None = Field(None, gt=0, description="Run only on this host.")


class RunTaskRead(BaseModel):
    """One task of a run (logs are served by /runs/{id}/logs/)."""

    id: int
    position: int
    task_name: str
    image: str | None
    status: TaskStatus
    attempt: int
    container_id: str | None
    exit_code: int | None
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None


class RunRead(BaseModel):
    """A run with its tasks, host, timings and errors."""

    id: int
    directive_id: int | None
    directive_name: str | None
    status: RunStatus
    worker_host_id: int | None
    worker_host_name: str | None
    target_host_id: int | None
    gpu_need: int
    gpu_device_ids: list[str]
    placements: int
    cancel_requested: bool
    error: str | None
    created_at: datetime
    placed_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    tasks: list[RunTaskRead]


class RunPage(BaseModel):
    """A page of runs, newest first."""

    count: int
    next: str | None
    previous: str | None
    results: list[RunRead]


class TaskLogs(BaseModel):
    """The stored tail of one task's output."""

    position: int
    task_name: str
    status: TaskStatus
    attempt: int
    exit_code: int | None
    truncated: bool
    logs: str


class RunLogs(BaseModel):
    """Stored logs of every task of a run."""

    run_id: int
    status: RunStatus
    tasks: list[TaskLogs]


class HostRejection(BaseModel):
    """Why one host cannot take a run."""

    host_id: int
    name: str
    reasons: list[str]


class NoHostsBody(BaseModel):
    """503 body of a launch no host could ever take."""

    detail: str
    code: str
    hosts: list[HostRejection]
