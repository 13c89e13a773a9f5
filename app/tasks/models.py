"""TaskDefinition: the table (its request/response schemas live in schemas.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from app import clock
from app.db import UTCDateTime
from app.tasks.schemas import (
    GPU_NEEDS_FLAG,
    NAME,
    NETWORK_MODES,
    POLICY_ONLY,
    TaskCreate,
    TaskPage,
    TaskRead,
    TaskUpdate,
)

# The schemas are re-exported so `from app.tasks.models import TaskRead` keeps working;
# the client and the CLI import schemas.py, which loads no database layer.
__all__ = [
    "GPU_NEEDS_FLAG",
    "NAME",
    "NETWORK_MODES",
    "POLICY_ONLY",
    "TaskCreate",
    "TaskDefinition",
    "TaskPage",
    "TaskRead",
    "TaskUpdate",
]


class TaskDefinition(SQLModel, table=True):
    """One container's recipe; a run keeps a snapshot of each of its tasks."""

    __tablename__ = "task_definitions"

    id: int | None = SQLField(default=None, primary_key=True)
    name: str = SQLField(index=True, unique=True, max_length=100)
    description: str = SQLField(default="", max_length=2000)
    image: str = SQLField(max_length=300)
    command: list[str] | None = SQLField(default=None, sa_column=Column(JSON))
    env: dict[str, str] = SQLField(default_factory=dict, sa_column=Column(JSON))
    requires_gpu: bool = False
    gpu_count: int = 0
    gpu_memory_mb: int | None = None
    gpu_name: str | None = SQLField(default=None, max_length=100)
    timeout_seconds: int | None = None
    max_retries: int = 0
    binds: list[str] = SQLField(default_factory=list, sa_column=Column(JSON))
    network_mode: str | None = SQLField(default=None, max_length=100)
    cpu_limit: float | None = None
    memory_limit_mb: int | None = None
    enabled: bool = True
    created_at: datetime = SQLField(default_factory=clock.now, sa_type=UTCDateTime)
    updated_at: datetime = SQLField(default_factory=clock.now, sa_type=UTCDateTime)

    def gpus_needed(self) -> int:
        """GPUs one container of this task needs."""
        return max(self.gpu_count, 1) if self.requires_gpu else 0

    def snapshot(self) -> dict[str, Any]:
        """What a run keeps of this task."""
        return self.model_dump(exclude={"created_at", "updated_at"})
