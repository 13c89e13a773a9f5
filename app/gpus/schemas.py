"""The GPU API's schemas: one GPU as found, a host's inventory, what a probe answers.

Pydantic and the standard library only, so the client and the CLI load no database layer.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

ProbeStatus = Literal["ok", "no_runtime", "driver_error", "error"]


class GpuProcess(BaseModel):
    """A compute process nvidia-smi saw on the GPU."""

    pid: int | None
    used_memory_mb: int | None


class GpuRead(BaseModel):
    """One GPU of a host, as its last probe found it, and whether dockfleet gives it out."""

    index: int = Field(description="nvidia-smi's index (may change when a GPU disappears).")
    uuid: str = Field(description="What dockfleet hands to containers (DeviceIDs).")
    name: str | None
    memory_total_mb: int | None
    memory_used_mb: int | None
    utilization_pct: int | None
    temperature_c: float | None
    power_w: float | None
    processes: list[GpuProcess]
    present: bool = Field(description="Found by the last probe.")
    healthy: bool = Field(description="Present, no error reported, below the temperature limit.")
    busy_elsewhere: bool = Field(
        description="Used by processes dockfleet did not start (or memory used above "
        "DOCKFLEET_GPU_BUSY_MB): not given out."
    )
    held_by_run: int | None = Field(description="The run of ours holding it now, if any.")
    available: bool = Field(description="Healthy, not busy elsewhere, not held: can be given.")
    reason: str | None = Field(description="Why it is held out (null when it can be given).")
    first_seen_at: datetime
    last_seen_at: datetime | None = Field(description="Last probe that found it.")


class GpuInventory(BaseModel):
    """A host's GPUs: what it declares, what its probes found, when, and each GPU."""

    host_id: int
    host_name: str
    declared: int | Literal["auto"] | None = Field(
        description='capabilities: gpu_count when gpus is true, "auto", or null (CPU host).'
    )
    status: ProbeStatus | None = Field(
        description="Last probe: ok, no_runtime (a CPU host), driver_error (every GPU held out), "
        "error (could not run: the inventory is as before); null: never probed."
    )
    error: str | None
    probed_at: datetime | None
    probe_image: str | None
    duration_ms: float | None
    found: int = Field(description="GPUs present at the last probe.")
    cdi_devices: list[str] = Field(description="CDI devices the daemon advertises (/info).")
    gpus_total: int
    gpus_free: int
    gpus_busy_elsewhere: int
    gpus_unhealthy: int = Field(description="Held out: unhealthy or missing.")
    gpus_held: int = Field(description="Held by runs of ours.")
    reasons: list[str] = Field(description="Why the host cannot take GPU runs now, if so.")
    probing: bool = Field(False, description="A probe is still running (POST answered early).")
    gpus: list[GpuRead]
