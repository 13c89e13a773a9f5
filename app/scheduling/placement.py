"""Placement: a pure function from a snapshot of hosts and pending runs to a plan (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from app.hosts.eligibility import HostLoad, ineligible_reasons
from app.hosts.models import WorkerHost


@dataclass
class HostView:
    """One host as placement sees it: the row at snapshot time plus what is placed on it."""

    host: WorkerHost
    seq: int
    max_concurrency: int
    gpu_ids: list[str]
    active: int = 0  # slots held (lingering holds included)
    gpus_in_use: set[str] = field(default_factory=set)
    _eligible: dict[int, bool] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, host: WorkerHost, load: HostLoad | None) -> HostView:
        """Snapshot a host row and its load."""
        caps = host.caps()
        load = load or HostLoad()
        return cls(
            host=host,
            seq=host.placement_seq,
            max_concurrency=caps.max_concurrency,
            gpu_ids=caps.gpu_ids(),
            active=load.held,
            gpus_in_use=set(load.gpus_in_use),
        )

    def eligible(self, now: datetime, stale_after: float, gpu_need: int) -> bool:
        """Could take a run needing `gpu_need` GPUs now, ignoring how full it is (memoised)."""
        key = min(gpu_need, len(self.gpu_ids) + 1)  # every need above the host's GPUs is alike
        if key not in self._eligible:
            self._eligible[key] = not ineligible_reasons(self.host, now, stale_after, gpu_need)
        return self._eligible[key]

    @property
    def id(self) -> int:
        """The host's id."""
        assert self.host.id is not None
        return self.host.id

    def free_gpus(self) -> list[str]:
        """GPU ids no active run holds, lowest first."""
        free = [g for g in self.gpu_ids if g not in self.gpus_in_use]
        return sorted(free, key=lambda g: (len(g), g))

    def fits(self, gpu_need: int) -> bool:
        """A free slot and enough free GPUs right now."""
        return self.active < self.max_concurrency and len(self.free_gpus()) >= gpu_need

    def load_key(self) -> tuple[float, int, str]:
        """Least loaded first: share of slots used, then fewest active, then name."""
        return (self.active / self.max_concurrency, self.active, self.host.name)


@dataclass(frozen=True)
class Need:
    """What a pending run asks of a host."""

    run_id: int
    gpu_need: int = 0
    target_host_id: int | None = None


@dataclass(frozen=True)
class Placement:
    """One decision: this run goes to this host with these GPUs, if the host's seq still holds."""

    run_id: int
    host_id: int
    host_name: str
    seq: int
    gpu_ids: tuple[str, ...]


def candidates(
    need: Need, hosts: list[HostView], now: datetime, stale_after: float
) -> list[HostView]:
    """Hosts that could ever take the run now (eligible, ignoring how full they are)."""
    return [
        h
        for h in hosts
        if (need.target_host_id is None or h.id == need.target_host_id)
        and h.eligible(now, stale_after, need.gpu_need)
    ]


def plan(
    pending: list[Need], hosts: list[HostView], now: datetime, stale_after: float
) -> list[Placement]:
    """Place pending runs oldest first on the least-loaded eligible host with room.

    A run that cannot be placed reserves its candidate hosts for the rest of this plan, so a
    younger run never takes the slot an older one is waiting for. `hosts` is updated in place.
    """
    reserved: set[int] = set()
    out: list[Placement] = []
    usable = [h for h in hosts if h.eligible(now, stale_after, 0)]  # the rest take no run at all
    for need in pending:
        if all(h.id in reserved or h.active >= h.max_concurrency for h in usable):
            break  # nothing left to give: every later run waits anyway
        able = candidates(need, usable, now, stale_after)
        fits = [h for h in able if h.id not in reserved and h.fits(need.gpu_need)]
        if not fits:
            reserved.update(h.id for h in able)
            continue
        best = min(fits, key=HostView.load_key)
        gpus = tuple(best.free_gpus()[: need.gpu_need])
        out.append(Placement(need.run_id, best.id, best.host.name, best.seq, gpus))
        best.active += 1
        best.gpus_in_use.update(gpus)
        best.seq += 1  # the next placement on this host expects the bump this one makes
    return out
