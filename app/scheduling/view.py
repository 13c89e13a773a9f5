"""FleetView: the scheduler's in-memory picture of hosts, their holds and the pending runs.

Read from the database in a few lean queries (columns, not ORM objects) — fully on a timer and
after a lost guard, per host when one changed (placement, a finished run, an admin change, a
health flip) — so a placement pass plans from memory instead of re-reading every host and every
pending run. The view may lag the database (another replica, a cancel elsewhere): the guard
and the conditional run update keep every decision safe, and a stale decision only re-plans.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.gpus import store as gpus_store
from app.gpus.offer import GpuState
from app.hosts import holds
from app.hosts.eligibility import HostLoad
from app.hosts.models import Capabilities, WorkerHost
from app.runs.models import Run, RunStatus
from app.scheduling.placement import HostView, Need

_HOST_COLUMNS = (
    WorkerHost.id,
    WorkerHost.name,
    WorkerHost.enabled,
    WorkerHost.draining,
    WorkerHost.healthy,
    WorkerHost.last_error,
    WorkerHost.last_seen_at,
    WorkerHost.capabilities,
    WorkerHost.placement_seq,
)


@dataclass
class HostRow:
    """What placement needs of a host (the fields eligibility reads, plus the guard)."""

    id: int
    name: str
    enabled: bool
    draining: bool
    healthy: bool
    last_error: str | None
    last_seen_at: datetime | None
    capabilities: dict[str, Any]
    placement_seq: int
    _caps: Capabilities | None = field(default=None, repr=False)

    def caps(self) -> Capabilities:
        """The capabilities as a model (parsed once)."""
        if self._caps is None:
            self._caps = Capabilities.model_validate(self.capabilities or {}, strict=False)
        return self._caps


@dataclass
class FleetView:
    """Hosts, loads and pending needs, as last read."""

    hosts: dict[int, HostRow] = field(default_factory=dict)
    loads: dict[int, HostLoad] = field(default_factory=dict)
    pending: dict[int, Need] = field(default_factory=dict)
    gpus: dict[int, GpuState] = field(default_factory=dict)  # probed hosts' GPUs
    gpus_dirty: set[int] = field(default_factory=set)  # hosts a probe wrote since (read again)
    dirty: set[int] = field(default_factory=set)  # hosts to read again before the next pass
    read_at: float = 0.0  # loop time of the last full read

    async def _host_rows(self, session: AsyncSession, ids: Iterable[int] | None) -> None:
        query = select(*_HOST_COLUMNS)  # type: ignore[call-overload]
        if ids is not None:
            query = query.where(col(WorkerHost.id).in_(list(ids)))
        for row in (await session.exec(query)).all():
            self.hosts[row[0]] = HostRow(*row)

    async def read_all(self, session: AsyncSession, now: float) -> None:
        """Everything again (hosts before their loads: a later placement can only lose)."""
        self.hosts.clear()
        await self._host_rows(session, None)
        self.loads = await holds.loads(session)
        self.gpus = await gpus_store.states(session)
        self.gpus_dirty.clear()
        query = select(  # type: ignore[call-overload]
            Run.id,
            Run.gpu_need,
            Run.target_host_id,
            Run.cancel_requested,
            Run.gpu_memory_mb,
            Run.gpu_name,
        )
        query = query.where(col(Run.status) == RunStatus.pending.value).order_by(col(Run.id))
        self.pending = {
            rid: Need(rid, gpu, target, cancel, memory or 0, name)
            for rid, gpu, target, cancel, memory, name in (await session.exec(query)).all()
            if rid is not None
        }
        self.dirty.clear()
        self.read_at = now

    async def read_hosts(self, session: AsyncSession, ids: set[int]) -> None:
        """These hosts and their loads again (a host that is gone leaves the view)."""
        for host_id in ids:
            self.hosts.pop(host_id, None)
            self.loads.pop(host_id, None)
        await self._host_rows(session, ids)
        self.loads.update(await holds.loads(session, list(ids)))
        probed = (ids & self.gpus_dirty) | {i for i in ids if i not in self.hosts}
        if probed:  # GPUs change only when a probe writes them (or the host is gone)
            for host_id in probed:
                self.gpus.pop(host_id, None)
            self.gpus.update(await gpus_store.states(session, list(probed & self.hosts.keys())))
            self.gpus_dirty -= probed
        self.dirty -= ids

    def host_views(self) -> list[HostView]:
        """Fresh planning views (plan() changes them) of every host."""
        return [
            HostView.of(h, self.loads.get(h.id), self.gpus.get(h.id)) for h in self.hosts.values()
        ]

    def taken(self, host_id: int, gpu_ids: Iterable[str]) -> None:
        """A placement applied here: one more hold (and these GPUs) on the host."""
        load = self.loads.setdefault(host_id, HostLoad())
        load.held += 1
        load.gpus_in_use.update(gpu_ids)
        if host_id in self.hosts:
            self.hosts[host_id].placement_seq += 1
