"""The schedule API's schemas: create and update bodies, a schedule with its fires, a page."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, Strict, model_validator

from app.limits import DB_INT_MAX, MAX_TASKS_PER_RUN
from app.runs.schemas import RunStatus


class Overlap(StrEnum):
    """What a fire does while an earlier run of the same schedule has not finished."""

    skip = "skip"  # record the fire as skipped (the default)
    queue = "queue"  # keep one fire waiting; it launches when the earlier run finishes
    allow = "allow"  # launch anyway


class CatchUp(StrEnum):
    """What happens to fire times missed while no dockfleet was running."""

    none = "none"  # not replayed (recorded once as `missed`)
    latest = "latest"  # one run, for the latest missed time


class FireOutcome(StrEnum):
    """What one fire did."""

    launched = "launched"  # a run was created (`run_id`)
    skipped = "skipped"  # overlap=skip (or a fire already queued)
    queued = "queued"  # overlap=queue: waits for the earlier run to finish
    missed = "missed"  # catch_up=none: a time passed while dockfleet was down
    failed = "failed"  # the launch was refused (`status_code` 404/409/422/503, `detail`)


class FireTrigger(StrEnum):
    """Why a fire happened."""

    cron = "cron"
    catch_up = "catch_up"
    run_now = "run_now"


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _strip(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            for key in ("name", "cron", "timezone"):
                if isinstance(data.get(key), str):
                    data[key] = data[key].strip()
        return data


OverlapField = Annotated[Overlap, Strict(False)]
CatchUpField = Annotated[CatchUp, Strict(False)]
TaskName = Annotated[str, Field(min_length=1, max_length=100)]
Id = Annotated[int, Field(ge=1, le=DB_INT_MAX)]


class _ScheduleFields(_Strict):
    cron: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="5 fields (minute hour day month weekday) or an alias (@daily, @hourly…).",
    )
    timezone: str | None = Field(
        None, min_length=1, max_length=64, description="IANA zone the cron reads in."
    )
    directive_id: Id | None = None
    tasks: list[TaskName] | None = Field(None, min_length=1, max_length=MAX_TASKS_PER_RUN)
    target_host_id: Id | None = None
    enabled: bool | None = None
    overlap: OverlapField | None = None
    catch_up: CatchUpField | None = None
    description: str | None = Field(None, max_length=2000)


class ScheduleCreate(_ScheduleFields):
    """Body of POST /api/schedules/."""

    name: str = Field(min_length=1, max_length=200)
    directive_id: Id
    cron: str = Field(min_length=1, max_length=200)
    timezone: str = Field("UTC", min_length=1, max_length=64)
    tasks: list[TaskName] | None = Field(
        None,
        min_length=1,
        max_length=MAX_TASKS_PER_RUN,
        description="The tasks of each run; leave out for the directive's.",
    )
    enabled: bool = True
    overlap: OverlapField = Overlap.skip
    catch_up: CatchUpField = CatchUp.none
    description: str = Field("", max_length=2000)


class ScheduleUpdate(_ScheduleFields):
    """Body of PATCH /api/schedules/{id}/: only the fields given change (tasks and
    target_host_id may be set to null: the directive's tasks, any host)."""

    name: str | None = Field(None, min_length=1, max_length=200)


class FireRead(BaseModel):
    """One fire of a schedule: when it was due, what it did, its run."""

    id: int
    schedule_id: int
    trigger: FireTrigger
    due_at: datetime
    fired_at: datetime
    outcome: FireOutcome
    run_id: int | None
    run_status: RunStatus | None = None
    status_code: int | None = Field(None, description="Of a refused launch: 404/409/422/503.")
    detail: str | None = None


class ScheduleRead(BaseModel):
    """A schedule as the API shows it."""

    id: int
    name: str
    description: str
    directive_id: int
    tasks: list[str] | None
    target_host_id: int | None
    cron: str
    timezone: str
    enabled: bool
    overlap: Overlap
    catch_up: CatchUp
    next_fire_at: datetime | None = Field(None, description="UTC; null while disabled.")
    last_fire_at: datetime | None
    created_at: datetime
    updated_at: datetime
    fires: list[FireRead] | None = Field(
        None, description="The last fires, newest first (GET of one schedule only)."
    )


class SchedulePage(BaseModel):
    """A page of schedules."""

    count: int
    next: str | None
    previous: str | None
    results: list[ScheduleRead]


class FirePage(BaseModel):
    """A page of a schedule's fires, newest first."""

    count: int
    next: str | None
    previous: str | None
    results: list[FireRead]


class RunNowRead(BaseModel):
    """The answer of POST /api/schedules/{id}/run-now/."""

    fire: FireRead
    run_id: int | None
