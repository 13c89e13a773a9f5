"""The doctor's answer: one line per check with ok/warn/fail/skip and how to fix it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Verdict = Literal["ok", "warn", "fail", "skip"]


class Check(BaseModel):
    """One check of a host."""

    name: str
    status: Verdict
    detail: str
    fix: str | None = Field(None, description="What to do about a warn or fail.")


class DoctorReport(BaseModel):
    """Every check of one host; `ok` when none failed."""

    host_id: int
    host_name: str
    ok: bool
    checks: list[Check]
