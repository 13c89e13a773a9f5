"""Imports every table so that SQLModel.metadata (and alembic) see them all."""

from sqlmodel import SQLModel

from app.directives.models import Directive
from app.hosts.models import WorkerHost
from app.meta import Meta
from app.runs.models import Run, RunTask
from app.tasks.models import TaskDefinition

metadata = SQLModel.metadata

__all__ = ["Directive", "Meta", "Run", "RunTask", "TaskDefinition", "WorkerHost", "metadata"]
