"""Writes and reads of the event record, its retention, and the in-process wake-up.

The contract other rooms build on:

- `await record(session, "run.failed", run_id=7, host_id=2, error="exit 1", directive="nightly")`
  adds one row to `events` IN THE CALLER'S TRANSACTION (an `AsyncSession` or an
  `AsyncConnection`): the state change and its event commit together or not at all. It never
  commits. Once the caller commits, the event is logged (one line, `run_id`/`host_id` as log
  extras) and every stream of this process is woken at once; other processes see it at their
  next poll (`DOCKFLEET_EVENTS_POLL_SECONDS`, 0.5 s). `record_all` writes several in one INSERT.
- `await list_after(session, after_id, types=..., run_id=..., host_id=..., limit=...)`: the
  events with `id > after_id`, oldest first. `types` entries may end in `.*` (a prefix).
- `await bounds(session)`: (oldest kept id, newest id), for a resume point that was trimmed.
- `await trim(session, keep=N, keep_days=D)`: retention (the newest event always stays, so
  ids never restart). `Janitor` runs it in the background.
- `BUS.wait(seconds)`: returns when an event of this process committed, or on timeout;
  `BUS.closed` once the server shuts down (streams then end).

Ids are monotonic (SQLite AUTOINCREMENT, a PostgreSQL sequence). On PostgreSQL a later id may
commit before an earlier one: readers that must not miss events use `Cursor`, which holds
back an event behind a gap until the gap fills or `GAP_GRACE_SECONDS` passed (a rolled-back
writer leaves a permanent gap).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import Table, delete, func, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Session

from app import clock
from app.events.bus import BUS
from app.events.models import Event
from app.events.schemas import EventRead

log = logging.getLogger("dockfleet.events")

GAP_GRACE_SECONDS = 10.0
TABLE: Table = Event.__table__  # type: ignore[attr-defined]
_PENDING = "dockfleet_events"  # key of the events waiting for the caller's commit
_WARN = {"run.failed", "host.unhealthy", "gpu.unhealthy"}  # logged as warnings


def _row(
    type_: str, run_id: int | None, host_id: int | None, data: dict[str, Any]
) -> dict[str, Any]:
    clean = {k: v for k, v in data.items() if v is not None}
    return {
        "created_at": clock.now(),
        "type": type_,
        "run_id": run_id,
        "host_id": host_id,
        "data": clean,
    }


async def record(
    session_or_conn: AsyncSession | AsyncConnection,
    type: str,
    *,
    run_id: int | None = None,
    host_id: int | None = None,
    **data: Any,
) -> None:
    """Add one event in the caller's transaction (no commit); logged and streamed once committed."""
    await record_all(session_or_conn, [_row(type, run_id, host_id, data)])


async def record_all(
    session_or_conn: AsyncSession | AsyncConnection, rows: Sequence[dict[str, Any]]
) -> None:
    """Add several events (dicts from `event_row`) in one INSERT, in the caller's transaction."""
    if not rows:
        return
    conn = await _conn(session_or_conn)
    await conn.execute(insert(TABLE).values(list(rows)))
    _after_commit(session_or_conn, rows)


async def _conn(target: AsyncSession | AsyncConnection) -> AsyncConnection:
    """The connection of the caller's transaction (a session's, or the connection itself)."""
    if isinstance(target, AsyncConnection):
        return target
    return await target.connection()


def event_row(
    type_: str, *, run_id: int | None = None, host_id: int | None = None, **data: Any
) -> dict[str, Any]:
    """One row for `record_all`."""
    return _row(type_, run_id, host_id, data)


