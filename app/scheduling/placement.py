"""Placement: a pure function from a snapshot of hosts and pending runs to a plan (no I/O)."""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.gpus.offer import GpuAsk, GpuState, GpuUnit, GpuUse, units_of
from app.hosts.eligibility import HostLoad, ineligible_reasons


@dataclass(eq=False)  # compared by identity: host rows field by field would be slow
class HostView:
    """One host as placement sees it: the row at snapshot time plus what is placed on it."""

    host: Any  # a WorkerHost row, or the view's lean HostRow (the same attributes)
    seq: int
    max_concurrency: int
    gpus: list[GpuUnit]  # discovered GPUs (missing and held-out ones included) or declared ids
    active: int = 0  # slots held (lingering holds included)
    id: int = 0
    name: str = ""
    gpus_in_use: set[str] = field(default_factory=set)
    gpu_state: GpuState | None = None
    _eligible: dict[Any, bool] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, host: Any, load: HostLoad | None, gpus: GpuState | None = None) -> HostView:
        """Snapshot a host row, its load and its discovered GPUs (None: never probed)."""
        caps = host.caps()
        load = load or HostLoad()
        return cls(
            host=host,
            seq=host.placement_seq,
            max_concurrency=caps.max_concurrency,
            gpus=units_of(caps, gpus),
            active=load.held,
            gpus_in_use=set(load.gpus_in_use),
            id=host.id,
            name=host.name,
            gpu_state=gpus,
        )

    @property
    def declared(self) -> bool:
        """Its GPUs are the declared ids (never discovered)."""
        return self.gpu_state is None or not self.gpu_state.discovered

    @property
    def gpu_ids(self) -> list[str]:
        """The ids of the GPUs the host knows."""
        return [u.id for u in self.gpus]

    def eligible(self, now: datetime, stale_after: float, ask: GpuAsk | int) -> bool:
        """Could take a run asking this of GPUs now, ignoring how full it is (memoised)."""
        if isinstance(ask, int):
            ask = GpuAsk(ask)
        key: Any = ask
        if not ask.filtered:  # every count above the host's GPUs is alike
            key = min(ask.count, len(self.gpus) + 1)
        if key not in self._eligible:
            self._eligible[key] = not ineligible_reasons(
                self.host, now, stale_after, ask.count, self.gpu_state, ask
            )
        return self._eligible[key]

    def free_gpus(self, ask: GpuAsk | None = None) -> list[str]:
        """Ids of usable GPUs no active run holds that match the ask: smallest card first."""
        use = GpuUse(self.gpus, self.gpus_in_use)
        return [u.id for u in use.free(ask or GpuAsk(1))]

    def fits(self, ask: GpuAsk | int) -> bool:
        """A free slot and enough free (usable, matching) GPUs right now."""
        if self.active >= self.max_concurrency:
            return False
        if isinstance(ask, int):
            ask = GpuAsk(ask)
        if not ask.count:
            return True
        if not ask.filtered and self.declared:  # ids are indexes: arithmetic is exact
            return len(self.gpus) - len(self.gpus_in_use) >= ask.count
        return len(self.free_gpus(ask)) >= ask.count

    def hold_back(self, ask: GpuAsk) -> bool:
        """An older GPU run waits here: keep one slot and the GPUs it could use out of the rest
        of the plan (False: no slot to keep, the whole host is reserved instead). Younger runs
        may still take the other slots and cards: a run waiting for a busy card never blocks
        a whole host."""
        if self.active >= self.max_concurrency:
            return False
        self.active += 1
        for unit in self.gpus:
            if ask.matches(unit):
                self.gpus_in_use.update(unit.keys())
        return True

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
    gpu_memory_mb: int = 0
    gpu_name: str | None = None

    @property
    def ask(self) -> GpuAsk:
        """What it asks of a host's GPUs."""
        return GpuAsk(self.gpu_need, self.gpu_memory_mb, self.gpu_name)


@dataclass(frozen=True)
class Placement:
    """One decision: this run goes to this host with these GPUs, if the host's seq still holds."""

    run_id: int
    host_id: int
    host_name: str
    seq: int
    gpu_ids: tuple[str, ...]


def _fitting(need: Need, able: list[HostView], reserved: set[int]) -> HostView | None:
    ask = need.ask
    fits = [h for h in able if h.id not in reserved and h.fits(ask)]
    return min(fits, key=HostView.load_key) if fits else None


def plan(
    pending: list[Need], hosts: list[HostView], now: datetime, stale_after: float
) -> list[Placement]:
    """Place pending runs oldest first on the least-loaded eligible host with room.

    A run that cannot be placed reserves its candidate hosts for the rest of this plan, so a
    younger run never takes the slot an older one is waiting for (a GPU run keeps one slot and
    the GPUs it asks for, where a slot is free, instead of the whole host). `hosts` is updated
    in place.
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
    gpu_able: dict[GpuAsk, list[HostView]] = {}
    hopeless: set[tuple[GpuAsk, int | None]] = set()  # (GPU ask, target) nothing fits any more

    def reserve(able: list[HostView]) -> None:
        nonlocal room
        for h in able:
            if h.id not in reserved:
                reserved.add(h.id)
                room -= max(0, h.max_concurrency - h.active)

    for need in pending:
        if room <= 0:
            break  # nothing left to give: every later run waits anyway
        ask = need.ask
        if need.target_host_id is not None or need.gpu_need:
            kind = (ask, need.target_host_id)
            if kind in hopeless:  # hosts only fill up within a pass: it cannot fit either
                continue
        if need.target_host_id is not None:
            target = by_id.get(need.target_host_id)
            able = [target] if target and target.eligible(now, stale_after, ask) else []
            best = _fitting(need, able, reserved)
        elif need.gpu_need:
            able = gpu_able.get(ask) or []
            if ask not in gpu_able:
                able = gpu_able[ask] = [h for h in usable if h.eligible(now, stale_after, ask)]
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
            if need.gpu_need:
                open_ = [h for h in able if h.id not in reserved]
                kept = [h for h in open_ if h.hold_back(ask)]
                kept_ids = {h.id for h in kept}
                room -= len(kept)
                reserve([h for h in open_ if h.id not in kept_ids])
                for h in kept:
                    if h.active < h.max_concurrency:
                        heapq.heappush(heap, (h.load_key(), h.id))
            else:
                reserve(able)
            hopeless.add((ask, need.target_host_id))
            continue
        gpus = tuple(best.free_gpus(ask)[: need.gpu_need]) if need.gpu_need else ()
        out.append(Placement(need.run_id, best.id, best.name, best.seq, gpus))
        best.active += 1
        best.gpus_in_use.update(gpus)
        best.seq += 1  # the next placement on this host expects the bump this one makes
        room -= 1
        if best.active < best.max_concurrency:
            heapq.heappush(heap, (best.load_key(), best.id))
    return out
