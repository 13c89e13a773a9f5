"""Imports every table so that SQLModel.metadata (and alembic) see them all."""

from sqlmodel import SQLModel

from app.directives.models import Directive
from app.events.models import Event
from app.hosts.holds import GpuHold, SlotHold
from app.hosts.models import WorkerHost
from app.meta import Meta
from app.runs.models import Run, RunTask
from app.schedules.models import Schedule, ScheduleFire
from app.tasks.models import TaskDefinition

metadata = SQLModel.metadata

__all__ = [
    "Directive",
    "Event",
    "GpuHold",
    "Meta",
    "Run",
    "RunTask",
    "Schedule",
    "ScheduleFire",
    "SlotHold",
    "TaskDefinition",
    "WorkerHost",
    "metadata",
]
