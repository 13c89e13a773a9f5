"""Slot and GPU holds: what is taken of a host, from placement until its container is gone.

A host's load is the number of its holds (never a counter). A GPU is held by one row per
(host, device id), so the database itself refuses a second holder. A hold outlives its run's
use of the host when the run ended, or left the host, while its container may still exist on
the daemon (a failed stop, a lost host): it is then *lingering*, and only a sweep of the host
that found our unclaimed containers gone releases it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Column, ForeignKey, Integer, Text, delete, func, insert, update
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app import clock
from app.db import UTCDateTime
from app.hosts.eligibility import HostLoad


class SlotHold(SQLModel, table=True):
    """One of a host's max_concurrency slots, held for one run's container(s)."""

    __tablename__ = "slot_holds"

    id: int | None = SQLField(default=None, primary_key=True)
    host_id: int = SQLField(
        sa_column=Column(Integer, ForeignKey("worker_hosts.id"), nullable=False, index=True)
    )
    run_id: int = SQLField(
        sa_column=Column(Integer, ForeignKey("runs.id"), nullable=False, index=True)
    )
    lingering: bool = SQLField(default=False, description="The run no longer uses it.")
    reason: str | None = SQLField(default=None, sa_column=Column(Text))
    created_at: datetime = SQLField(default_factory=clock.now, sa_type=UTCDateTime)
    lingering_since: datetime | None = SQLField(default=None, sa_type=UTCDateTime)


class GpuHold(SQLModel, table=True):
    """One GPU of a host, held through a slot hold; the primary key makes it exclusive."""

    __tablename__ = "gpu_holds"

    host_id: int = SQLField(
        sa_column=Column(Integer, ForeignKey("worker_hosts.id"), primary_key=True)
    )
    device_id: str = SQLField(primary_key=True, max_length=200)
    hold_id: int = SQLField(
        sa_column=Column(Integer, ForeignKey("slot_holds.id"), nullable=False, index=True)
    )


async def loads(session: AsyncSession, host_ids: list[int] | None = None) -> dict[int, HostLoad]:
    """Held slots (lingering ones counted apart too) and held GPU ids per host."""
    held = select(SlotHold.host_id, SlotHold.lingering, func.count()).group_by(
        col(SlotHold.host_id), col(SlotHold.lingering)
    )
    gpus = select(GpuHold.host_id, GpuHold.device_id)
    if host_ids is not None:
        held = held.where(col(SlotHold.host_id).in_(host_ids))
        gpus = gpus.where(col(GpuHold.host_id).in_(host_ids))
    out: dict[int, HostLoad] = {}
    for host_id, lingering, n in (await session.exec(held)).all():
        load = out.setdefault(host_id, HostLoad())
        load.held += n
        if lingering:
            load.lingering += n
    for host_id, device_id in (await session.exec(gpus)).all():
        out.setdefault(host_id, HostLoad()).gpus_in_use.add(device_id)
    return out


async def take(session: AsyncSession, run_id: int, host_id: int, gpu_ids: Iterable[str]) -> int:
    """Hold a slot (and these GPUs) of the host for the run; IntegrityError if a GPU is taken."""
    hold = SlotHold(run_id=run_id, host_id=host_id)
    session.add(hold)
    await session.flush()
    assert hold.id is not None
    for device in gpu_ids:
        session.add(GpuHold(host_id=host_id, device_id=device, hold_id=hold.id))
    await session.flush()
    return hold.id


async def take_many(
    session: AsyncSession, placements: Iterable[tuple[int, int, Iterable[str]]]
) -> None:
    """Holds for several (run, host, GPU ids) at once: one INSERT for those without GPUs."""
    plain: list[tuple[int, int, list[str]]] = []
    gpu: list[tuple[int, int, list[str]]] = []
    for run_id, host_id, gpu_ids in placements:
        (gpu if gpu_ids else plain).append((run_id, host_id, list(gpu_ids)))
    if plain:
        now = clock.now()
        rows = [
            {"run_id": r, "host_id": h, "lingering": False, "created_at": now} for r, h, _ in plain
        ]
        await session.exec(insert(SlotHold).values(rows))
    for run_id, host_id, gpu_ids in gpu:
        await take(session, run_id, host_id, gpu_ids)


async def _delete(session: AsyncSession, hold_ids: list[int]) -> None:
    if not hold_ids:
        return
    await session.exec(delete(GpuHold).where(col(GpuHold.hold_id).in_(hold_ids)))
    await session.exec(delete(SlotHold).where(col(SlotHold.id).in_(hold_ids)))


async def current(session: AsyncSession, run_id: int) -> list[int]:
    """The run's hold(s) it still uses (not lingering)."""
    query = select(SlotHold.id).where(col(SlotHold.run_id) == run_id, ~col(SlotHold.lingering))
    return [i for i in (await session.exec(query)).all() if i is not None]


async def release_run(session: AsyncSession, run_id: int) -> None:
    """The run's container is known gone: free the slot and GPUs it still uses."""
    await _delete(session, await current(session, run_id))


async def linger_run(session: AsyncSession, run_id: int, reason: str) -> None:
    """The run stops using its hold, but its container may still exist: keep the hold."""
    stmt = (
        update(SlotHold)
        .where(col(SlotHold.run_id) == run_id, ~col(SlotHold.lingering))
        .values(lingering=True, reason=reason, lingering_since=clock.now())
    )
    await session.exec(stmt)


async def lingering_on(session: AsyncSession, host_id: int) -> list[int]:
    """Ids of the lingering holds on a host."""
    query = select(SlotHold.id).where(col(SlotHold.host_id) == host_id, col(SlotHold.lingering))
    return [i for i in (await session.exec(query)).all() if i is not None]


async def release(session: AsyncSession, hold_ids: list[int]) -> None:
    """Free lingering holds whose containers a sweep found gone."""
    await _delete(session, hold_ids)


async def count_on(session: AsyncSession, host_id: int) -> int:
    """Holds (used or lingering) on a host."""
    query = select(func.count()).select_from(SlotHold).where(col(SlotHold.host_id) == host_id)
    return int((await session.exec(query)).one())
