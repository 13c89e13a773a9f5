"""The service's own routes: /healthz (alive, database readable and writable) and /metrics."""

from __future__ import annotations

import logging
import time

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy import literal
from sqlmodel import select

from app import __version__, meta
from app.auth import bearer, matches
from app.deps import AppState, StateDep, get_state
from app.metrics import render_metrics

log = logging.getLogger("dockfleet")
router = APIRouter(tags=["service"])

WRITE_CHECK_EVERY = 1.0  # seconds a write check's result is reused (healthz is not a load test)


class _WriteCheck:
    """The result of the last write check, reused for a second."""

    def __init__(self) -> None:
        self.at = 0.0
        self.ok = True


async def _write_ok(state: AppState) -> bool:
    check: _WriteCheck = state.services.setdefault("healthz", _WriteCheck())
    if time.monotonic() - check.at >= WRITE_CHECK_EVERY:
        try:
            await meta.touch(state.db)
            check.ok = True
        except Exception as exc:
            log.error("database write check failed: %s", type(exc).__name__)
            check.ok = False
        check.at = time.monotonic()
    return check.ok


@router.get(
    "/healthz",
    summary="Process alive, database readable and writable",
    description="200 `{status, version}`; 503 when the database cannot be read or written "
    "(locked past the busy timeout, disk full, gone). With the API token (or when none is set) "
    "it also says which (`database`, `writes`) and the instance id. Needs no token.",
    responses={503: {"description": "Database unreachable or not writable"}},
)
async def healthz(state: StateDep, request: Request) -> JSONResponse:
    # Open to anyone: without a right token it says only ok/error and the version.
    trusted = not state.tokens or matches(bearer(request.scope), [t.encode() for t in state.tokens])
    checks = {"database": "ok", "writes": "ok"}
    try:
        async with state.db.sessions() as session:
            await session.exec(select(literal(1)))
    except Exception as exc:
        log.error("database unreachable: %s", type(exc).__name__)
        checks = {"database": "unreachable", "writes": "failing"}
    else:
        if not await _write_ok(state):
            checks["writes"] = "failing"
    ok = checks == {"database": "ok", "writes": "ok"}
    body: dict[str, object] = {"status": "ok" if ok else "error", "version": __version__}
    if trusted:
        body.update(checks, instance_id=state.instance_id)
    return JSONResponse(body, status_code=200 if ok else 503)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    description="Hosts (health, staleness, load) and runs by status, as Prometheus text.",
    response_class=PlainTextResponse,
    dependencies=[Depends(get_state)],
)
async def metrics(state: StateDep) -> str:
    return await render_metrics(state)
