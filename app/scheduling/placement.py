"""Placement: a pure function from a snapshot of hosts and pending runs to a plan (no I/O)."""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.hosts.eligibility import HostLoad, ineligible_reasons


@dataclass
class HostView:
    """One host as placement sees it: the row at snapshot time plus what is placed on it."""

    host: Any  # a WorkerHost row, or the view's lean HostRow (the same attributes)
    seq: int
    max_concurrency: int
    gpu_ids: list[str]
    active: int = 0  # slots held (lingering holds included)
    id: int = 0
    name: str = ""
    gpus_in_use: set[str] = field(default_factory=set)
    _eligible: dict[int, bool] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, host: Any, load: HostLoad | None) -> HostView:
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
            id=host.id,
            name=host.name,
        )

    def eligible(self, now: datetime, stale_after: float, gpu_need: int) -> bool:
        """Could take a run needing `gpu_need` GPUs now, ignoring how full it is (memoised)."""
        key = min(gpu_need, len(self.gpu_ids) + 1)  # every need above the host's GPUs is alike
        if key not in self._eligible:
            self._eligible[key] = not ineligible_reasons(self.host, now, stale_after, gpu_need)
        return self._eligible[key]

    def free_gpus(self) -> list[str]:
        """GPU ids no active run holds, lowest first."""
        free = [g for g in self.gpu_ids if g not in self.gpus_in_use]
        return sorted(free, key=lambda g: (len(g), g))

    def fits(self, gpu_need: int) -> bool:
        """A free slot and enough free GPUs right now."""
        if self.active >= self.max_concurrency:
            return False
        return not gpu_need or len(self.gpu_ids) - len(self.gpus_in_use) >= gpu_need

    def load_key(self) -> tuple[float, int, str]:
        """Least loaded first: share of slots used, then fewest active, then name."""
        return (self.active / self.max_concurrency, self.active, self.name)


@dataclass(frozen=True)
class Need:
    """What a pending run asks of a host."""

    run_id: int
    gpu_need: int = 0
    target_host_id: int | None = None
    cancel_requested: bool = False


@dataclass(frozen=True)
class Placement:
    """One decision: this run goes to this host with these GPUs, if the host's seq still holds."""

    run_id: int
    host_id: int
    host_name: str
    seq: int
    gpu_ids: tuple[str, ...]


def _fitting(need: Need, able: list[HostView], reserved: set[int]) -> HostView | None:
    fits = [h for h in able if h.id not in reserved and h.fits(need.gpu_need)]
    return min(fits, key=HostView.load_key) if fits else None


def plan(
    pending: list[Need], hosts: list[HostView], now: datetime, stale_after: float
) -> list[Placement]:
    """Place pending runs oldest first on the least-loaded eligible host with room.

    A run that cannot be placed reserves its candidate hosts for the rest of this plan, so a
    younger run never takes the slot an older one is waiting for. `hosts` is updated in place.
    Runs that need no GPUs and no particular host (the common case) take the top of a heap
    ordered by load; the others look at their (few) candidates.
    """
    reserved: set[int] = set()
    out: list[Placement] = []
    usable = [h for h in hosts if h.eligible(now, stale_after, 0)]  # the rest take no run at all
    by_id = {h.id: h for h in usable}
    room = sum(max(0, h.max_concurrency - h.active) for h in usable)
    heap = [(h.load_key(), h.id) for h in usable if h.active < h.max_concurrency]
    heapq.heapify(heap)
    gpu_able: dict[int, list[HostView]] = {}
    hopeless: set[tuple[int, int | None]] = set()  # (gpu need, target) nothing fits any more

    def reserve(able: list[HostView]) -> None:
        nonlocal room
        for h in able:
            if h.id not in reserved:
                reserved.add(h.id)
                room -= max(0, h.max_concurrency - h.active)

    for need in pending:
        if room <= 0:
            break  # nothing left to give: every later run waits anyway
        if need.target_host_id is not None or need.gpu_need:
            kind = (need.gpu_need, need.target_host_id)
            if kind in hopeless:  # hosts only fill up within a pass: it cannot fit either
                continue
        if need.target_host_id is not None:
            target = by_id.get(need.target_host_id)
            able = [target] if target and target.eligible(now, stale_after, need.gpu_need) else []
            best = _fitting(need, able, reserved)
        elif need.gpu_need:
            able = gpu_able.get(need.gpu_need) or []
            if need.gpu_need not in gpu_able:
                able = gpu_able[need.gpu_need] = [
                    h for h in usable if h.eligible(now, stale_after, need.gpu_need)
                ]
            best = _fitting(need, able, reserved)
        else:
            able, best = usable, None
            while heap:
                key, host_id = heap[0]
                h = by_id[host_id]
                if host_id in reserved or h.active >= h.max_concurrency or key != h.load_key():
                    heapq.heappop(heap)  # full, reserved, or an older entry of a changed host
                    continue
                best = h
                break
        if best is None:
            reserve(able)
            hopeless.add((need.gpu_need, need.target_host_id))
            continue
        gpus = tuple(best.free_gpus()[: need.gpu_need])
        out.append(Placement(need.run_id, best.id, best.name, best.seq, gpus))
        best.active += 1
        best.gpus_in_use.update(gpus)
        best.seq += 1  # the next placement on this host expects the bump this one makes
        room -= 1
        if best.active < best.max_concurrency:
            heapq.heappush(heap, (best.load_key(), best.id))
    return out
