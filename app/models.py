"""Imports every table so that SQLModel.metadata (and alembic) see them all."""

from sqlmodel import SQLModel

from app.directives.models import Directive
from app.events.models import Event
from app.gpus.models import Gpu, GpuProbe
from app.hosts.holds import GpuHold, SlotHold
from app.hosts.models import WorkerHost
from app.meta import Meta
from app.notifiers.models import Delivery, Notifier, NotifierFeed, NotifierState
from app.runs.models import Run, RunTask
from app.schedules.models import Schedule, ScheduleFire
from app.tasks.models import TaskDefinition

metadata = SQLModel.metadata

__all__ = [
    "Delivery",
    "Directive",
    "Event",
    "Gpu",
    "GpuHold",
    "GpuProbe",
    "Meta",
    "Notifier",
    "NotifierFeed",
    "NotifierState",
    "Run",
    "RunTask",
    "Schedule",
    "ScheduleFire",
    "SlotHold",
    "TaskDefinition",
    "WorkerHost",
    "metadata",
]
