"""Queries and writes of GPU inventories; callers own the transaction (we only flush)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app import clock
from app.gpus.models import Gpu, GpuInventory, GpuProbe, GpuProcess, GpuRead
from app.gpus.offer import GpuState, GpuUnit, GpuUse, units_of
from app.gpus.parse import AppRow, GpuRow, HealthRow, Report
from app.hosts.holds import GpuHold, SlotHold
from app.hosts.models import WorkerHost


@dataclass
class Outcome:
    """What one probe of a host came to (before it is written)."""

    status: str  # ok | no_runtime | driver_error | error
    error: str | None = None
    report: Report | None = None
    image: str | None = None
    duration_ms: float | None = None
    cdi_devices: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Limits:
    """What makes a GPU busy elsewhere or unhealthy (from the settings)."""

    busy_mb: int = 1024
    max_temperature_c: float = 90.0


@dataclass(frozen=True)
class Change:
    """A GPU that became busy elsewhere, unhealthy (or missing), or well again."""

    uuid: str
    index: int
    condition: str  # busy_elsewhere | unhealthy | healthy
    reason: str | None


def reason_of(gpu: Gpu) -> str | None:
    """Why the GPU is held out (None: it may be given)."""
    if not gpu.present:
        return gpu.health_error or "missing: the last probe did not find it"
    if gpu.health_error:
        return f"unhealthy: {gpu.health_error}"
    return gpu.busy_reason


def condition_of(gpu: Gpu) -> str:
    """healthy, unhealthy (missing included) or busy_elsewhere."""
    if not gpu.present or gpu.health_error:
        return "unhealthy"
    return "busy_elsewhere" if gpu.busy_reason else "healthy"


def unit_of(gpu: Gpu) -> GpuUnit:
    """The GPU as placement sees it."""
    return GpuUnit(
        id=gpu.uuid,
        index=gpu.index,
        name=gpu.name,
        memory_total_mb=gpu.memory_total_mb,
        present=gpu.present,
        reason=reason_of(gpu),
        busy=gpu.present and not gpu.health_error and bool(gpu.busy_reason),
    )


async def states(session: AsyncSession, host_ids: list[int] | None = None) -> dict[int, GpuState]:
    """Every probed host's GPU state (two queries for all of them)."""
    probes = select(GpuProbe.host_id, GpuProbe.status, GpuProbe.error, GpuProbe.discovered_at)
    gpus = select(Gpu)
    if host_ids is not None:
        probes = probes.where(col(GpuProbe.host_id).in_(host_ids))
        gpus = gpus.where(col(Gpu.host_id).in_(host_ids))
    units: dict[int, list[GpuUnit]] = defaultdict(list)
    for gpu in (await session.exec(gpus)).all():
        units[gpu.host_id].append(unit_of(gpu))
    return {
        host_id: GpuState(status, error, tuple(units.get(host_id, ())), found is not None)
        for host_id, status, error, found in (await session.exec(probes)).all()
    }


async def held_ids(session: AsyncSession, host_id: int) -> dict[str, int]:
    """GPU ids held on the host by a slot hold, and the run holding each."""
    query = (
        select(GpuHold.device_id, SlotHold.run_id)
        .join(SlotHold, col(SlotHold.id) == col(GpuHold.hold_id))
        .where(col(GpuHold.host_id) == host_id)
    )
    return {device: run for device, run in (await session.exec(query)).all()}


async def probe_of(session: AsyncSession, host_id: int) -> GpuProbe | None:
    """The host's last probe row."""
    return await session.get(GpuProbe, host_id)


async def gpus_of(session: AsyncSession, host_id: int) -> list[Gpu]:
    """The host's GPUs, present ones first, by index."""
    query = select(Gpu).where(col(Gpu.host_id) == host_id)
    rows = list((await session.exec(query)).all())
    return sorted(rows, key=lambda g: (not g.present, g.index, g.uuid))


def _health(row: GpuRow, health: HealthRow | None, limits: Limits) -> str | None:
    problems = []
    if row.errors:
        problems.append("nvidia-smi reports " + ", ".join(row.errors))
    if row.temperature_c is not None and row.temperature_c > limits.max_temperature_c:
        problems.append(
            f"temperature {row.temperature_c:g} °C above the {limits.max_temperature_c:g} °C "
            "limit (DOCKFLEET_GPU_MAX_TEMPERATURE_C)"
        )
    if health is not None:
        if health.errors:
            problems.append("nvidia-smi reports " + ", ".join(health.errors))
        if health.ecc_uncorrected:
            problems.append(f"{health.ecc_uncorrected} uncorrected ECC errors")
        if health.retired_pending:
            problems.append("retired pages pending (the GPU needs a reset)")
    return "; ".join(problems) or None


def _busy(row: GpuRow, apps: list[AppRow], ours: bool, limits: Limits) -> str | None:
    if ours:  # its processes are our run's
        return None
    if apps:
        pids = ", ".join(str(a.pid) for a in apps if a.pid is not None) or "unknown"
        return (
            f"busy elsewhere: {len(apps)} compute process(es) dockfleet did not start (pid {pids})"
        )
    if row.memory_used_mb is not None and row.memory_used_mb > limits.busy_mb:
        return (
            f"busy elsewhere: {row.memory_used_mb} MiB used, above DOCKFLEET_GPU_BUSY_MB "
            f"({limits.busy_mb})"
        )
    return None


