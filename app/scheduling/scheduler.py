"""Scheduler: places pending runs (guarded writes) and keeps one Supervisor per active run.

Two loops: placement (on every wake-up, at least every interval) and leases (their own loop,
never behind the placement lock: renew our leases on the database's clock, pass on cancels
made through other processes, let go of runs another process took, adopt runs nobody drives).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable, Coroutine
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from app import clock, logs
from app.deps import AppState
from app.gpus.offer import GpuState
from app.hosts import holds
from app.hosts import store as hosts_store
from app.hosts.eligibility import HostLoad
from app.runs import store
from app.runs.models import ACTIVE, Run
from app.scheduling import ownership
from app.scheduling.placement import Need, Placement, plan
from app.scheduling.supervisor import Supervisor
from app.scheduling.view import FleetView

log = logging.getLogger("dockfleet.scheduler")
REPLANS = 5


class Scheduler:
    """Starts pending runs as soon as a slot frees, oldest first."""

    def __init__(self, state: AppState) -> None:
        self.state = state
        self.interval = state.settings.scheduler_interval_seconds
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self.supervisors: dict[int, tuple[Supervisor, asyncio.Task[None]]] = {}
        self.me = ownership.new_owner_id()
        self.lease = state.settings.lease_seconds
        self.view = FleetView()
        self.refresh_every = state.settings.view_refresh_seconds
        self._waiting: dict[int, list[asyncio.Future[Placement | None]]] = {}

    def wake(self) -> None:
        """Ask for a placement pass soon (a slot freed, a host came back, a run was added)."""
        self._wake.set()

    def known(self) -> tuple[list[Any], dict[int, HostLoad]] | None:
        """The hosts and loads as last read (None before the first read)."""
        if not self.view.read_at:
            return None
        return list(self.view.hosts.values()), self.view.loads

    def known_gpus(self) -> dict[int, GpuState] | None:
        """The probed hosts' GPUs as last read (None while a probe's write is not read yet)."""
        return None if self.view.gpus_dirty else self.view.gpus

    def submit(
        self,
        run_id: int,
        gpu_need: int,
        target_host_id: int | None,
        gpu_memory_mb: int = 0,
        gpu_name: str | None = None,
    ) -> asyncio.Future[Placement | None]:
        """A run just launched here: place it in the next pass; the future says where (None:
        it stays pending). Nothing waits for the pass itself: launches never queue behind it."""
        need = Need(run_id, gpu_need, target_host_id, False, gpu_memory_mb, gpu_name)
        self.view.pending[need.run_id] = need
        future: asyncio.Future[Placement | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(need.run_id, []).append(future)
        self.wake()
        return future

    def host_changed(self, host_id: int) -> None:
        """A host's row or holds changed (admin change, health flip, sweep, a finished run)."""
        self.view.dirty.add(host_id)
        self.wake()

    def gpus_changed(self, host_id: int) -> None:
        """A probe wrote the host's GPUs (and moved its guard): read both before the next pass."""
        self.view.gpus_dirty.add(host_id)
        self.host_changed(host_id)

    def run_left(self, run_id: int, host_id: int | None, requeued: Need | None) -> None:
        """A supervisor stopped driving a run: its host's holds changed; a re-queued run is
        pending again."""
        if host_id is not None:
            self.view.dirty.add(host_id)
        if requeued is not None:
            self.view.pending[requeued.run_id] = requeued
        self.wake()

    def forget(self, run_id: int) -> None:
        """A pending run was cancelled: it leaves the view."""
        self.view.pending.pop(run_id, None)

    async def _refresh(self, full: bool = False) -> None:
        now = asyncio.get_running_loop().time()
        if full or now - self.view.read_at >= self.refresh_every:
            async with self.state.db.sessions() as session:
                await self.view.read_all(session, now)
        elif self.view.dirty:
            async with self.state.db.sessions() as session:
                await self.view.read_hosts(session, set(self.view.dirty))

    async def place(self) -> list[Placement]:
        """One placement pass over everything pending; re-plans (after reading the hosts that
        moved) when a guard shows another writer moved first."""
        async with self._lock:
            considered = set(self._waiting)
            applied: list[Placement] = []
            try:
                for attempt in range(REPLANS):
                    decisions = await self._plan(full=False)
                    if not decisions:
                        break
                    done, lost = await self._apply(decisions)
                    applied += done
                    if not lost:
                        break
                    if attempt >= 1:  # lost twice: read everything again
                        self.view.read_at = 0
            finally:
                self._answer(considered, applied)
            return applied

    def _answer(self, considered: set[int], applied: list[Placement]) -> None:
        placed = {p.run_id: p for p in applied}
        for run_id in considered:
            for future in self._waiting.pop(run_id, []):
                if not future.done():
                    future.set_result(placed.get(run_id))

    async def _plan(self, full: bool = True) -> list[Placement]:
        """Plan from the view (read again first when it is old, or `full`)."""
        await self._refresh(full=full)
        needs = sorted(self.view.pending.values(), key=lambda n: n.run_id)
        settle = [n.run_id for n in needs if n.cancel_requested]
        if settle:  # a pending run with a cancel asked for is cancelled, never placed
            async with self.state.db.session_scope() as session:
                await store.cancel_pending(session, settle)
            for run_id in settle:
                self.view.pending.pop(run_id, None)
            needs = [n for n in needs if not n.cancel_requested]
        if not needs:
            return []
        stale_after = self.state.settings.stale_after_seconds
        return plan(needs, self.view.host_views(), clock.now(), stale_after)

    async def _apply(self, decisions: list[Placement]) -> tuple[list[Placement], bool]:
        """Apply a plan in one transaction, one guard per host; returns (applied, lost).

        A host whose guard lost (another writer placed there, or an admin changed it) has its
        placements dropped and is read again; a run that is no longer pending (placed or
        cancelled elsewhere) is skipped and never blocks the others.
        """
        by_host: dict[int, list[Placement]] = defaultdict(list)
        for p in decisions:
            by_host[p.host_id].append(p)
        applied: list[Placement] = []
        lost: set[int] = set()
        gone: set[int] = set()
        try:
            async with self.state.db.session_scope() as session:
                now = await ownership.db_now(session)
                for host_id, group in by_host.items():
                    if not await hosts_store.take_seq(session, host_id, group[0].seq, len(group)):
                        lost.add(host_id)
                        continue
                    placed = await store.place_group(session, group, self.me, now, self.lease)
                    gone.update(p.run_id for p in group if p.run_id not in placed)
                    ok = [p for p in group if p.run_id in placed]
                    await holds.take_many(session, [(p.run_id, p.host_id, p.gpu_ids) for p in ok])
                    applied += ok
        except IntegrityError:  # a GPU already held: the snapshot was stale, read it again
            log.info("placement lost a GPU hold race; re-planning")
            self.view.read_at = 0
            return [], True
        for run_id in gone:
            self.view.pending.pop(run_id, None)
        for p in applied:
            self.view.pending.pop(p.run_id, None)
            self.view.taken(p.host_id, p.gpu_ids)
            self.supervise(p.run_id)
            log.debug("run %s placed on %s gpus=%s", p.run_id, p.host_name, list(p.gpu_ids))
        if applied:
            log.info("placed %s runs on %s hosts", len(applied), len(by_host) - len(lost))
        if lost:
            self.view.dirty |= lost
            async with self.state.db.sessions() as session:
                await self.view.read_hosts(session, lost)
        return applied, bool(lost)

    def supervise(self, run_id: int) -> None:
        """Start a Supervisor for the run unless one is already driving it."""
        if run_id in self.supervisors:
            return
        sup = Supervisor(self.state, run_id, self.me, self.run_left)
        task = asyncio.get_running_loop().create_task(sup.drive(), name=f"run-{run_id}")
        self.supervisors[run_id] = (sup, task)
        task.add_done_callback(lambda _t: self.supervisors.pop(run_id, None))

    def host_trouble(self, host_id: int) -> None:
        """A check of the host failed: its supervisors look at their containers now."""
        for sup, _task in self.supervisors.values():
            if sup.host_id == host_id:
                sup.poke.set()

    def request_cancel(self, run_id: int) -> asyncio.Event | None:
        """Tell the run's Supervisor to stop now; the event it sets once the cancel has an
        answer, or None if no Supervisor here drives the run."""
        entry = self.supervisors.get(run_id)
        if entry is None:
            return None
        entry[0].cancel.set()
        return entry[0].settled

    async def adopt(self) -> list[int]:
        """Supervise active runs nobody drives: unowned, ours, or whose owner died or lapsed."""
        async with self.state.db.sessions() as session:
            query = select(Run.id, Run.supervisor).where(
                col(Run.status).in_([s.value for s in ACTIVE])
            )
            active = (await session.exec(query)).all()
        adopted = []
        for run_id, owner in active:
            if run_id is None or run_id in self.supervisors:
                continue
            async with self.state.db.session_scope() as session:
                taken = await ownership.claim(session, run_id, self.me, owner, self.lease)
            if taken:
                if owner not in (None, self.me):
                    log.info("run %s adopted from %s", run_id, owner)
                adopted.append(run_id)
                self.supervise(run_id)
        return adopted

    async def keep_leases(self) -> None:
        """Renew our leases; pass on cancels made elsewhere; let go of runs taken over."""
        async with self.state.db.session_scope() as session:
            await ownership.renew(session, self.me, self.lease)
            query = select(Run.id, Run.supervisor, Run.cancel_requested).where(
                col(Run.id).in_(list(self.supervisors))
            )
            rows = (await session.exec(query)).all()
        for run_id, owner, cancel in rows:
            entry = self.supervisors.get(run_id) if run_id is not None else None
            if entry is None:
                continue
            if owner not in (None, self.me):
                log.warning("run %s is now driven by %s; letting go", run_id, owner)
                entry[1].cancel()
            elif cancel:
                entry[0].cancel.set()

    async def tick(self) -> list[Placement]:
        """Adopt runs nobody drives, then place what can be placed (what tests call)."""
        await self.adopt()
        return await self.place()

    async def _placing(self) -> None:
        while True:
            # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancel that arrives
            # as the event is set (a wake-up during stop()), and the loop outlived stop().
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.place()
            except Exception:
                logs.pass_failed(log, "scheduler pass failed")

    async def _leasing(self) -> None:
        while True:
            try:
                await self.keep_leases()
                await self.adopt()
            except Exception:
                logs.pass_failed(log, "lease renewal failed")
            await asyncio.sleep(self.lease / 3)

    def start(self) -> None:
        """Start the loops."""
        if not self._tasks:
            loop = asyncio.get_running_loop()
            loops: list[tuple[str, Callable[[], Coroutine[Any, Any, None]]]] = [
                ("scheduler", self._placing),
                ("leases", self._leasing),
            ]
            self._tasks = [loop.create_task(fn(), name=name) for name, fn in loops]

    async def stop(self) -> None:
        """Stop the loops and every Supervisor (their containers keep running; we adopt later)."""
        tasks = [t for _, t in self.supervisors.values()] + self._tasks
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks = []
        self.supervisors.clear()
        try:
            async with self.state.db.session_scope() as session:
                await ownership.release(session, self.me)
        except Exception:  # the leases lapse by themselves
            log.warning("could not release run leases at shutdown", exc_info=True)
