"""Scheduler: places pending runs (guarded writes) and keeps one Supervisor per active run."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from sqlalchemy import update
from sqlmodel import col, select

from app import clock
from app.deps import AppState
from app.hosts import store as hosts_store
from app.hosts.models import WorkerHost
from app.runs import store
from app.runs.models import ACTIVE, Run, RunStatus
from app.scheduling import ownership
from app.scheduling.placement import HostView, Need, Placement, plan
from app.scheduling.supervisor import Supervisor

log = logging.getLogger("dockfleet.scheduler")
REPLANS = 5


class Scheduler:
    """Starts pending runs as soon as a slot frees, oldest first."""

    def __init__(self, state: AppState) -> None:
        self.state = state
        self.interval = state.settings.scheduler_interval_seconds
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.supervisors: dict[int, tuple[Supervisor, asyncio.Task[None]]] = {}
        self.me = ownership.new_owner_id()
        self.lease = state.settings.lease_seconds
        self._renewed_at = 0.0

    def wake(self) -> None:
        """Ask for a placement pass soon (a slot freed, a host came back, a run was added)."""
        self._wake.set()

    async def place(self) -> list[Placement]:
        """One placement pass; re-plans when a guard shows another writer moved first."""
        async with self._lock:
            applied: list[Placement] = []
            for _ in range(REPLANS):
                decisions = await self._plan()
                if not decisions:
                    break
                lost = False
                for decision in decisions:
                    if await self._apply(decision):
                        applied.append(decision)
                        self.supervise(decision.run_id)
                    else:
                        lost = True
                        break
                if not lost:
                    break
            return applied

    async def _plan(self) -> list[Placement]:
        async with self.state.db.sessions() as session:
            # Read the hosts (and their guard seq) before the loads: any placement committed
            # after this read bumps a seq, so a stale snapshot can only lose its guard.
            hosts = list((await session.exec(select(WorkerHost))).all())
            loads = await hosts_store.loads(session)
            pending = await store.runs_in(session, {RunStatus.pending})
        if not pending:
            return []
        views = [HostView.of(h, loads.get(h.id or 0)) for h in hosts]
        needs = [Need(r.id or 0, r.gpu_need, r.target_host_id) for r in pending]
        return plan(needs, views, clock.now(), self.state.settings.stale_after_seconds)

    async def _apply(self, p: Placement) -> bool:
        """Guarded write: the host's seq must be what we planned against, the run still pending."""
        async with self.state.db.sessions() as session:
            bump = (
                update(WorkerHost)
                .where(col(WorkerHost.id) == p.host_id, col(WorkerHost.placement_seq) == p.seq)
                .values(placement_seq=p.seq + 1)
            )
            if (await session.exec(bump)).rowcount != 1:
                await session.rollback()
                return False
            run = await session.get(Run, p.run_id)
            if run is None or run.status != RunStatus.pending or run.cancel_requested:
                await session.rollback()
                return False
            ok = await store.transition(
                session,
                run,
                RunStatus.starting,
                worker_host_id=p.host_id,
                worker_host_name=p.host_name,
                gpu_device_ids=list(p.gpu_ids),
                placed_at=clock.now(),
                placements=run.placements + 1,
                supervisor=self.me,
                lease_expires_at=clock.now() + timedelta(seconds=self.lease),
            )
            if not ok:
                await session.rollback()
                return False
            await session.commit()
        log.info("run %s placed on %s gpus=%s", p.run_id, p.host_name, list(p.gpu_ids) or "-")
        return True

    def supervise(self, run_id: int) -> None:
        """Start a Supervisor for the run unless one is already driving it."""
        if run_id in self.supervisors:
            return
        sup = Supervisor(self.state, run_id, self.wake)
        task = asyncio.get_running_loop().create_task(sup.drive(), name=f"run-{run_id}")
        self.supervisors[run_id] = (sup, task)
        task.add_done_callback(lambda _t: self.supervisors.pop(run_id, None))

    def request_cancel(self, run_id: int) -> bool:
        """Tell the run's Supervisor to stop its container now; False if none runs here."""
        entry = self.supervisors.get(run_id)
        if entry is None:
            return False
        entry[0].cancel.set()
        return True

    async def adopt(self) -> list[int]:
        """Supervise active runs nobody drives: unowned, ours, or whose owner died or lapsed."""
        async with self.state.db.sessions() as session:
            active = await store.runs_in(session, set(ACTIVE))
        adopted = []
        for run in active:
            if run.id is None or run.id in self.supervisors:
                continue
            async with self.state.db.sessions() as session:
                now = clock.now()
                taken = await ownership.claim(
                    session, run.id, self.me, run.supervisor, now, self.lease
                )
                await session.commit()
            if taken:
                if run.supervisor not in (None, self.me):
                    log.info("run %s adopted from %s", run.id, run.supervisor)
                adopted.append(run.id)
                self.supervise(run.id)
        return adopted

    async def keep_leases(self) -> None:
        """Renew our leases; stop driving any run another process has taken over."""
        async with self.state.db.session_scope() as session:
            await ownership.renew(session, self.me, clock.now(), self.lease)
            query = select(Run.id, Run.supervisor).where(col(Run.id).in_(list(self.supervisors)))
            owners = dict((await session.exec(query)).all())
        for run_id, owner in owners.items():
            if owner not in (None, self.me) and run_id in self.supervisors:
                log.warning("run %s is now driven by %s; letting go", run_id, owner)
                self.supervisors[run_id][1].cancel()
        self._renewed_at = asyncio.get_running_loop().time()

    async def tick(self) -> list[Placement]:
        """Keep our leases, adopt runs nobody drives, then place what can be placed."""
        if asyncio.get_running_loop().time() - self._renewed_at >= self.lease / 3:
            await self.keep_leases()
        await self.adopt()
        return await self.place()

    async def run(self) -> None:
        """Tick on every wake-up, and at least every interval."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            try:
                await self.tick()
            except Exception:
                log.exception("scheduler tick failed")

    def start(self) -> None:
        """Start the loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run(), name="scheduler")

    async def stop(self) -> None:
        """Stop the loop and every Supervisor (their containers keep running; we adopt later)."""
        tasks = [t for _, t in self.supervisors.values()]
        if self._task is not None:
            tasks.append(self._task)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None
        self.supervisors.clear()
        try:
            async with self.state.db.session_scope() as session:
                await ownership.release(session, self.me)
        except Exception:  # the leases lapse by themselves
            log.warning("could not release run leases at shutdown", exc_info=True)
