"""The directive API's schemas: create and update bodies, the directive as shown, a page."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.limits import ENV_NAME, MAX_ENV, MAX_ENV_VALUE, MAX_TASKS_PER_RUN

ENV_KEY = ENV_NAME


class _Strict(BaseModel):
    """Request bodies: JSON types as given, unknown fields rejected, the name stripped."""

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _strip_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("name"), str):
            data = {**data, "name": data["name"].strip()}
        return data


EnvKey = Annotated[str, Field(pattern=ENV_KEY, max_length=256)]
EnvValue = Annotated[str, Field(max_length=MAX_ENV_VALUE)]
TaskName = Annotated[str, Field(min_length=1, max_length=100)]


class DirectiveCreate(_Strict):
    """Body of POST /api/directives/."""

    name: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=2000)
    tasks: list[TaskName] = Field(
        default_factory=list,
        max_length=MAX_TASKS_PER_RUN,
        description="Default tasks; empty = every enabled task.",
    )
    env: dict[EnvKey, EnvValue] = Field(
        default_factory=dict,
        max_length=MAX_ENV,
        description="Passed to every container of its runs.",
    )


class DirectiveUpdate(_Strict):
    """Body of PATCH /api/directives/{id}/."""

    name: str | None = Field(None, min_length=1, max_length=200)
    description: str | None = Field(None, max_length=2000)
    tasks: list[TaskName] | None = Field(None, max_length=MAX_TASKS_PER_RUN)
    env: dict[EnvKey, EnvValue] | None = Field(None, max_length=MAX_ENV)


class DirectiveRead(BaseModel):
    """A directive as the API shows it."""

    id: int
    name: str
    description: str
    tasks: list[str]
    env: dict[str, str]
    created_at: datetime
    updated_at: datetime


class DirectivePage(BaseModel):
    """A page of directives."""

    count: int
    next: str | None
    previous: str | None
    results: list[DirectiveRead]
