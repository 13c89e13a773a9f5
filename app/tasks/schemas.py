"""The task API's schemas: create and update bodies with their validators, the task as shown."""

from __future__ import annotations

import re
import shlex
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from app.limits import (
    ENV_NAME,
    MAX_BINDS,
    MAX_COMMAND_ARG,
    MAX_COMMAND_ARGS,
    MAX_ENV,
    MAX_ENV_VALUE,
    MAX_GPUS,
    MAX_PATH,
)

NAME = r"^[a-z0-9][a-z0-9_.-]{0,99}$"
# registry[:port]/path[:tag][@digest], lower-case path components, as Docker accepts them.
_IMAGE = re.compile(
    r"^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._-]+[a-z0-9]+)*"
    r"(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*(?::[\w][\w.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$"
)
NETWORK_MODES = ("bridge", "host", "none")
# Fields a task may name only to be refused (not part of a task definition).
POLICY_ONLY = frozenset({"privileged", "cap_add", "devices"})
FORBIDDEN = {
    "privileged": "privileged containers are never allowed",
    "cap_add": "added capabilities are never allowed",
    "devices": "device mounts are never allowed (GPUs are given by dockfleet itself)",
}
MAX_TIMEOUT = 30 * 24 * 3600  # a month
MAX_MEMORY_MB = 16 * 1024 * 1024  # 16 TiB
MAX_GPU_MEMORY_MB = 16 * 1024 * 1024
GPU_NEEDS_FLAG = "gpu_count > 0 needs requires_gpu: true"


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


EnvName = Annotated[str, Field(pattern=ENV_NAME, max_length=256)]
EnvValue = Annotated[str, Field(max_length=MAX_ENV_VALUE)]
Arg = Annotated[str, Field(max_length=MAX_COMMAND_ARG)]
Bind = Annotated[str, Field(min_length=3, max_length=2 * MAX_PATH + 4)]


class _TaskFields(_Strict):
    description: str | None = Field(None, max_length=2000)
    image: str | None = Field(None, min_length=1, max_length=300)
    command: list[Arg] | str | None = Field(
        None,
        max_length=MAX_COMMAND_ARGS,
        description="argv list, or a string split like a shell",
    )
    env: dict[EnvName, EnvValue] | None = Field(None, max_length=MAX_ENV)
    requires_gpu: bool | None = None
    gpu_count: int | None = Field(None, ge=0, le=MAX_GPUS)
    gpu_memory_mb: int | None = Field(
        None, gt=0, le=MAX_GPU_MEMORY_MB, description="Each GPU has at least this much memory."
    )
    gpu_name: str | None = Field(
        None,
        min_length=1,
        max_length=100,
        pattern=r"^[\w .+-]+$",
        description='Each GPU\'s name contains this (any case), e.g. "4090".',
    )
    timeout_seconds: int | None = Field(
        None, gt=0, le=MAX_TIMEOUT, description="Kill the container this long after it started."
    )
    max_retries: int | None = Field(None, ge=0, le=20)
    binds: list[Bind] | None = Field(
        None, max_length=MAX_BINDS, description='Docker binds, e.g. "/var/log:/host/log:ro"'
    )
    network_mode: str | None = Field(None, min_length=1, max_length=100)
    cpu_limit: float | None = Field(None, gt=0, le=1024, description="CPUs, e.g. 0.5")
    memory_limit_mb: int | None = Field(
        None, gt=0, le=MAX_MEMORY_MB, description="Memory limit in MiB"
    )
    enabled: bool | None = None

    @field_validator("name", check_fields=False)
    @classmethod
    def _not_an_id(cls, value: str | None) -> str | None:
        # /tasks/{id or name}/ reads an all-digit key as an id, so a name must not be one.
        if value is not None and value.isdigit():
            raise ValueError("a task name cannot be only digits (it would read as an id)")
        return value

    @field_validator("image")
    @classmethod
    def _image(cls, value: str | None) -> str | None:
        if value is not None and not _IMAGE.match(value):
            raise ValueError(f"{value!r} is not a valid image reference")
        return value

    @field_validator("command")
    @classmethod
    def _command(cls, value: list[str] | str | None) -> list[str] | str | None:
        if isinstance(value, str):
            if len(value) > MAX_COMMAND_ARG:
                raise ValueError(f"command is longer than {MAX_COMMAND_ARG} characters")
            try:
                return shlex.split(value)
            except ValueError as exc:
                raise ValueError(f"cannot split command: {exc}") from exc
        return value

    @field_validator("binds")
    @classmethod
    def _binds(cls, value: list[str] | None) -> list[str] | None:
        for bind in value or []:
            parts = bind.split(":")
            if len(parts) not in (2, 3) or not parts[1].startswith("/"):
                raise ValueError(f"bind {bind!r} must be source:/container/path[:ro|rw]")
            if len(parts) == 3 and parts[2] not in ("ro", "rw"):
                raise ValueError(f"bind {bind!r}: the mode must be ro or rw")
        return value

    # Asked for by name only to be refused by name (the task policy never allows them).
    privileged: bool | None = Field(None, description="Never allowed (task policy).")
    cap_add: list[str] | None = Field(None, description="Never allowed (task policy).")
    devices: list[str] | None = Field(None, description="Never allowed (task policy).")

    @field_validator("privileged", "cap_add", "devices")
    @classmethod
    def _never(cls, value: object, info: ValidationInfo) -> object:
        if value:
            raise ValueError(f"{FORBIDDEN[info.field_name or '']} (task policy)")
        return None


class TaskCreate(_TaskFields):
    """Body of POST /api/tasks/."""

    name: str = Field(pattern=NAME, description="Slug: lower-case letters, digits, _ . -")
    image: str = Field(min_length=1, max_length=300)

    @field_validator("gpu_count", "gpu_memory_mb", "gpu_name")
    @classmethod
    def _gpu(cls, value: int | str | None, info: ValidationInfo) -> int | str | None:
        # requires_gpu is declared before these fields, so it is already in info.data.
        if value and not info.data.get("requires_gpu"):
            if info.field_name == "gpu_count":
                raise ValueError(GPU_NEEDS_FLAG)
            raise ValueError(f"{info.field_name} needs requires_gpu: true")
        return value


class TaskUpdate(_TaskFields):
    """Body of PATCH /api/tasks/{id or name}/."""

    name: str | None = Field(None, pattern=NAME)


class TaskRead(BaseModel):
    """A task definition as the API shows it."""

    id: int
    name: str
    description: str
    image: str
    command: list[str] | None
    env: dict[str, str]
    requires_gpu: bool
    gpu_count: int
    gpu_memory_mb: int | None = None
    gpu_name: str | None = None
    timeout_seconds: int | None
    max_retries: int
    binds: list[str]
    network_mode: str | None
    cpu_limit: float | None
    memory_limit_mb: int | None
    enabled: bool
    created_at: datetime
    updated_at: datetime


class TaskPage(BaseModel):
    """A page of task definitions."""

    count: int
    next: str | None
    previous: str | None
    results: list[TaskRead]
