"""Which orchestrator process drives a run: a lease with an owner id, renewed while it runs.

Several orchestrators may share one database; each run is driven by exactly one of them. The
owner id is `hostname:pid:nonce`, so a restarted process on the same machine can tell at once
that the previous owner is dead (its pid is gone) instead of waiting for the lease to lapse.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, or_, update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from app.runs.models import ACTIVE, Run


def new_owner_id() -> str:
    """This process's owner id."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_is_dead(owner: str) -> bool:
    """True only when the owner ran on this machine and its process is gone."""
    hostname, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if hostname != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False  # this very process (another app instance in it is not "dead")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _active() -> ColumnElement[bool]:
    return col(Run.status).in_([s.value for s in ACTIVE])


async def claim(
    session: AsyncSession,
    run_id: int,
    me: str,
    seen_owner: str | None,
    now: datetime,
    lease: float,
) -> bool:
    """Take the run over if its owner is still `seen_owner` and that owner is gone or lapsed."""
    guard: list[ColumnElement[bool]] = [col(Run.id) == run_id, _active()]
    if seen_owner is None:
        guard.append(col(Run.supervisor).is_(None))
    else:
        guard.append(col(Run.supervisor) == seen_owner)
        if seen_owner != me and not owner_is_dead(seen_owner):
            lapsed = or_(col(Run.lease_expires_at).is_(None), col(Run.lease_expires_at) < now)
            guard.append(lapsed)
    stmt = (
        update(Run)
        .where(and_(*guard))
        .values(supervisor=me, lease_expires_at=now + timedelta(seconds=lease))
    )
    return (await session.exec(stmt)).rowcount == 1


async def renew(session: AsyncSession, me: str, now: datetime, lease: float) -> None:
    """Extend the lease of every active run this process drives."""
    stmt = (
        update(Run)
        .where(col(Run.supervisor) == me, _active())
        .values(lease_expires_at=now + timedelta(seconds=lease))
    )
    await session.exec(stmt)


async def release(session: AsyncSession, me: str) -> None:
    """Give up every lease (clean shutdown): another process, or our restart, adopts at once."""
    stmt = (
        update(Run)
        .where(col(Run.supervisor) == me, _active())
        .values(supervisor=None, lease_expires_at=None)
    )
    await session.exec(stmt)
