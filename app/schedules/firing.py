"""The firing loop: wakes at the next due time, claims each due fire exactly once, launches.

A fire launches exactly as POST /api/runs/launch/ does (`app.runs.service.launch`: the same
validation, the same 404/409/422/503 refusals), but a refusal is recorded on the schedule's
history (`outcome: failed`, `status_code`, `detail`) instead of being raised. The run carries
`schedule_id`. Exactly once, also with several replicas and across restarts: see
`store.claim` — the claim and the run are one transaction; if anything fails before the
commit, neither happened and the next pass tries again.

On time or missed: a fire found later than DOCKFLEET_SCHEDULE_GRACE_SECONDS after its due time
(no dockfleet was running then) is *missed*: `catch_up: none` records it once as `missed` and
moves on to the next time after now; `catch_up: latest` fires once, for the latest missed time.

Overlap, while a run of the schedule has not finished (pending, starting, running,
cancelling): `skip` records the fire as skipped; `queue` keeps one fire `queued` (further fires
meanwhile are skipped) and launches it as soon as the earlier run finishes; `allow` launches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app import clock, logs
from app.deps import AppState
from app.errors import AppError
from app.events import store as events
from app.runs import service as runs_service
from app.runs.models import LaunchRequest, Run
from app.schedules import store
from app.schedules.models import Schedule, ScheduleFire
from app.schedules.schemas import CatchUp, FireOutcome, FireTrigger, Overlap

log = logging.getLogger("dockfleet.schedules")

BATCH = 100  # due schedules handled per pass (a full batch makes the next pass immediate)
ERROR_BACKOFF = 5.0  # seconds before a pass that failed (database trouble) is tried again
MAX_DETAIL = 2000
QUEUED_RECHECK = 2.0  # seconds between looks at a queued fire's earlier run


def describe(exc: AppError) -> str:
    """A refusal in one line: its detail, and per host why (a 503)."""
    detail = exc.detail
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                loc = ".".join(str(p) for p in item.get("loc", [])[1:])
                parts.append(f"{loc}: {item.get('msg')}" if loc else str(item.get("msg")))
        text = "; ".join(parts) or str(detail)
    else:
        text = str(detail)
    hosts = exc.extra.get("hosts")
    if isinstance(hosts, list) and hosts:
        why = "; ".join(f"{h.get('name')}: {', '.join(h.get('reasons', []))}" for h in hosts[:5])
        text += f" ({why})"
    reasons = exc.extra.get("reasons")
    if isinstance(reasons, list) and reasons and "cannot take" not in text:
        text += f" ({', '.join(map(str, reasons))})"
    return text[:MAX_DETAIL]


async def _record(session: AsyncSession, schedule: Schedule, fire: ScheduleFire) -> None:
    """A fire that launched nothing is an event (`schedule.failed`, `schedule.missed`), in the
    fire's transaction: notifiers hear about a schedule that cannot even launch."""
    if fire.outcome not in (FireOutcome.failed.value, FireOutcome.missed.value):
        return
    await events.record(
        session,
        f"schedule.{fire.outcome}",
        schedule_id=schedule.id,
        schedule=schedule.name,
        directive_id=schedule.directive_id,
        due_at=fire.due_at.isoformat(),
        status_code=fire.status_code,
        error=fire.detail,
    )


