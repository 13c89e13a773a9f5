"""Queries and writes for worker hosts; callers own the transaction (we only flush)."""

from __future__ import annotations

from sqlalchemy import column, func, table
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app import clock
from app.hosts.eligibility import HostLoad, ineligible_reasons, is_stale
from app.hosts.models import HostRead, WorkerHost
from app.named import NamedStore

# The runs table, read by name so that imports keep flowing one way (runs imports hosts).
RUNS = table(
    "runs",
    column("worker_host_id"),
    column("status"),
    column("gpu_device_ids"),
    column("target_host_id"),
)
ACTIVE_STATUSES = ("starting", "running")


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
    """Active runs and held GPU ids per host (derived from the runs, never stored)."""
    query = select(RUNS.c.worker_host_id, RUNS.c.gpu_device_ids).where(
        RUNS.c.status.in_(ACTIVE_STATUSES), RUNS.c.worker_host_id.is_not(None)
    )
    if host_ids is not None:
        query = query.where(RUNS.c.worker_host_id.in_(host_ids))
    out: dict[int, HostLoad] = {}
    for host_id, gpu_ids in (await session.exec(query)).all():
        load = out.setdefault(host_id, HostLoad())
        load.active += 1
        load.gpus_in_use.extend(gpu_ids or [])
    return out


def to_read(host: WorkerHost, load: HostLoad | None, stale_after: float) -> HostRead:
    """The API view of a host: no secrets, derived fields computed now."""
    load = load or HostLoad()
    now = clock.now()
    reasons = ineligible_reasons(host, now, stale_after)
    caps = host.caps()
    if load.active >= caps.max_concurrency:
        reasons.append(f"full: {load.active}/{caps.max_concurrency} runs")
    data = host.model_dump(exclude={"ssh_config", "tls_config", "capabilities", "placement_seq"})
    return HostRead(
        **data,
        capabilities=caps,
        has_ssh_config=host.ssh_config is not None,
        has_tls_config=host.tls_config is not None,
        is_stale=is_stale(host.last_seen_at, now, stale_after),
        active_runs_count=load.active,
        gpus_in_use=sorted(load.gpus_in_use),
        schedulable=not reasons,
        unschedulable_reasons=reasons,
    )


async def pending_targeting(session: AsyncSession, host_id: int) -> int:
    """Pending runs pinned to this host (deleting it would strand them)."""
    query = select(func.count()).where(RUNS.c.target_host_id == host_id, RUNS.c.status == "pending")
    return (await session.exec(query)).one()