def _after_commit(target: AsyncSession | AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    """Queue the rows' log lines and the wake-up on the caller's commit (dropped on rollback)."""
    from sqlalchemy import event as sa_event

    if isinstance(target, AsyncSession):
        sync: Any = target.sync_session
        info = sync.info
        commit_event, rollback_event = "after_commit", "after_rollback"
    else:
        sync = target.sync_connection
        info = target.info
        commit_event, rollback_event = "commit", "rollback"
    pending = info.setdefault(_PENDING, [])
    pending.extend(rows)
    if not sa_event.contains(sync, commit_event, _committed):
        sa_event.listen(sync, commit_event, _committed)
        sa_event.listen(sync, rollback_event, _rolled_back)


def _pending_of(target: Session | Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = target.info.pop(_PENDING, [])
    return out


def _committed(target: Any) -> None:
    rows = _pending_of(target)
    for row in rows:
        _log(row)
    if rows:
        BUS.notify()


def _rolled_back(target: Any) -> None:
    _pending_of(target)


def _log(row: dict[str, Any]) -> None:
    """One log line per state change, with its run and host as extras (JSON logs show them)."""
    data = row["data"]
    about = " ".join(
        part
        for part in (
            f"run {row['run_id']}" if row["run_id"] is not None else "",
            f"host {row['host_id']}" if row["host_id"] is not None else "",
        )
        if part
    )
    details = ", ".join(f"{k}={v}" for k, v in data.items())
    level = logging.WARNING if row["type"] in _WARN else logging.INFO
    log.log(
        level,
        "%s %s%s",
        row["type"],
        about,
        f" ({details})" if details else "",
        extra={"run_id": row["run_id"], "host_id": row["host_id"], "event": row["type"]},
    )


def _type_clause(types: Iterable[str]) -> Any:
    exact = [t for t in types if not t.endswith(".*")]
    prefixes = [t[:-1] for t in types if t.endswith(".*")]
    clauses: list[Any] = []
    if exact:
        clauses.append(TABLE.c.type.in_(exact))
    clauses.extend(TABLE.c.type.startswith(p, autoescape=True) for p in prefixes)
    return or_(*clauses)


async def list_after(
    session: AsyncSession,
    after_id: int,
    *,
    types: list[str] | None = None,
    run_id: int | None = None,
    host_id: int | None = None,
    limit: int = 500,
) -> list[EventRead]:
    """The events with id > after_id (and the filters), oldest first, at most `limit`."""
    table = TABLE
    query = select(table).where(table.c.id > after_id)
    if types:
        query = query.where(_type_clause(types))
    if run_id is not None:
        query = query.where(table.c.run_id == run_id)
    if host_id is not None:
        query = query.where(table.c.host_id == host_id)
    conn = await _conn(session)
    rows = (await conn.execute(query.order_by(table.c.id).limit(limit))).mappings().all()
    return [EventRead.model_validate(dict(r)) for r in rows]


async def bounds(session: AsyncSession) -> tuple[int | None, int]:
    """(the oldest kept id or None, the newest id or 0)."""
    table = TABLE
    conn = await _conn(session)
    low, high = (await conn.execute(select(func.min(table.c.id), func.max(table.c.id)))).one()
    return (int(low) if low is not None else None), int(high or 0)


async def trim(session: AsyncSession, *, keep: int, keep_days: float) -> int:
    """Delete events beyond the newest `keep` and older than `keep_days`; the newest stays."""
    table = TABLE
    _, newest = await bounds(session)
    if not newest:
        return 0
    cutoff = clock.now() - timedelta(days=keep_days)
    stmt = delete(table).where(
        table.c.id < newest, or_(table.c.id <= newest - keep, table.c.created_at < cutoff)
    )
    result: Any = await (await _conn(session)).execute(stmt)
    return int(result.rowcount or 0)


class Newest:
    """The newest event id, read at most once per `every` seconds for all of this process's
    streams (an idle stream then costs no query of its own); a local commit re-reads it."""

    def __init__(self, every: float) -> None:
        self.every = every
        self.value = 0
        self._at = float("-inf")
        self._seen_wakes = -1

    async def get(self, session_factory: Any) -> int:
        """The newest id, from the database when the last read is older than `every`."""
        if BUS.wakes != self._seen_wakes or time.monotonic() - self._at >= self.every:
            self._seen_wakes, self._at = BUS.wakes, time.monotonic()
            async with session_factory() as session:
                self.value = (await bounds(session))[1]
        return self.value


class Cursor:
    """Reads the record in id order without skipping a late commit (see the module docstring)."""

    def __init__(self, after: int, grace: float = GAP_GRACE_SECONDS) -> None:
        self.after = after
        self.grace = grace
        self._gap_since: float | None = None

    async def next_batch(self, session: AsyncSession, limit: int = 500) -> list[EventRead]:
        """The next events in order; an event behind a gap waits until it fills or times out."""
        rows = await list_after(session, self.after, limit=limit)
        out: list[EventRead] = []
        expected = self.after + 1
        for row in rows:
            if row.id != expected and not self._gap_expired():
                break
            out.append(row)
            self._gap_since = None
            expected = row.id + 1
        if out:
            self.after = out[-1].id
        if len(out) < len(rows) and self._gap_since is None:
            self._gap_since = time.monotonic()
        return out

    @property
    def waiting_on_gap(self) -> bool:
        """An event behind a gap is held back: read again even if nothing newer came."""
        return self._gap_since is not None

    def _gap_expired(self) -> bool:
        return self._gap_since is not None and time.monotonic() - self._gap_since >= self.grace