def _found(gpu: Gpu, row: GpuRow, report: Report, held: set[str], limits: Limits) -> None:
    apps = [a for a in report.apps if a.gpu_uuid == row.uuid]
    ours = row.uuid in held or str(row.index) in held
    values: dict[str, Any] = {
        "index": row.index,
        "name": row.name or None,
        "memory_total_mb": row.memory_total_mb,
        "memory_used_mb": row.memory_used_mb,
        "utilization_pct": row.utilization_pct,
        "temperature_c": row.temperature_c,
        "power_w": row.power_w,
        "processes": [{"pid": a.pid, "used_memory_mb": a.used_memory_mb} for a in apps],
        "present": True,
        "health_error": _health(row, report.health.get(row.uuid), limits),
        "busy_reason": _busy(row, apps, ours, limits),
        "last_seen_at": clock.now(),
    }
    for key, value in values.items():
        setattr(gpu, key, value)


def _lost(gpu: Gpu, why: str) -> None:
    gpu.present = False
    gpu.health_error = why
    gpu.busy_reason = None
    gpu.processes = []
    gpu.memory_used_mb = gpu.utilization_pct = None
    gpu.temperature_c = gpu.power_w = None


async def record(
    session: AsyncSession, host_id: int, outcome: Outcome, held: set[str], limits: Limits
) -> list[Change]:
    """Write a probe's outcome; the GPUs whose condition changed.

    `held`: GPU ids our runs held on the host during the probe (their processes are ours).
    A probe that could not run (`error`) changes no GPU; one that ran decides every GPU.
    """
    probe = await session.get(GpuProbe, host_id)
    if probe is None:
        probe = GpuProbe(host_id=host_id, status=outcome.status)
        session.add(probe)
    existing = {g.uuid: g for g in await gpus_of(session, host_id)}
    before = {uuid: (condition_of(g), reason_of(g)) for uuid, g in existing.items()}
    if outcome.status == "ok" and outcome.report is not None:
        found = {row.uuid: row for row in outcome.report.gpus}
        for uuid, row in found.items():
            gpu = existing.get(uuid)
            if gpu is None:
                gpu = existing[uuid] = Gpu(host_id=host_id, uuid=uuid)
                session.add(gpu)
            _found(gpu, row, outcome.report, held, limits)
        for uuid, gpu in existing.items():
            if uuid not in found:
                _lost(gpu, "missing: the last probe did not find it")
    elif outcome.status == "no_runtime":
        for gpu in existing.values():
            _lost(gpu, "missing: the daemon has no NVIDIA runtime now")
    elif outcome.status == "driver_error":
        for gpu in existing.values():
            gpu.health_error = f"probe failed: {outcome.error}"
    probe.status = outcome.status
    probe.error = outcome.error
    probe.image = outcome.image
    probe.probed_at = clock.now()
    probe.duration_ms = outcome.duration_ms
    probe.cdi_devices = list(outcome.cdi_devices)
    if outcome.status != "error":
        probe.found = sum(1 for g in existing.values() if g.present)
        probe.discovered_at = probe.probed_at
        # A plan made on the GPUs as they were must not apply (the placement guard).
        bump = sa.update(WorkerHost).where(col(WorkerHost.id) == host_id)
        await session.exec(bump.values(placement_seq=col(WorkerHost.placement_seq) + 1))
    await session.flush()
    changes = []
    for uuid, gpu in existing.items():
        now = (condition_of(gpu), reason_of(gpu))
        old = before.get(uuid, ("healthy", None))
        if now[0] != old[0]:
            changes.append(Change(uuid, gpu.index, now[0], now[1]))
    return changes


async def probe_times(session: AsyncSession) -> dict[int, Any]:
    """When each host was last probed."""
    query = select(GpuProbe.host_id, GpuProbe.probed_at)
    return {host_id: at for host_id, at in (await session.exec(query)).all()}


def _declared(capabilities: dict[str, Any]) -> int | str | None:
    gpus = capabilities.get("gpus")
    if gpus == "auto":
        return "auto"
    return int(capabilities.get("gpu_count") or 1) if gpus else None


async def inventory(
    session: AsyncSession, host: Any, reasons: list[str], probing: bool = False
) -> GpuInventory:
    """The host's GPUs as the API shows them (`reasons`: why it cannot take GPU runs now)."""
    assert host.id is not None
    probe = await probe_of(session, host.id)
    rows = await gpus_of(session, host.id)
    holders = await held_ids(session, host.id)
    state = None
    if probe is not None:
        units = tuple(map(unit_of, rows))
        state = GpuState(probe.status, probe.error, units, probe.discovered_at is not None)
    use = GpuUse(units_of(host.caps(), state), set(holders))
    gpus = []
    for gpu in rows:
        unit = unit_of(gpu)
        run = holders.get(gpu.uuid) or holders.get(str(gpu.index)) if gpu.present else None
        gpus.append(
            GpuRead(
                **gpu.model_dump(
                    include={
                        "index",
                        "uuid",
                        "name",
                        "memory_total_mb",
                        "memory_used_mb",
                        "utilization_pct",
                        "temperature_c",
                        "power_w",
                        "present",
                        "first_seen_at",
                        "last_seen_at",
                    }
                ),
                processes=[GpuProcess.model_validate(p) for p in gpu.processes or []],
                healthy=gpu.present and not gpu.health_error,
                busy_elsewhere=unit.busy,
                held_by_run=run,
                available=unit.usable and run is None,
                reason=unit.reason,
            )
        )
    return GpuInventory(
        host_id=host.id,
        host_name=host.name,
        declared=_declared(host.capabilities or {}),
        status=probe.status if probe else None,
        error=probe.error if probe else None,
        probed_at=probe.probed_at if probe else None,
        probe_image=probe.image if probe else None,
        duration_ms=probe.duration_ms if probe else None,
        found=probe.found if probe else 0,
        cdi_devices=list(probe.cdi_devices or []) if probe else [],
        reasons=reasons,
        probing=probing,
        gpus=gpus,
        **use.totals(),
    )
