"""HTTP routes for /api/schedules/: cron schedules that launch runs, their fires, run-now."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response, status

from app import clock
from app.deps import PageDep, SessionDep, StateDep, page_links
from app.named import parse_key
from app.openapi import ERRORS, examples
from app.runs.schemas import NoHostsBody
from app.schedules import firing, store
from app.schedules.models import Schedule
from app.schedules.schemas import (
    FirePage,
    FireRead,
    RunNowRead,
    ScheduleCreate,
    SchedulePage,
    ScheduleRead,
    ScheduleUpdate,
)

router = APIRouter(prefix="/schedules", tags=["schedules"])

ScheduleKey = Annotated[
    str,
    Path(max_length=200, description="The schedule's id (all digits) or its name."),
]
# Columns that cannot be NULL: a null in a PATCH leaves them unchanged.
_NOT_NULL = frozenset(
    "name description directive_id cron timezone enabled overlap catch_up".split()
)
_RESCHEDULE = frozenset({"cron", "timezone", "enabled"})


def _wake(state: Any) -> None:
    firer = state.services.get("schedules")
    if firer is not None:
        firer.wake()


@router.post(
    "/",
    status_code=status.HTTP_201_CREATED,
    response_model=ScheduleRead,
    summary="Create a schedule",
    responses=ERRORS(409, 422),
)
async def create_schedule(
    body: Annotated[ScheduleCreate, examples("schedule", "schedule_queue")],
    session: SessionDep,
    state: StateDep,
) -> ScheduleRead:
    """A cron expression (5 fields or an alias such as `@daily`) in an IANA time zone that
    launches runs of a directive, as POST /api/runs/launch/ would.

    422 names the field (`cron`, `timezone`, `directive_id`, `target_host_id`, `tasks`); 409 on
    a duplicate name. `next_fire_at` is the first fire after now (UTC)."""
    values = body.model_dump()
    await store.check(session, values)
    schedule = Schedule(**values)
    schedule.next_fire_at = store.next_fire(schedule, clock.now())
    await store.create(session, schedule)
    await session.commit()
    _wake(state)
    return store.to_read(schedule)


@router.get("/", response_model=SchedulePage, summary="List schedules", responses=ERRORS(422))
async def list_schedules(
    request: Request,
    session: SessionDep,
    page: PageDep,
    enabled: Annotated[
        bool | None, Query(description="Only enabled (or disabled) schedules.")
    ] = None,
) -> SchedulePage:
    """Every schedule, ordered by id, with its next fire time."""
    count, rows = await store.list_schedules(
        session, enabled=enabled, limit=page.limit, offset=page.offset
    )
    nxt, prev = page_links(request, page, count)
    return SchedulePage(
        count=count, next=nxt, previous=prev, results=[store.to_read(s) for s in rows]
    )


@router.get(
    "/{key}/", response_model=ScheduleRead, summary="Get one schedule", responses=ERRORS(404, 422)
)
async def get_schedule(
    key: ScheduleKey,
    session: SessionDep,
    fires: Annotated[int, Query(ge=0, le=200, description="How many recent fires to show.")] = 20,
) -> ScheduleRead:
    """A schedule with `next_fire_at` and its last fires (newest first) and their runs."""
    schedule = await store.get_or_raise(session, parse_key(key))
    assert schedule.id is not None
    _, recent = await store.fires(session, schedule.id, limit=fires)
    return store.to_read(schedule, recent)


@router.get(
    "/{key}/fires/",
    response_model=FirePage,
    summary="A schedule's fires",
    responses=ERRORS(404, 422),
)
async def list_fires(
    key: ScheduleKey, request: Request, session: SessionDep, page: PageDep
) -> FirePage:
    """The schedule's history, newest first: due time, trigger, outcome, run and its status,
    and for a refused launch its status code and why."""
    schedule = await store.get_or_raise(session, parse_key(key))
    assert schedule.id is not None
    count, rows = await store.fires(session, schedule.id, limit=page.limit, offset=page.offset)
    nxt, prev = page_links(request, page, count)
    return FirePage(count=count, next=nxt, previous=prev, results=rows)


@router.patch(
    "/{key}/",
    response_model=ScheduleRead,
    summary="Change a schedule",
    responses=ERRORS(404, 409, 422),
)
async def update_schedule(
    key: ScheduleKey,
    body: Annotated[ScheduleUpdate, examples("schedule_patch")],
    session: SessionDep,
    state: StateDep,
) -> ScheduleRead:
    """Change only the fields given. A new cron, time zone or `enabled` recomputes
    `next_fire_at` from now (a disabled schedule has none; enabling does not replay)."""
    schedule = await store.get_or_raise(session, parse_key(key))
    changes: dict[str, Any] = body.model_dump(exclude_unset=True)
    for name in _NOT_NULL:
        if name in changes and changes[name] is None:
            del changes[name]
    await store.check(session, changes)
    if _RESCHEDULE & changes.keys():
        probe = Schedule(**{**schedule.model_dump(), **changes})
        changes["next_fire_at"] = store.next_fire(probe, clock.now())
    await store.update_row(session, schedule, changes)
    await session.commit()
    _wake(state)
    return store.to_read(schedule)


@router.delete(
    "/{key}/",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a schedule",
    responses=ERRORS(404),
)
async def delete_schedule(key: ScheduleKey, session: SessionDep) -> Response:
    """Delete a schedule and its history; its runs stay (their `schedule_id` becomes null)."""
    schedule = await store.get_or_raise(session, parse_key(key))
    await store.delete(session, schedule)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{key}/run-now/",
    status_code=status.HTTP_201_CREATED,
    response_model=RunNowRead,
    summary="Fire a schedule once, now",
    responses={
        **ERRORS(404, 409, 422),
        503: {
            "model": NoHostsBody,
            "description": "No host can take the run (recorded on the history too), or the "
            "database is unavailable",
        },
    },
)
async def run_now(key: ScheduleKey, session: SessionDep, state: StateDep) -> RunNowRead:
    """Launch one run of the schedule now, whatever its cron, `enabled` and overlap policy
    (a person asked for it); `next_fire_at` does not move. A refused launch is recorded on the
    history and answered as POST /api/runs/launch/ would (404/409/422/503)."""
    schedule = await store.get_or_raise(session, parse_key(key))
    assert schedule.id is not None
    await session.commit()
    fire, error = await firing.fire_state(state).run_now(schedule.id)
    if error is not None:
        raise error
    return RunNowRead(fire=FireRead(**fire.model_dump()), run_id=fire.run_id)
