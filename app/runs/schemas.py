"""The run API's schemas: run and task states, the table of legal run moves, bodies and answers."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from app.limits import DB_INT_MAX, MAX_TASKS_PER_RUN


class RunStatus(StrEnum):
    """Where a run is in its life."""

    pending = "pending"
    starting = "starting"
    running = "running"
    cancelling = "cancelling"
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


# Active runs are driven by a supervisor on their host; `cancelling` waits for its container
# to be confirmed stopped.
ACTIVE = frozenset({RunStatus.starting, RunStatus.running, RunStatus.cancelling})
FINAL = frozenset({RunStatus.succeeded, RunStatus.failed, RunStatus.cancelled})

# The only moves a run may make. "host lost" sends starting/running back to pending.
RUN_MOVES: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.pending: frozenset({RunStatus.starting, RunStatus.cancelled, RunStatus.failed}),
    RunStatus.starting: frozenset(
        {
            RunStatus.running,
            RunStatus.failed,
            RunStatus.cancelling,
            RunStatus.cancelled,
            RunStatus.pending,
        }
    ),
    RunStatus.running: frozenset(
        {
            RunStatus.succeeded,
            RunStatus.failed,
            RunStatus.cancelling,
            RunStatus.cancelled,
            RunStatus.pending,
        }
    ),
    RunStatus.cancelling: frozenset({RunStatus.cancelled, RunStatus.failed}),
    RunStatus.succeeded: frozenset(),
    RunStatus.failed: frozenset(),
    RunStatus.cancelled: frozenset(),
}


class LaunchRequest(BaseModel):
    """Body of POST /api/runs/launch/."""

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)

    directive_id: int = Field(gt=0, le=DB_INT_MAX)
    tasks: list[Annotated[str, Field(min_length=1, max_length=100)]] | None = Field(
        None,
        max_length=MAX_TASKS_PER_RUN,
        description="Task names in order; default: the directive's, else every enabled task.",
    )
    target_host_id: int | None = Field(
        None, gt=0, le=DB_INT_MAX, description="Run only on this host."
    )


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
    schedule_id: int | None = Field(None, description="The schedule that fired it, if one did.")
    gpu_need: int
    gpu_memory_mb: int = Field(0, description="Least total memory asked of each GPU (MiB).")
    gpu_name: str | None = Field(None, description="Substring asked of each GPU's name.")
    gpu_device_ids: list[str] = Field(
        description="The GPUs it holds: their UUIDs (indexes on hosts never probed)."
    )
    placements: int
    cancel_requested: bool
    error: str | None
    waiting_for: str | None = Field(
        None, description="For a pending run: what it waits for (a free slot where, or a host)."
    )
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
    """503 body of a launch no host could ever take (or of a database that is unavailable)."""

    detail: str
    code: str
    hosts: list[HostRejection] = Field(default_factory=list)
    gpu_need: int | None = None
    reason: str | None = None
