"""HTTP routes for /api/runs/: launch, list, show, cancel, logs."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

from fastapi import APIRouter, Query, Request, status
from fastapi.responses import StreamingResponse
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from app import clock
from app.db import unavailable_reason
from app.deps import PageDep, RunId, SessionDep, StateDep, page_links
from app.errors import InvalidField
from app.limits import DB_INT_MAX
from app.openapi import ERRORS, examples
from app.runs import logstream, service, store
from app.runs.models import (
    LaunchRequest,
    NoHostsBody,
    RunLogs,
    RunPage,
    RunRead,
    RunStatus,
    TaskLogs,
    TaskStatus,
)

router = APIRouter(prefix="/runs", tags=["runs"])
log = logging.getLogger("dockfleet.runs")


def _statuses(raw: str | None) -> list[RunStatus] | None:
    if not raw:
        return None
    out = []
    for part in (p.strip() for p in raw.split(",") if p.strip()):
        try:
            out.append(RunStatus(part))
        except ValueError:
            allowed = ", ".join(s.value for s in RunStatus)
            raise InvalidField(
                ["query", "status"], f"unknown status {part!r}; use {allowed}"
            ) from None
    return out


@router.post(
    "/launch/",
    status_code=status.HTTP_201_CREATED,
    response_model=RunRead,
    summary="Launch a run",
    responses={
        **ERRORS(404, 409, 422),
        503: {
            "model": NoHostsBody,
            "description": "No host can take the run (`hosts` says why per host), or the "
            "database is unavailable (`reason`)",
        },
    },
)
async def launch_run(
    body: Annotated[LaunchRequest, examples("launch_default", "launch_tasks", "launch_target")],
    session: SessionDep,
    state: StateDep,
) -> RunRead:
    """Create a run from a directive and place it on the least-loaded eligible host.

    Tasks: the request's list, else the directive's, else every enabled task. The run is
    `starting` when a host had a free slot (and GPUs), else `pending` until one frees.
    503 when no host could ever take it; 409 when `target_host_id` cannot (never a fallback).
    """
    scheduler: service.SchedulerPort | None = state.services.get("scheduler")
    known = scheduler.known() if scheduler is not None else None
    known_gpus = scheduler.known_gpus() if known is not None and scheduler is not None else None
    if known_gpus is None:
        known = None  # a probe's news is not in the view yet: ask the database
    run, tasks = await service.launch(
        session, state.settings, body, state.policy, known[0] if known else None, known_gpus
    )
    await session.commit()
    placement = None
    if scheduler is not None:
        assert run.id is not None
        future = scheduler.submit(
            run.id, run.gpu_need, run.target_host_id, run.gpu_memory_mb, run.gpu_name
        )
        try:  # the pass that includes this run, if it comes soon; else the run is pending
            placement = await asyncio.wait_for(
                asyncio.shield(future), state.settings.launch_wait_seconds
            )
        except TimeoutError:
            placement = None
    if placement is not None:
        run.status = RunStatus.starting.value
        run.worker_host_id, run.worker_host_name = placement.host_id, placement.host_name
        run.gpu_device_ids, run.placements = list(placement.gpu_ids), 1
        run.placed_at = clock.now()
        return store.to_read(run, tasks)
    try:
        waiting = await service.explain_pending(session, state.settings, [run], known, known_gpus)
    except (DBAPIError, PoolTimeout) as exc:  # the run is committed: never a 503 (a retry doubles)
        if unavailable_reason(exc) is None:
            raise
        log.warning("run %s pending; its reasons unread: database unavailable", run.id)
        waiting = {}
    return store.to_read(run, tasks, waiting.get(run.id or 0))


@router.get("/", response_model=RunPage, summary="List runs, newest first", responses=ERRORS(422))
async def list_runs(
    request: Request,
    session: SessionDep,
    state: StateDep,
    page: PageDep,
    status_: Annotated[
        str | None,
        Query(
            alias="status",
            max_length=200,
            description="One status or a comma list, e.g. running,pending",
        ),
    ] = None,
    worker_host_id: Annotated[
        int | None, Query(ge=1, le=DB_INT_MAX, description="Only runs on this host.")
    ] = None,
    directive_id: Annotated[
        int | None, Query(ge=1, le=DB_INT_MAX, description="Only runs of this directive.")
    ] = None,
) -> RunPage:
    """Runs with their tasks; filter by status, host and directive."""
    count, runs = await store.list_runs(
        session,
        statuses=_statuses(status_),
        worker_host_id=worker_host_id,
        directive_id=directive_id,
        limit=page.limit,
        offset=page.offset,
    )
    tasks = await store.tasks_of(session, [r.id for r in runs if r.id is not None])
    nxt, prev = page_links(request, page, count)
    waiting = await service.explain_pending(session, state.settings, runs)
    results = [store.to_read(r, tasks[r.id or 0], waiting.get(r.id or 0)) for r in runs]
    return RunPage(count=count, next=nxt, previous=prev, results=results)


@router.get("/{run_id}/", response_model=RunRead, summary="Get one run", responses=ERRORS(404))
async def get_run(run_id: RunId, session: SessionDep, state: StateDep) -> RunRead:
    """A run with its tasks, host, GPU ids, timings and errors; a pending one says what it
    waits for (`waiting_for`)."""
    run = await store.get_or_raise(session, run_id)
    waiting = await service.explain_pending(session, state.settings, [run])
    return await store.read(session, run, waiting.get(run_id))


@router.post(
    "/{run_id}/cancel/", response_model=RunRead, summary="Cancel a run", responses=ERRORS(404, 409)
)
async def cancel_run(run_id: RunId, session: SessionDep, state: StateDep) -> RunRead:
    """Pending: cancelled at once. Running: its container gets SIGTERM, then SIGKILL after
    `DOCKFLEET_STOP_TIMEOUT_SECONDS`; the slot and GPUs are freed. 409 if already finished."""
    run = await service.cancel(session, state.settings, state.services.get("scheduler"), run_id)
    return await store.read(session, run)


@router.get(
    "/{run_id}/logs/",
    response_model=RunLogs,
    summary="Logs of a run's tasks",
    responses={
        **ERRORS(404),
        200: {
            "content": {"text/plain": {}},
            "description": "JSON, or a text stream with ?follow=true",
        },
    },
)
async def run_logs(
    run_id: RunId,
    session: SessionDep,
    state: StateDep,
    follow: Annotated[
        bool, Query(description="Stream output (text/plain) until the run ends.")
    ] = False,
) -> RunLogs | StreamingResponse:
    """Stored logs (a bounded tail per task); `?follow=true` streams live output as it runs."""
    run = await store.get_or_raise(session, run_id)
    if follow:
        return StreamingResponse(
            logstream.follow(state, run_id), media_type="text/plain; charset=utf-8"
        )
    tasks = (await store.tasks_of(session, [run_id], with_logs=True))[run_id]
    return RunLogs(
        run_id=run_id,
        status=RunStatus(run.status),
        tasks=[
            TaskLogs(
                position=t.position,
                task_name=t.task_name,
                status=TaskStatus(t.status),
                attempt=t.attempt,
                exit_code=t.exit_code,
                truncated=t.logs_truncated,
                logs=t.logs,
            )
            for t in tasks
        ],
    )
