"""Queries and writes for worker hosts; callers own the transaction (we only flush)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import Integer, String, column, exists, func, table
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app import clock
from app.db import Database
from app.errors import HostBusy
from app.gpus import store as gpus_store
from app.gpus.offer import GpuState, GpuUse, gpu_run_reasons, units_of
from app.hosts import holds
from app.hosts.eligibility import HostLoad, ineligible_reasons, is_stale
from app.hosts.models import HostRead, WorkerHost
from app.named import NamedStore

# The runs table, read by name so that imports keep flowing one way (runs imports hosts);
# every column is typed, so nothing is read back as raw text.
RUNS = table(
    "runs",
    column("worker_host_id", Integer),
    column("status", String),
    column("target_host_id", Integer),
)
ACTIVE_STATUSES = ("starting", "running", "cancelling")


_rows = NamedStore(WorkerHost, "worker host")
get = _rows.get
get_by_name = _rows.get_by_name
get_or_raise = _rows.get_or_raise
create = _rows.create
update = _rows.update
delete = _rows.delete


async def list_hosts(
    session: AsyncSession,
    *,
    enabled: bool | None = None,
    healthy: bool | None = None,
    name: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[int, list[WorkerHost]]:
    """A page of hosts ordered by id, and the total count."""
    query = select(WorkerHost)
    if enabled is not None:
        query = query.where(col(WorkerHost.enabled) == enabled)
    if healthy is not None:
        query = query.where(col(WorkerHost.healthy) == healthy)
    if name is not None:
        query = query.where(col(WorkerHost.name) == name)
    return await _rows.page(session, query, limit, offset)


async def loads(session: AsyncSession, host_ids: list[int] | None = None) -> dict[int, HostLoad]:
    """Held slots and GPU ids per host (derived from the holds, never stored)."""
    return await holds.loads(session, host_ids)


async def active_counts(session: AsyncSession, host_ids: list[int]) -> dict[int, int]:
    """Runs in starting/running/cancelling per host."""
    if not host_ids:
        return {}
    query = (
        select(RUNS.c.worker_host_id, func.count())
        .where(RUNS.c.status.in_(ACTIVE_STATUSES), RUNS.c.worker_host_id.in_(host_ids))
        .group_by(RUNS.c.worker_host_id)
    )
    return {h: int(n) for h, n in (await session.exec(query)).all()}


def to_read(
    host: WorkerHost,
    load: HostLoad | None,
    active: int,
    stale_after: float,
    gpus: GpuState | None = None,
) -> HostRead:
    """The API view of a host: no secrets, derived fields computed now (`gpus`: its probe)."""
    load = load or HostLoad()
    now = clock.now()
    reasons = ineligible_reasons(host, now, stale_after)
    caps = host.caps()
    if load.held >= caps.max_concurrency:
        text = f"full: {load.held}/{caps.max_concurrency} slots held"
        if load.lingering:
            text += f" ({load.lingering} until their containers are known gone)"
        reasons.append(text)
    schedulable = not reasons
    gpu_reasons = gpu_run_reasons(caps, gpus, set(load.gpus_in_use))
    reasons += [f"GPU runs: {r}" for r in gpu_reasons]
    totals = GpuUse(units_of(caps, gpus), set(load.gpus_in_use)).totals()
    data = host.model_dump(
        exclude={"ssh_config", "tls_config", "capabilities", "placement_seq", "needs_sweep"}
    )
    return HostRead(
        **data,
        capabilities=caps,
        has_ssh_config=host.ssh_config is not None,
        has_tls_config=host.tls_config is not None,
        is_stale=is_stale(host.last_seen_at, now, stale_after),
        active_runs_count=active,
        held_slots=load.held,
        lingering_slots=load.lingering,
        gpus_in_use=sorted(load.gpus_in_use, key=lambda g: (len(g), g)),
        schedulable=schedulable,
        gpu_schedulable=schedulable and bool(caps.gpus) and not gpu_reasons,
        unschedulable_reasons=reasons,
        gpu_probe_status=gpus.status if gpus is not None else None,
        gpu_probe_error=gpus.error if gpus is not None else None,
        **totals,
    )


async def read_many(
    session: AsyncSession, hosts: list[WorkerHost], stale_after: float
) -> list[HostRead]:
    """The API views of several hosts, with two queries for all of their loads."""
    ids = [h.id for h in hosts if h.id is not None]
    found = await loads(session, ids)
    active = await active_counts(session, ids)
    gpus = await gpus_store.states(session, ids)
    return [
        to_read(h, found.get(h.id or 0), active.get(h.id or 0, 0), stale_after, gpus.get(h.id or 0))
        for h in hosts
    ]


async def pending_targeting(session: AsyncSession, host_id: int) -> int:
    """Pending runs pinned to this host (deleting it would strand them)."""
    query = select(func.count()).where(RUNS.c.target_host_id == host_id, RUNS.c.status == "pending")
    return (await session.exec(query)).one()


async def take_seq(session: AsyncSession, host_id: int, seq: int, placements: int) -> bool:
    """The placement guard: move the host's seq from `seq` on by `placements`, only if nobody
    moved it since the snapshot (False: the plan is stale for this host)."""
    stmt = (
        sa.update(WorkerHost)
        .where(col(WorkerHost.id) == host_id, col(WorkerHost.placement_seq) == seq)
        .values(placement_seq=seq + placements)
    )
    return bool((await session.exec(stmt)).rowcount == 1)


async def pin_host_key(db: Database, host_id: int, fingerprint: str) -> None:
    """Trust on first use: pin the SSH host key seen first (never overwrite a pinned one)."""
    async with db.session_scope() as session:
        stmt = (
            sa.update(WorkerHost)
            .where(col(WorkerHost.id) == host_id)
            .where(col(WorkerHost.ssh_host_key_fingerprint).is_(None))
            .values(ssh_host_key_fingerprint=fingerprint)
        )
        await session.exec(stmt)


async def bump_seq(session: AsyncSession, host_id: int) -> None:
    """Move the host's guard on: a placement planned before this change loses its guard."""
    stmt = (
        sa.update(WorkerHost)
        .where(col(WorkerHost.id) == host_id)
        .values(placement_seq=col(WorkerHost.placement_seq) + 1)
    )
    await session.exec(stmt)


