"""Which orchestrator process drives a run: a lease with an owner id, renewed while it runs.

Several orchestrators may share one database; each run is driven by exactly one of them, and
every write a supervisor makes is fenced: it applies only while `runs.supervisor` is still this
process (`fence()`), so a process that lost a run stops writing at once. Lease times come from
the database's clock (PostgreSQL's `now()`; a SQLite file lives on one machine, whose clock it is).

The owner id is `hostname:pid:start:boot:pidns:nonce`: a restarted process on the same machine
(same boot, same pid namespace) can tell at once that a previous owner is dead — its pid is gone,
or now belongs to a process started at another time — instead of waiting for the lease to lapse.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from app import clock
from app.runs.models import ACTIVE, Run


class LostOwnership(Exception):
    """This process no longer drives the run (another one adopted it): stop touching it."""


def _read(path: str) -> str:
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return ""


def _start_ticks(pid: int) -> str:
    """The kernel's start time of `pid` (field 22 of /proc/<pid>/stat), or ""."""
    stat = _read(f"/proc/{pid}/stat")
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else ""


def _machine() -> tuple[str, str, str]:
    boot = _read("/proc/sys/kernel/random/boot_id").replace("-", "")[:12] or "noboot"
    try:
        pidns = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        pidns = "nons"
    return socket.gethostname(), boot, pidns


def new_owner_id() -> str:
    """This process's owner id."""
    host, boot, pidns = _machine()
    pid = os.getpid()
    return f"{host}:{pid}:{_start_ticks(pid) or 0}:{boot}:{pidns}:{uuid.uuid4().hex[:8]}"


def owner_is_dead(owner: str) -> bool:
    """True only when the owner ran on this machine (same boot and pid namespace) and its
    process is gone or its pid was reused by a younger process."""
    parts = owner.split(":")
    if len(parts) != 6 or not parts[1].isdigit():
        return False  # another format or another machine: wait for the lease
    host, pid_text, start, boot, pidns, _ = parts
    if (host, boot, pidns) != _machine():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False  # this very process (another app instance in it is not "dead")
    now_start = _start_ticks(pid)
    return not now_start or now_start != start


async def db_now(session: AsyncSession) -> datetime:
    """The database's time, aware UTC (SQLite: this machine's clock, which is the file's)."""
    bind = session.bind
    if bind is None or bind.dialect.name == "sqlite":
        return clock.now()
    value = (await session.exec(select(func.now()))).one()[0]  # type: ignore[call-overload]
    assert isinstance(value, datetime)
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def _active() -> ColumnElement[bool]:
    return col(Run.status).in_([s.value for s in ACTIVE])


async def claim(
    session: AsyncSession, run_id: int, me: str, seen_owner: str | None, lease: float
) -> bool:
    """Take the run over if its owner is still `seen_owner` and that owner is gone or lapsed."""
    now = await db_now(session)
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


async def fence(session: AsyncSession, run_id: int, me: str, lease: float) -> None:
    """First statement of every supervisor write: renew the lease if the run is still ours,
    else raise LostOwnership (the transaction then writes nothing)."""
    now = await db_now(session)
    stmt = (
        update(Run)
        .where(col(Run.id) == run_id, col(Run.supervisor) == me)
        .values(lease_expires_at=now + timedelta(seconds=lease))
    )
    if (await session.exec(stmt)).rowcount != 1:
        raise LostOwnership(f"run {run_id} is no longer driven by this process")


async def renew(session: AsyncSession, me: str, lease: float) -> None:
    """Extend the lease of every active run this process drives."""
    now = await db_now(session)
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
