"""The service's own routes: /healthz (alive, database readable and writable) and /metrics."""

from __future__ import annotations

import logging
import time

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy import literal
from sqlmodel import select

from app import __version__, meta
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
    description="200 `{status, database, writes, version}`; 503 when the database cannot be "
    "read or written (locked past the busy timeout, disk full, gone).",
    responses={503: {"description": "Database unreachable or not writable"}},
)
async def healthz(state: StateDep) -> JSONResponse:
    try:
        async with state.db.sessions() as session:
            await session.exec(select(literal(1)))
    except Exception as exc:
        log.error("database unreachable: %s", type(exc).__name__)
        body = {"status": "error", "database": "unreachable", "version": __version__}
        return JSONResponse(body, status_code=503)
    if not await _write_ok(state):
        body = {"status": "error", "database": "ok", "writes": "failing", "version": __version__}
        return JSONResponse(body, status_code=503)
    body = {"status": "ok", "database": "ok", "writes": "ok", "version": __version__}
    return JSONResponse({**body, "instance_id": state.instance_id})


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    description="Hosts (health, staleness, load) and runs by status, as Prometheus text.",
    response_class=PlainTextResponse,
    dependencies=[Depends(get_state)],
)
async def metrics(state: StateDep) -> str:
    return await render_metrics(state)