class Firer:
    """The schedules' background service: one loop, woken at the next due time."""

    def __init__(self, state: AppState) -> None:
        self.state = state
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def grace(self) -> timedelta:
        return timedelta(seconds=self.state.settings.schedule_grace_seconds)

    def wake(self) -> None:
        """Look at the schedules now (one was created, changed or enabled here)."""
        self._wake.set()

    # -- one fire ------------------------------------------------------------------------------

    async def _launch_into(
        self, session: AsyncSession, schedule: Schedule, fire: ScheduleFire
    ) -> tuple[Run | None, AppError | None]:
        """Launch as POST /runs/launch/ does; the outcome goes on `fire`."""
        scheduler: runs_service.SchedulerPort | None = self.state.services.get("scheduler")
        known = scheduler.known() if scheduler is not None else None
        try:
            body = LaunchRequest(
                directive_id=schedule.directive_id,
                tasks=schedule.tasks,
                target_host_id=schedule.target_host_id,
            )
            run, _ = await runs_service.launch(
                session,
                self.state.settings,
                body,
                self.state.policy,
                known[0] if known else None,
                schedule_id=schedule.id,
            )
        except ValidationError as exc:
            fire.outcome, fire.status_code = FireOutcome.failed.value, 422
            fire.detail = str(exc.errors()[0].get("msg"))[:MAX_DETAIL]
            return None, None
        except AppError as exc:
            fire.outcome, fire.status_code = FireOutcome.failed.value, exc.status
            fire.detail = describe(exc)
            return None, exc
        fire.outcome, fire.run_id = FireOutcome.launched.value, run.id
        return run, None

    def _submit(self, run: Run | None) -> None:
        scheduler: runs_service.SchedulerPort | None = self.state.services.get("scheduler")
        if run is not None and run.id is not None and scheduler is not None:
            scheduler.submit(run.id, run.gpu_need, run.target_host_id)

    async def fire_due(self, schedule: Schedule, now: datetime) -> ScheduleFire | None:
        """Claim and fire the schedule's due time; None when another pass claimed it first."""
        due = schedule.next_fire_at
        assert due is not None and schedule.id is not None
        expr, tz = store.cron_of(schedule)
        late = now - due > self.grace
        trigger, fire_for = FireTrigger.cron, due
        if not late:
            following = expr.next_after(due, tz)
        else:
            following = expr.next_after(now, tz)
            if schedule.catch_up == CatchUp.latest:
                trigger = FireTrigger.catch_up
                fire_for = expr.latest_at_or_before(now, tz, due) or due
        run: Run | None = None
        async with self.state.db.sessions() as session:
            if not await store.claim(session, schedule.id, due, following):
                await session.rollback()
                return None
            fire = ScheduleFire(
                schedule_id=schedule.id, trigger=trigger.value, due_at=fire_for, fired_at=now
            )
            if late and schedule.catch_up == CatchUp.none:
                fire.outcome = FireOutcome.missed.value
                fire.detail = f"dockfleet was not running at {due.isoformat()}; not replayed"
            else:
                run = await self._fire_or_hold(session, schedule, fire)
            session.add(fire)
            await _record(session, schedule, fire)
            try:
                await session.commit()
            except IntegrityError:  # the same due time recorded already: nothing happened
                await session.rollback()
                log.warning("schedule %s: fire at %s already recorded", schedule.id, fire_for)
                return None
        self._submit(run)
        log.info("schedule %s fired for %s: %s", schedule.name, fire_for, fire.outcome)
        return fire

    async def _fire_or_hold(
        self, session: AsyncSession, schedule: Schedule, fire: ScheduleFire
    ) -> Run | None:
        """Apply the overlap policy, then launch (or skip, or queue)."""
        assert schedule.id is not None
        if schedule.overlap != Overlap.allow:
            busy = await store.unfinished_run(session, schedule.id)
            if busy is not None:
                if schedule.overlap == Overlap.queue and not await store.queued_fire(
                    session, schedule.id
                ):
                    fire.outcome = FireOutcome.queued.value
                    fire.detail = f"waits for run {busy} to finish"
                    return None
                fire.outcome = FireOutcome.skipped.value
                queued = schedule.overlap == Overlap.queue
                fire.detail = (
                    "a fire is already queued" if queued else f"run {busy} has not finished"
                )
                return None
        run, _ = await self._launch_into(session, schedule, fire)
        return run

    async def launch_queued(self, fire_id: int) -> bool:
        """Launch a queued fire whose schedule has no unfinished run left; False if not yet."""
        async with self.state.db.sessions() as session:
            fire = await session.get(ScheduleFire, fire_id)
            if fire is None or fire.outcome != FireOutcome.queued.value:
                return False
            schedule = await session.get(Schedule, fire.schedule_id)
            if schedule is None or not schedule.enabled:
                return False
            assert schedule.id is not None
            if await store.unfinished_run(session, schedule.id) is not None:
                return False
            probe = ScheduleFire(schedule_id=schedule.id, trigger=fire.trigger, due_at=fire.due_at)
            run, _ = await self._launch_into(session, schedule, probe)
            result = await session.exec(
                update(ScheduleFire)
                .where(col(ScheduleFire.id) == fire_id)
                .where(col(ScheduleFire.outcome) == FireOutcome.queued.value)
                .values(
                    outcome=probe.outcome,
                    run_id=probe.run_id,
                    status_code=probe.status_code,
                    detail=probe.detail,
                    fired_at=clock.now(),
                )
            )
            if result.rowcount != 1:
                await session.rollback()  # another replica launched it
                return False
            await _record(session, schedule, probe)
            await session.commit()
        self._submit(run)
        return True

    async def run_now(self, schedule_id: int) -> tuple[ScheduleFire, AppError | None]:
        """Fire once now, whatever the cron and the overlap policy (a person asked for it);
        the refusal of a launch is recorded and returned, for the caller to raise."""
        now = clock.now()
        async with self.state.db.sessions() as session:
            schedule = await store.get_or_raise(session, schedule_id)
            assert schedule.id is not None
            fire = ScheduleFire(
                schedule_id=schedule.id, trigger=FireTrigger.run_now.value, due_at=now, fired_at=now
            )
            run, error = await self._launch_into(session, schedule, fire)
            session.add(fire)
            await _record(session, schedule, fire)
            await session.commit()
        self._submit(run)
        return fire, error

    # -- the loop ------------------------------------------------------------------------------

    async def tick(self) -> float:
        """One pass: fire what is due, launch queued fires that may go; seconds to the next."""
        now = clock.now()
        async with self.state.db.sessions() as session:
            due = list(
                (
                    await session.exec(
                        select(Schedule)
                        .where(col(Schedule.enabled))
                        .where(col(Schedule.next_fire_at) <= now)
                        .order_by(col(Schedule.next_fire_at))
                        .limit(BATCH)
                    )
                ).all()
            )
            queued = list(
                (
                    await session.exec(
                        select(ScheduleFire.id)
                        .where(col(ScheduleFire.outcome) == FireOutcome.queued.value)
                        .order_by(col(ScheduleFire.id))
                        .limit(BATCH)
                    )
                ).all()
            )
        for schedule in due:
            try:
                await self.fire_due(schedule, now)
            except Exception:
                log.exception("schedule %s: fire failed (tried again next pass)", schedule.id)
        for fire_id in queued:
            if fire_id is not None:
                try:
                    await self.launch_queued(fire_id)
                except Exception:
                    log.exception("queued fire %s failed (tried again next pass)", fire_id)
        if len(due) == BATCH:
            return 0.0
        delay = await self.seconds_to_next()
        return min(delay, QUEUED_RECHECK) if queued else delay

    async def seconds_to_next(self) -> float:
        """Seconds until the soonest enabled schedule is due (the poll interval at most)."""
        poll = self.state.settings.schedule_poll_seconds
        async with self.state.db.sessions() as session:
            soonest = (
                await session.exec(
                    select(func.min(Schedule.next_fire_at)).where(col(Schedule.enabled))
                )
            ).one()
        if soonest is None:
            return poll
        if soonest.tzinfo is None:  # func.min skips the column type: naive UTC
            from datetime import UTC

            soonest = soonest.replace(tzinfo=UTC)
        return max(0.0, min(poll, (soonest - clock.now()).total_seconds()))

    async def _loop(self) -> None:
        while not self._stopping:
            try:
                delay = await self.tick()
            except Exception:
                logs.pass_failed(log, "schedule pass failed")
                delay = ERROR_BACKOFF
            # Bounded: another replica's changes and queued fires are seen within the poll.
            delay = max(0.05, min(delay, self.state.settings.schedule_poll_seconds))
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that
            # arrives as the event is set, and the loop would outlive stop().
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            self._wake.clear()

    def start(self) -> None:
        """Start the loop."""
        if self._task is None:
            self._stopping = False
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="schedules")

    async def stop(self) -> None:
        """Stop the loop (a fire in flight either committed or did not happen)."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


def fire_state(state: AppState) -> Any:
    """The Firer of an app (for routes): the running one, else a fresh one (no loop)."""
    firer = state.services.get("schedules")
    return firer if firer is not None else Firer(state)
