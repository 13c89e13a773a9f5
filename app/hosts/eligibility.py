"""Pure rules about a host: is it stale, and why can it not take a run right now."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from app.gpus.offer import GpuAsk, GpuState, never_reasons
from app.hosts.models import WorkerHost


@dataclass
class HostLoad:
    """A host's held slots (lingering ones too) and the GPU ids held."""

    held: int = 0
    lingering: int = 0
    gpus_in_use: set[str] = field(default_factory=set)


def is_stale(last_seen_at: datetime | None, now: datetime, stale_after: float) -> bool:
    """Never seen, or not seen for longer than `stale_after` seconds."""
    return last_seen_at is None or (now - last_seen_at).total_seconds() > stale_after


def is_lost(
    healthy: bool, unhealthy_since: datetime | None, now: datetime, lost_after: float
) -> bool:
    """Live checks have kept failing for longer than `lost_after` seconds (heartbeats aside)."""
    if healthy or unhealthy_since is None:
        return False
    return (now - unhealthy_since).total_seconds() > lost_after


def ineligible_reasons(
    host: WorkerHost,
    now: datetime,
    stale_after: float,
    gpu_need: int = 0,
    gpus: GpuState | None = None,
    ask: GpuAsk | None = None,
) -> list[str]:
    """Why the host could never take a run needing `gpu_need` GPUs now ([] = eligible).

    `gpus`: the host's discovered GPUs (None: never probed, its declaration is trusted);
    `ask`: the run's GPU memory/name filters (its count wins over `gpu_need`)."""
    reasons = []
    if not host.enabled:
        reasons.append("disabled")
    if host.draining:
        reasons.append("draining")
    if not host.healthy:
        reasons.append(f"unhealthy: {host.last_error}" if host.last_error else "unhealthy")
    if is_stale(host.last_seen_at, now, stale_after):
        if host.last_seen_at is None:
            reasons.append("stale: never seen")
        else:
            ago = int((now - host.last_seen_at).total_seconds())
            reasons.append(f"stale: last seen {ago}s ago")
    reasons += never_reasons(host.caps(), gpus, ask or GpuAsk(gpu_need))
    return reasons
