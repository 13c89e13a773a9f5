"""The GPU tables: one probe row per host, one row per GPU ever found on it (by UUID)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, ForeignKey, Integer, Text
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from app import clock
from app.db import UTCDateTime
from app.gpus.schemas import GpuInventory, GpuProcess, GpuRead

__all__ = ["Gpu", "GpuInventory", "GpuProbe", "GpuProcess", "GpuRead"]


def _host_fk(primary_key: bool = True) -> Any:
    return Column(
        Integer, ForeignKey("worker_hosts.id", ondelete="CASCADE"), primary_key=primary_key
    )


class GpuProbe(SQLModel, table=True):
    """The last GPU probe of a host."""

    __tablename__ = "gpu_probes"

    host_id: int = SQLField(sa_column=_host_fk())
    status: str = SQLField(max_length=20, description="ok, no_runtime, driver_error, error")
    error: str | None = SQLField(default=None, sa_column=Column(Text))
    image: str | None = SQLField(default=None, max_length=300)
    probed_at: datetime = SQLField(default_factory=clock.now, sa_type=UTCDateTime)
    discovered_at: datetime | None = SQLField(
        default=None, sa_type=UTCDateTime, description="Last probe that ran nvidia-smi's query."
    )
    duration_ms: float | None = None
    found: int = 0
    cdi_devices: list[str] = SQLField(default_factory=list, sa_column=Column(JSON))


class Gpu(SQLModel, table=True):
    """One GPU of a host, keyed by its UUID; kept (as missing) when a probe no longer finds it."""

    __tablename__ = "gpus"

    host_id: int = SQLField(sa_column=_host_fk())
    uuid: str = SQLField(primary_key=True, max_length=200)
    index: int = 0
    name: str | None = SQLField(default=None, max_length=200)
    memory_total_mb: int | None = None
    memory_used_mb: int | None = None
    utilization_pct: int | None = None
    temperature_c: float | None = None
    power_w: float | None = None
    processes: list[dict[str, Any]] = SQLField(default_factory=list, sa_column=Column(JSON))
    present: bool = True
    health_error: str | None = SQLField(default=None, sa_column=Column(Text))
    busy_reason: str | None = SQLField(default=None, sa_column=Column(Text))
    first_seen_at: datetime = SQLField(default_factory=clock.now, sa_type=UTCDateTime)
    last_seen_at: datetime | None = SQLField(default=None, sa_type=UTCDateTime)
