"""Events → outbox: a cursor over the events table, advanced with a guarded write.

Why a cursor rather than enqueueing inside `record()`: events are recorded in the hot
transactions of other rooms (placement, the supervisor's moves, health flips); a cursor keeps
notifier lookups and filters out of them, sees every event whoever wrote it, and needs no
change at any call site. Exactly one enqueue per (notifier, event): the cursor row moves from
the id this pass read to the last id it handled (`WHERE last_event_id = :read`) in the
transaction that inserts the deliveries — of two replicas, one commits and the other rolls
back and reads again — and (notifier_id, event_id) is unique besides.

On PostgreSQL a later event id may commit before an earlier one; `events.Cursor` holds an
event behind such a gap back until it fills (or `GAP_GRACE_SECONDS`). A new database starts
the cursor at the newest event (history is not replayed to new notifiers).
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app import clock
from app.db import Database
from app.events import store as events
from app.events.schemas import EventRead, type_matches
from app.notifiers import payloads
from app.notifiers.models import Delivery, Notifier, NotifierFeed, NotifierState

log = logging.getLogger("dockfleet.notifiers")

FEED = "events"
BATCH = 200
# on_change_only: the outcome each type stands for, and the subject it is about.
OUTCOMES = {
    "run.succeeded": "succeeded",
    "run.failed": "failed",
    "run.cancelled": "cancelled",
    "schedule.failed": "failed",
    "schedule.missed": "missed",
    "host.healthy": "healthy",
    "host.unhealthy": "unhealthy",
    "host.lost": "unhealthy",
}
GOOD_STATES = {"succeeded", "healthy"}  # what a subject never seen before is assumed to be


def subject(event: EventRead, facts: dict[str, Any]) -> str | None:
    """What an outcome is about: the schedule (else the directive) of a run, or a host."""
    if event.type.startswith("host."):
        return f"host:{event.host_id}" if event.host_id else None
    if facts.get("schedule_id"):
        return f"schedule:{facts['schedule_id']}"
    if facts.get("directive_id"):
        return f"directive:{facts['directive_id']}"
    return None


def matches(notifier: Notifier, event: EventRead, facts: dict[str, Any]) -> bool:
    """The notifier's filters: types, then directive, schedule and host (empty = any)."""
    if not type_matches(event.type, notifier.event_types):
        return False
    for ids, value in (
        (notifier.directive_ids, facts.get("directive_id")),
        (notifier.schedule_ids, facts.get("schedule_id")),
        (notifier.host_ids, event.host_id),
    ):
        if ids and value not in ids:
            return False
    return True


class Feed:
    """Turns new events into deliveries; one pass at a time per process, any number of
    processes."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.cursor: events.Cursor | None = None
        self.queued = 0  # deliveries the last step enqueued

    async def _position(self, session: AsyncSession) -> int | None:
        row = await session.get(NotifierFeed, FEED)
        if row is not None:
            return row.last_event_id
        _, newest = await events.bounds(session)
        session.add(NotifierFeed(name=FEED, last_event_id=newest))
        try:
            await session.commit()
        except IntegrityError:  # another replica made it first
            await session.rollback()
        return None

    async def _facts(self, session: AsyncSession, batch: list[EventRead]) -> dict[int, Any]:
        """Per event id: directive_id, schedule_id (and its name) of its run or its data."""
        from app.runs.models import Run
        from app.schedules.models import Schedule

        run_ids = {e.run_id for e in batch if e.run_id is not None}
        runs: dict[int, tuple[int | None, int | None]] = {}
        if run_ids:
            rows = await session.exec(
                select(Run.id, Run.directive_id, Run.schedule_id).where(col(Run.id).in_(run_ids))
            )
            runs = {rid: (did, sid) for rid, did, sid in rows.all() if rid is not None}
        out: dict[int, Any] = {}
        schedule_ids: set[int] = set()
        for e in batch:
            did, sid = runs.get(e.run_id or 0, (None, None))
            did = did or e.data.get("directive_id")
            sid = sid or e.data.get("schedule_id")
            out[e.id] = {"directive_id": did, "schedule_id": sid}
            if sid:
                schedule_ids.add(sid)
        if schedule_ids:
            names = dict(
                (
                    await session.exec(
                        select(Schedule.id, Schedule.name).where(col(Schedule.id).in_(schedule_ids))
                    )
                ).all()
            )
            for facts in out.values():
                if facts["schedule_id"]:
                    facts["schedule"] = names.get(facts["schedule_id"])
        return out

    async def _changed(
        self,
        session: AsyncSession,
        notifier: Notifier,
        event: EventRead,
        facts: dict[str, Any],
        seen: dict[tuple[int, str], NotifierState],
    ) -> bool:
        """on_change_only: whether this outcome differs from the last one of its subject
        (recording it either way)."""
        outcome = OUTCOMES.get(event.type)
        about = subject(event, facts)
        if outcome is None or about is None:
            return True  # not an outcome: on_change_only does not apply
        assert notifier.id is not None
        key = (notifier.id, about)
        row = seen.get(key) or await session.get(NotifierState, key)
        before = row.state if row is not None else None
        if row is None:
            row = NotifierState(
                notifier_id=notifier.id, subject=about, state=outcome, event_id=event.id
            )
        else:
            row.state, row.event_id = outcome, event.id
        seen[key] = row
        session.add(row)
        if before is None:
            return outcome not in GOOD_STATES
        return before != outcome

    async def step(self) -> int:
        """One pass: enqueue deliveries for the next events; how many events it handled
        (`self.queued`: how many deliveries)."""
        self.queued = 0
        async with self.db.sessions() as session:
            position = await self._position(session)
            if position is None:
                return 0
            if self.cursor is None or self.cursor.after != position:
                self.cursor = events.Cursor(position)
            batch = await self.cursor.next_batch(session, limit=BATCH)
            if not batch:
                await session.rollback()
                return 0
            notifiers = list(
                (await session.exec(select(Notifier).where(col(Notifier.enabled)))).all()
            )
            facts = await self._facts(session, batch) if notifiers else {}
            queued = 0
            seen: dict[tuple[int, str], NotifierState] = {}
            for event in batch:
                for notifier in notifiers:
                    f = facts.get(event.id, {})
                    if not matches(notifier, event, f):
                        continue
                    if notifier.on_change_only and not await self._changed(
                        session, notifier, event, f, seen
                    ):
                        continue
                    session.add(self.delivery(notifier, event, f))
                    queued += 1
            moved = await session.exec(
                update(NotifierFeed)
                .where(col(NotifierFeed.name) == FEED)
                .where(col(NotifierFeed.last_event_id) == position)
                .values(last_event_id=batch[-1].id, updated_at=clock.now())
            )
            if moved.rowcount != 1:
                await session.rollback()  # another replica handled these events
                self.cursor = None
                return 0
            try:
                await session.commit()
            except IntegrityError:
                await session.rollback()
                self.cursor = None
                return 0
        if queued:
            log.info("%d notifications queued for %d events", queued, len(batch))
        self.queued = queued
        return len(batch)

    @staticmethod
    def delivery(notifier: Notifier, event: EventRead, facts: dict[str, Any]) -> Delivery:
        """The outbox row of one event for one notifier."""
        assert notifier.id is not None
        plain = event.model_dump(mode="json")
        return Delivery(
            notifier_id=notifier.id,
            event_id=event.id,
            event_type=event.type,
            message=payloads.message(plain, facts),
            next_attempt_at=clock.now(),
        )
