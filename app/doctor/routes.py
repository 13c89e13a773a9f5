"""HTTP route for /api/worker-hosts/{id}/doctor/: every check of a host, now."""

from __future__ import annotations

from fastapi import APIRouter

from app.deps import HostId, SessionDep, StateDep
from app.doctor.checks import Doctor
from app.doctor.schemas import DoctorReport
from app.errors import Conflict
from app.hosts import store as hosts_store
from app.openapi import ERRORS

router = APIRouter(prefix="/worker-hosts", tags=["doctor"])


@router.post(
    "/{host_id}/doctor/",
    response_model=DoctorReport,
    summary="Check a host before trusting it",
    responses=ERRORS(404, 409),
)
async def doctor(host_id: HostId, session: SessionDep, state: StateDep) -> DoctorReport:
    """Reachable, Docker version/API, the task images (present, or pullable), NVIDIA runtime,
    GPUs found vs declared, free disk on the Docker root, clock skew against the server: one
    line each with ok/warn/fail/skip and how to fix it. 409 for a disabled host (never
    contacted)."""
    host = await hosts_store.get_or_raise(session, host_id)
    if not host.enabled:
        raise Conflict(f"worker host {host_id} is disabled: it is never contacted")
    await session.commit()  # hold no connection while Docker is asked
    return await Doctor(state).examine(host_id)
