"""Owner ids tell processes apart on one machine; a write of a run this process lost is fenced."""

from __future__ import annotations

import subprocess
import sys

import pytest
from fastapi import FastAPI

from app.deps import AppState
from app.runs.models import Run
from app.scheduling import ownership


def _owner_of_a_process_that_ended() -> str:
    code = "from app.scheduling.ownership import new_owner_id; print(new_owner_id())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_an_owner_id_says_machine_boot_pid_namespace_and_start_time() -> None:
    me = ownership.new_owner_id()
    _host, pid, start, boot, pidns, nonce = me.split(":")
    assert pid.isdigit() and start.isdigit() and boot and pidns and len(nonce) == 8
    assert ownership.owner_is_dead(me) is False  # this very process


def test_a_process_that_ended_is_dead_and_a_reused_pid_is_not_its_owner() -> None:
    gone = _owner_of_a_process_that_ended()
    assert ownership.owner_is_dead(gone) is True
    host, _pid, _start, boot, pidns, nonce = ownership.new_owner_id().split(":")
    reused = ":".join([host, "1", "12345", boot, pidns, nonce])  # pid 1, another start time
    assert ownership.owner_is_dead(reused) is True


@pytest.mark.parametrize(
    "owner",
    [
        "elsewhere:1:1:aaaaaaaaaaaa:4026531836:abcdef12",  # another machine (or boot)
        "old-format:123:abcdef12",  # an id of the earlier format: wait for its lease
    ],
)
def test_an_owner_elsewhere_is_never_judged_dead(owner: str) -> None:
    assert ownership.owner_is_dead(owner) is False


async def test_a_write_of_a_run_another_process_took_is_fenced(app: FastAPI) -> None:
    state: AppState = app.state.dockfleet
    await state.services["scheduler"].stop()  # it would adopt a run whose lease lapsed
    async with state.db.session_scope() as session:
        run = Run(status="running", supervisor="someone-else", directive_snapshot={})
        session.add(run)
        await session.flush()
        run_id = run.id
    assert run_id is not None
    with pytest.raises(ownership.LostOwnership):
        async with state.db.session_scope() as session:
            await ownership.fence(session, run_id, "me", 30)
    async with state.db.session_scope() as session:
        await ownership.fence(session, run_id, "someone-else", 30)  # the owner may write
