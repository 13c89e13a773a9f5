"""Directive: the table (its request/response schemas live in schemas.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from app import clock
from app.db import UTCDateTime
from app.directives.schemas import (
    ENV_KEY,
    DirectiveCreate,
    DirectivePage,
    DirectiveRead,
    DirectiveUpdate,
)

# The schemas are re-exported so `from app.directives.models import DirectiveRead` keeps
# working; the client and the CLI import schemas.py, which loads no database layer.
__all__ = [
    "ENV_KEY",
    "Directive",
    "DirectiveCreate",
    "DirectivePage",
    "DirectiveRead",
    "DirectiveUpdate",
]


class Directive(SQLModel, table=True):
    """Named defaults a run is launched from; runs keep a snapshot of it."""

    __tablename__ = "directives"

    id: int | None = SQLField(default=None, primary_key=True)
    name: str = SQLField(index=True, unique=True, max_length=200)
    description: str = SQLField(default="", max_length=2000)
    tasks: list[str] = SQLField(default_factory=list, sa_column=Column(JSON))
    env: dict[str, str] = SQLField(default_factory=dict, sa_column=Column(JSON))
    created_at: datetime = SQLField(default_factory=clock.now, sa_type=UTCDateTime)
    updated_at: datetime = SQLField(default_factory=clock.now, sa_type=UTCDateTime)

    def snapshot(self) -> dict[str, Any]:
        """What a run keeps of its directive."""
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "tasks": list(self.tasks),
            "env": dict(self.env),
        }
