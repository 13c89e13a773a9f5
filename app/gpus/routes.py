"""HTTP routes for /api/worker-hosts/{id}/gpus/: a host's GPU inventory, and a probe now."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response, status

from app import clock
from app.deps import HostId, SessionDep, StateDep
from app.errors import Conflict
from app.gpus import store
from app.gpus.models import GpuInventory
from app.gpus.offer import GpuState, gpu_run_reasons
from app.gpus.probe import GpuProber
from app.hosts import store as hosts_store
from app.hosts.eligibility import ineligible_reasons
from app.hosts.models import WorkerHost
from app.openapi import ERRORS

router = APIRouter(prefix="/worker-hosts", tags=["gpus"])
ANSWER_WITHIN = 20.0  # seconds a POST waits for its probe (clients time out at 30 s)


async def _inventory(
    session: SessionDep, state: StateDep, host: WorkerHost, probing: bool = False
) -> GpuInventory:
    assert host.id is not None
    gpus: GpuState | None = (await store.states(session, [host.id])).get(host.id)
    load = (await hosts_store.loads(session, [host.id])).get(host.id)
    in_use = set(load.gpus_in_use) if load else set()
    now, stale = clock.now(), state.settings.stale_after_seconds
    reasons = ineligible_reasons(host, now, stale) if host.caps().gpus else []
    reasons += gpu_run_reasons(host.caps(), gpus, in_use)
    return await store.inventory(session, host, reasons, probing)


def _prober(state: StateDep) -> GpuProber:
    prober: GpuProber | None = state.services.get("gpus")
    if prober is None:
        raise Conflict("the GPU prober is not running")
    return prober


@router.get(
    "/{host_id}/gpus/",
    response_model=GpuInventory,
    summary="A host's GPUs as its last probe found them",
    responses=ERRORS(404),
)
async def host_gpus(host_id: HostId, session: SessionDep, state: StateDep) -> GpuInventory:
    """Declared vs found, the last probe (status, error, when), and each GPU: index, UUID,
    name, memory, utilisation, temperature, power, processes, whether it is busy elsewhere,
    unhealthy or held by a run of ours, and why it is not given out."""
    return await _inventory(session, state, await hosts_store.get_or_raise(session, host_id))


@router.post(
    "/{host_id}/gpus/probe/",
    response_model=GpuInventory,
    summary="Probe a host's GPUs now",
    responses={
        202: {"description": "Still running after 20 s (a pull, say): `probing` is true."},
        **ERRORS(404, 409),
    },
)
async def probe_gpus(
    host_id: HostId, session: SessionDep, state: StateDep, response: Response
) -> GpuInventory:
    """Run the GPU probe container on the host now (through its connector) and answer with the
    inventory it wrote; 202 with `probing: true` when it takes longer than 20 s (a pull of the
    probe image, say: it goes on in the background). 409 for a disabled host."""
    host = await hosts_store.get_or_raise(session, host_id)
    if not host.enabled:
        raise Conflict(f"worker host {host_id} is disabled: it is never contacted")
    prober = _prober(state)
    await session.commit()  # hold no connection while Docker is asked
    task = prober.probe(host_id)
    try:
        await asyncio.wait_for(asyncio.shield(task), ANSWER_WITHIN)
        probing = False
    except TimeoutError:
        response.status_code = status.HTTP_202_ACCEPTED
        probing = True
    session.expire_all()
    host = await hosts_store.get_or_raise(session, host_id)
    return await _inventory(session, state, host, probing)