async def delete_checked(session: AsyncSession, host: WorkerHost, force: bool = False) -> None:
    """Delete the host only if nothing holds a slot on it and no pending run is pinned to it,
    checked in the DELETE itself (a placement in between makes it a 409, never a leak)."""
    assert host.id is not None
    active = (await active_counts(session, [host.id])).get(host.id, 0)
    if active:
        raise HostBusy(f"worker host {host.id} has {active} active runs; drain it first")
    pinned = await pending_targeting(session, host.id)
    if pinned:
        raise HostBusy(
            f"worker host {host.id} has {pinned} pending runs pinned to it; cancel them first"
        )
    if force:
        await holds.release(session, await holds.lingering_on(session, host.id))
    held = await holds.count_on(session, host.id)
    if held:
        raise HostBusy(
            f"worker host {host.id} still holds {held} slots until its leftover containers are "
            "known gone (a sweep does that when it is reachable); use ?force=true for a host "
            "that is gone for good"
        )
    pinned_q = select(RUNS.c.target_host_id).where(
        RUNS.c.target_host_id == host.id, RUNS.c.status == "pending"
    )
    held_q = select(holds.SlotHold.id).where(col(holds.SlotHold.host_id) == host.id)
    stmt = sa.delete(WorkerHost).where(
        col(WorkerHost.id) == host.id,
        col(WorkerHost.placement_seq) == host.placement_seq,
        ~exists(pinned_q),
        ~exists(held_q),
    )
    if (await session.exec(stmt)).rowcount != 1:
        raise HostBusy(f"worker host {host.id} changed while it was being deleted; try again")
