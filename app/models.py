"""Imports every table so that SQLModel.metadata (and alembic) see them all."""

from sqlmodel import SQLModel

from app.directives.models import Directive
from app.events.models import Event
from app.gpus.models import Gpu, GpuProbe
from app.hosts.holds import GpuHold, SlotHold
from app.hosts.models import WorkerHost
from app.meta import Meta
from app.runs.models import Run, RunTask
from app.tasks.models import TaskDefinition

metadata = SQLModel.metadata

__all__ = [
    "Directive",
    "Event",
    "Gpu",
    "GpuHold",
    "GpuProbe",
    "Meta",
    "Run",
    "RunTask",
    "SlotHold",
    "TaskDefinition",
    "WorkerHost",
    "metadata",
]
