"""HTTP routes for /api/events/: the stream of state changes (SSE) and a page of them (JSON)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from app.deps import IdQuery, SessionDep, StateDep
from app.errors import InvalidField
from app.events import store
from app.events.schemas import STREAM_RESET, EventPage, EventRead, parse_types, type_matches
from app.limits import DB_INT_MAX
from app.openapi import ERRORS

router = APIRouter(prefix="/events", tags=["events"])
log = logging.getLogger("dockfleet.events")

BATCH = 500
TypesQuery = Annotated[
    str | None,
    Query(
        max_length=2000,
        description="Comma list of event types; `run.*` matches every run event.",
        examples=["run.failed,host.unhealthy"],
    ),
]


def _types(raw: str | None) -> list[str] | None:
    try:
        return parse_types(raw)
    except ValueError as exc:
        raise InvalidField(["query", "types"], str(exc)) from None


def _resume_point(header: str | None, after: int | None) -> int | None:
    """`Last-Event-ID` (what EventSource sends on reconnect) wins over `?after=`."""
    if header is None or not header.strip():
        return after
    value = header.strip()
    if not value.isdigit() or len(value) > 12 or int(value) > DB_INT_MAX:
        raise InvalidField(["header", "Last-Event-ID"], "must be an event id (an integer ≥ 0)")
    return int(value)


def _stale(after: int, oldest: int | None, newest: int) -> bool:
    """Whether events after `after` may have been deleted (or `after` is not of this record)."""
    if after > newest:
        return True
    if oldest is None:
        return after < newest
    return after < oldest - 1


def _message(event: EventRead) -> str:
    body = event.model_dump_json()
    return f"id: {event.id}\nevent: {event.type}\ndata: {body}\n\n"


def _reset(after: int, oldest: int | None, newest: int) -> str:
    data = {
        "reason": "events after this id are no longer kept; re-read the state",
        "after": after,
        "oldest_id": oldest,
        "newest_id": newest,
    }
    return f"id: {newest}\nevent: {STREAM_RESET}\ndata: {json.dumps(data)}\n\n"


@router.get(
    "/",
    summary="Stream host and run state changes (server-sent events)",
    response_class=StreamingResponse,
    responses={
        **ERRORS(422),
        200: {
            "content": {"text/event-stream": {}},
            "description": "`id:` the event id, `event:` its type, `data:` the event as JSON",
        },
    },
)
async def stream_events(
    state: StateDep,
    session: SessionDep,
    types: TypesQuery = None,
    run_id: IdQuery = None,
    host_id: IdQuery = None,
    after: Annotated[
        int | None,
        Query(ge=0, le=DB_INT_MAX, description="Start after this event id (default: now)."),
    ] = None,
    last_event_id: Annotated[
        str | None,
        Header(alias="Last-Event-ID", description="Resume after this id (sent on reconnect)."),
    ] = None,
) -> StreamingResponse:
    """Every state change of a run (`run.pending`, `run.running`, `run.succeeded`, ...) and of
    a host (`host.healthy`, `host.unhealthy`, `host.draining`, ...), as they happen, on every
    replica sharing the database.

    Resume with `Last-Event-ID` (or `?after=`): if events after it are no longer kept, the
    first message is `event: stream.reset` (its `data` says which ids are kept): re-read the
    state, then carry on. With a token: `curl -N -H "Authorization: Bearer $TOKEN" …`.
    """
    wanted = _types(types)
    start = _resume_point(last_event_id, after)
    oldest, newest = await store.bounds(session)
    await session.close()
    prelude = "retry: 1000\n\n"
    if start is None:
        start = newest
    elif _stale(start, oldest, newest):
        prelude += _reset(start, oldest, newest)
        start = newest
    body = _follow(state, start, prelude, wanted, run_id, host_id)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(body, media_type="text/event-stream", headers=headers)


async def _follow(
    state: StateDep,
    start: int,
    prelude: str,
    types: list[str] | None,
    run_id: int | None,
    host_id: int | None,
) -> AsyncIterator[str]:
    """The stream's body: new events as they commit, keep-alives while idle, bounded in time."""
    settings = state.settings
    cursor = store.Cursor(start)
    yield prelude
    ends = time.monotonic() + settings.follow_max_seconds
    quiet_since = time.monotonic()
    while time.monotonic() < ends and not store.BUS.closed:
        batch: list[EventRead] = []
        mark = store.BUS.wakes  # a commit from here on wakes the wait below at once
        try:
            newest = await _newest(state).get(state.db.sessions)
            if newest > cursor.after or cursor.waiting_on_gap:
                async with state.db.sessions() as session:
                    batch = await cursor.next_batch(session, BATCH)
        except (DBAPIError, PoolTimeout) as exc:  # the database is away: wait, keep the client
            log.warning("event stream: cannot read events (%s); retrying", type(exc).__name__)
        for event in batch:
            if (
                type_matches(event.type, types)
                and (run_id is None or event.run_id == run_id)
                and (host_id is None or event.host_id == host_id)
            ):
                quiet_since = time.monotonic()
                yield _message(event)
        if len(batch) == BATCH:
            continue
        if time.monotonic() - quiet_since >= settings.events_keepalive_seconds:
            quiet_since = time.monotonic()
            yield ": keep-alive\n\n"
        left = max(0.0, min(settings.events_poll_seconds, ends - time.monotonic()))
        await store.BUS.wait(left, since=mark)


def _newest(state: StateDep) -> store.Newest:
    """The process's shared probe of the newest id (made on first use)."""
    probe: store.Newest | None = state.services.get("events_newest")
    if probe is None:
        probe = store.Newest(state.settings.events_poll_seconds * 0.9)
        state.services["events_newest"] = probe
    return probe


@router.get(
    "/recent/",
    response_model=EventPage,
    summary="Events after an id (JSON, for scripts)",
    responses=ERRORS(422),
)
async def recent_events(
    session: SessionDep,
    types: TypesQuery = None,
    run_id: IdQuery = None,
    host_id: IdQuery = None,
    after: Annotated[
        int | None,
        Query(ge=0, le=DB_INT_MAX, description="Events after this id (default: the oldest kept)."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many.")] = 100,
) -> EventPage:
    """The events after `after`, oldest first; poll again with `?after=<last_id>`. `reset` is
    true when events after `after` were already deleted (re-read the state)."""
    wanted = _types(types)
    oldest, newest = await store.bounds(session)
    reset = after is not None and _stale(after, oldest, newest)
    since = (oldest - 1 if oldest else 0) if after is None or reset else after
    events = await store.list_after(
        session, since, types=wanted, run_id=run_id, host_id=host_id, limit=limit
    )
    last = events[-1].id if events else (newest if reset else since)
    return EventPage(results=events, last_id=last, oldest_id=oldest, reset=reset)
