"""The event API's schemas: one event as streamed or listed, a page of them, the type names."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

# The types dockfleet writes. A run's events follow its status (`run.<status>`); a host's its
# health and eligibility. Consumers should ignore types they do not know (more may come).
RUN_TYPES = (
    "run.pending",
    "run.starting",
    "run.running",
    "run.cancelling",
    "run.succeeded",
    "run.failed",
    "run.cancelled",
)
HOST_TYPES = (
    "host.created",
    "host.updated",
    "host.deleted",
    "host.healthy",
    "host.unhealthy",
    "host.draining",
    "host.undrained",
    "host.enabled",
    "host.disabled",
)
# A GPU's probe found it taken by processes dockfleet did not start, failing (or missing), or
# well again (app/gpus/probe.py).
GPU_TYPES = ("gpu.busy_elsewhere", "gpu.unhealthy", "gpu.healthy")
STREAM_RESET = "stream.reset"
TYPE_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*(\.\*)?$")


class EventRead(BaseModel):
    """One state change, as streamed (`data:` of an SSE message) and listed."""

    id: int = Field(description="Monotonic; the SSE `id:` (resume with `Last-Event-ID`).")
    created_at: datetime
    type: str = Field(description="`run.<status>`, `host.healthy`, `host.unhealthy`, ...")
    run_id: int | None = None
    host_id: int | None = None
    data: dict[str, Any] = Field(
        default_factory=dict, description="Details: directive and host names, status, error."
    )


class EventPage(BaseModel):
    """Events after an id, oldest first, with where the record starts and ends."""

    results: list[EventRead]
    last_id: int = Field(
        description="Pass as `?after=` to read on (the newest id read, or `after` when none)."
    )
    oldest_id: int | None = Field(description="The oldest event still kept (None: none kept).")
    reset: bool = Field(
        False, description="`after` is older than what is kept (or unknown): re-read state."
    )


def parse_types(raw: str | None) -> list[str] | None:
    """`run.failed,host.*` → the list; raises ValueError naming a malformed entry."""
    if raw is None or not raw.strip():
        return None
    out: list[str] = []
    for part in raw.split(","):
        name = part.strip()
        if not name:
            continue
        if len(name) > 64 or not TYPE_PATTERN.match(name):
            raise ValueError(f"not an event type (or `prefix.*`): {name[:64]!r}")
        out.append(name)
    if len(out) > 50:
        raise ValueError("at most 50 types")
    return out or None


def type_matches(type_: str, types: list[str] | None) -> bool:
    """Whether `type_` is one of `types` (`run.*` matches every `run.` type)."""
    if not types:
        return True
    for t in types:
        if t.endswith(".*") and type_.startswith(t[:-1]):
            return True
        if t == type_:
            return True
    return False
