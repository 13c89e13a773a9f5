"""HealthMonitor: live-checks hosts through the engine and records what it finds.

Each enabled host is checked on its own timer (spread over the interval, never in a burst), and
every check is bounded by the Docker deadline, so a silent host never delays another. A host
that failed a check is swept (our unclaimed leftover containers stopped and removed, lingering
holds released) by the `sweeper` hook on its next good check, before it is healthy again.

A timer check that finds a healthy host still healthy changes nothing but its timestamps: those
are kept in memory and written for all such hosts in one statement every few seconds
(`FLUSH_SECONDS`, or each interval when that is shorter), so a quiet fleet costs a read and a
ping per check, not a write transaction. Anything else (a flip, a failure, new facts, a sweep,
a check someone asked for) is written at once.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from sqlalchemy import bindparam, func, literal, update
from sqlmodel import col, select

from app import clock, logs
from app.config import Settings
from app.db import Database, UTCDateTime
from app.engine.endpoint import Endpoint
from app.engine.pool import DockerPool
from app.errors import EngineError
from app.events import store as events
from app.hosts.models import CheckResult, WorkerHost

log = logging.getLogger("dockfleet.health")

# How long a quiet check's timestamps may wait in memory (far below stale_after_seconds).
FLUSH_SECONDS = 5.0
# How long the list of enabled hosts is reused by the timer (a new or re-enabled host is
# checked at once through check_soon regardless).
IDS_SECONDS = 5.0

# The sweeper returns None when the host is clean, else why it could not be swept.
Sweeper = Callable[[Endpoint], Awaitable[str | None]]


class HealthMonitor:
    """Checks every enabled host each interval; new hosts at once."""

    def __init__(self, db: Database, pool: DockerPool, settings: Settings) -> None:
        self.db = db
        self.pool = pool
        self.interval = settings.health_interval_seconds
        self.facts_every = settings.facts_refresh_seconds
        # Quiet checks' times wait at most this long (never longer than one interval).
        self.flush_every = min(FLUSH_SECONDS, self.interval) if self.interval > 0 else FLUSH_SECONDS
        self._limit = asyncio.Semaphore(settings.health_concurrency)
        self._task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[CheckResult | None]] = set()
        self._inflight: dict[int, asyncio.Task[CheckResult | None]] = {}
        self._due: dict[int, float] = {}
        self._seen: dict[int, datetime] = {}  # quiet checks' timestamps, not written yet
        self._ids: tuple[float, set[int]] | None = None  # (loop time read, enabled host ids)
        self._ids_changes = 0  # hosts_changed() calls so far (a read racing one is not cached)
        self.sweeper: Sweeper | None = None
        # Called with the host id whenever a host's health flips (either way), and after
        # every failed check.
        self.on_change: list[Callable[[int], None]] = []
        self.on_failure: list[Callable[[int], None]] = []

    @property
    def enabled(self) -> bool:
        """False when DOCKFLEET_HEALTH_INTERVAL_SECONDS is 0."""
        return self.interval > 0

    async def check(
        self, host_id: int, quiet: bool = False, row: WorkerHost | None = None
    ) -> CheckResult | None:
        """Live-check one host now and store the result; None if the host is gone.

        Concurrent callers for the same host share one check (a supervisor in trouble, the
        monitor's timer and `?check=true` never pile up checks on a struggling host).
        `quiet` (the timer's checks): a healthy host found healthy has its timestamps written
        with the next flush instead of at once.
        """
        task = self._inflight.get(host_id)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._check(host_id, quiet, row))
            self._inflight[host_id] = task
            task.add_done_callback(lambda _t: self._inflight.pop(host_id, None))
        return await asyncio.shield(task)

    async def _check(
        self, host_id: int, quiet: bool = False, row: WorkerHost | None = None
    ) -> CheckResult | None:
        logs.HOST_ID.set(host_id)  # this check's log lines say which host they are about
        host = row
        if host is None:
            async with self.db.sessions() as session:
                host = await session.get(WorkerHost, host_id)
        if host is None:
            return None
        ep = Endpoint.of(host)
        was_healthy, needs_sweep = host.healthy, host.needs_sweep
        facts_due = host.facts_at is None or clock.now() - host.facts_at > timedelta(
            seconds=self.facts_every
        )
        stored_version = host.docker_version
        async with self._limit:
            try:
                found = await self.pool.ping(ep, facts=facts_due)
            except EngineError as exc:
                error = str(exc.detail)
                await self._record_failure(host_id, error)
                if was_healthy:  # the flip's log line is its event's (events.record)
                    self._changed(host_id)
                for listener in self.on_failure:
                    listener(host_id)
                return CheckResult(ok=False, latency_ms=None, error=error, docker_version=None)
            problem = None
            if needs_sweep or found.reconnected:
                problem = await self._sweep(ep)
        now = clock.now()
        if quiet and was_healthy and problem is None and found.facts is None:
            self._seen[host_id] = now  # nothing changed but the time: written with the flush
            return CheckResult(
                ok=True, latency_ms=found.latency_ms, error=None, docker_version=stored_version
            )
        self._seen.pop(host_id, None)
        values: dict[str, object] = {"last_seen_at": now, "last_check_at": now}
        if found.facts is not None:
            facts = found.facts
            stored_version = facts.docker_version
            values.update(
                docker_version=facts.docker_version,
                api_version=facts.api_version,
                ncpu=facts.ncpu,
                mem_total=facts.mem_total,
                runtimes=facts.runtimes,
                facts_at=now,
            )
        if problem is not None:
            error = f"reachable, but its leftover containers are not swept yet: {problem}"
            await self._write(host_id, {**values, "healthy": False, "last_error": error})
            return CheckResult(
                ok=False, latency_ms=found.latency_ms, error=error, docker_version=stored_version
            )
        values.update(
            healthy=True,
            last_error=None,
            unhealthy_since=None,
            consecutive_failures=0,
            needs_sweep=False,
        )
        await self._write(host_id, values)
        if not was_healthy:
            self._changed(host_id)
        return CheckResult(
            ok=True, latency_ms=found.latency_ms, error=None, docker_version=stored_version
        )

    async def _sweep(self, ep: Endpoint) -> str | None:
        if self.sweeper is None:
            return None
        try:
            return await self.sweeper(ep)
        except Exception as exc:  # a sweep that crashed leaves the host out, never a 500
            log.exception("sweep of host %s crashed", ep.host_id)
            return type(exc).__name__

    def _changed(self, host_id: int) -> None:
        for listener in self.on_change:
            listener(host_id)

    async def flush(self) -> int:
        """Write the quiet checks' timestamps (one statement for all); how many hosts."""
        if not self._seen:
            return 0
        seen, self._seen = self._seen, {}
        stmt = (
            update(WorkerHost)
            .where(col(WorkerHost.id) == bindparam("host_id"))
            .values(last_seen_at=bindparam("seen"), last_check_at=bindparam("seen"))
        )
        rows = [{"host_id": h, "seen": at} for h, at in seen.items()]
        try:
            async with self.db.engine.begin() as conn:
                await conn.execute(stmt, rows)
        except Exception:
            for host_id, at in seen.items():  # kept for the next flush (a newer one wins)
                self._seen.setdefault(host_id, at)
            raise
        return len(rows)

    async def _record_failure(self, host_id: int, error: str) -> None:
        self._seen.pop(host_id, None)
        now = clock.now()
        await self._write(
            host_id,
            {
                "healthy": False,
                "last_check_at": now,
                "last_error": error,
                "needs_sweep": True,
                "consecutive_failures": col(WorkerHost.consecutive_failures) + 1,
                "unhealthy_since": func.coalesce(
                    col(WorkerHost.unhealthy_since), literal(now, UTCDateTime())
                ),
            },
        )

    async def _write(self, host_id: int, values: dict[str, object]) -> bool:
        """Store a check's result; True when it flipped the host's health (then its event is
        written in the same transaction: exactly one per flip, whichever replica saw it)."""
        # A targeted UPDATE so a concurrent PATCH of other columns is never overwritten.
        async with self.db.session_scope() as session:
            healthy = bool(values["healthy"])
            flip = (
                update(WorkerHost)
                .where(col(WorkerHost.id) == host_id, col(WorkerHost.healthy) != healthy)
                .values(healthy=healthy)
                .returning(col(WorkerHost.name))
            )
            flipped = (await session.exec(flip)).first()
            stmt = update(WorkerHost).where(col(WorkerHost.id) == host_id).values(**values)
            await session.exec(stmt)
            if flipped is not None:
                kind = "host.healthy" if healthy else "host.unhealthy"
                error = values.get("last_error")
                await events.record(session, kind, host_id=host_id, host=flipped[0], error=error)
            return flipped is not None

    def hosts_changed(self) -> None:
        """A host was added, enabled, disabled or deleted: the timer reads the list again."""
        self._ids = None
        self._ids_changes += 1

    async def _timer_ids(self, now: float) -> set[int]:
        if self._ids is None or now - self._ids[0] >= IDS_SECONDS:
            changes = self._ids_changes
            ids = set(await self._enabled_ids())
            # A change during the read may be missing from it: cache only a read made after it.
            self._ids = (now, ids) if changes == self._ids_changes else None
            return ids
        return self._ids[1]

    async def _enabled_ids(self) -> list[int]:
        async with self.db.sessions() as session:
            rows = await session.exec(select(WorkerHost.id).where(col(WorkerHost.enabled)))
            return [i for i in rows.all() if i is not None]

    async def tick(self) -> dict[int, CheckResult | None]:
        """Check every enabled host once, concurrently; returns results by host id."""
        ids = await self._enabled_ids()
        results = await asyncio.gather(*(self.check(i) for i in ids), return_exceptions=True)
        out: dict[int, CheckResult | None] = {}
        for host_id, result in zip(ids, results, strict=True):
            if isinstance(result, BaseException):
                logs.pass_failed(log, f"health check of host {host_id} failed", result)
                out[host_id] = None
            else:
                out[host_id] = result
        return out

    def check_soon(self, host_id: int) -> None:
        """Check a host in the background now (a new or re-enabled host), if checks are on."""
        if not self.enabled:
            return
        self._spawn(host_id)

    def _spawn(self, host_id: int, quiet: bool = False, row: WorkerHost | None = None) -> None:
        task = asyncio.get_running_loop().create_task(self._checked(host_id, quiet, row))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _checked(
        self, host_id: int, quiet: bool = False, row: WorkerHost | None = None
    ) -> CheckResult | None:
        try:
            return await self.check(host_id, quiet, row)
        except Exception:
            logs.pass_failed(log, f"health check of host {host_id} failed")
            return None

    def _jitter(self) -> float:
        return self.interval * random.uniform(0.9, 1.1)

    async def _round(self, now: float) -> float:
        """Start the checks that are due; returns how long to sleep until the next one."""
        ids = await self._timer_ids(now)
        for gone in set(self._due) - ids:
            del self._due[gone]
        for host_id in ids - set(self._due):
            # Spread the first checks of hosts we have not seen yet over the interval.
            self._due[host_id] = now + random.uniform(0, min(self.interval, 5.0))
        due = [h for h, at in self._due.items() if at <= now and h not in self._inflight]
        for host_id in due:
            self._due[host_id] = now + self._jitter()
        if due:  # the rows of every host due now, in one read
            async with self.db.sessions() as session:
                query = select(WorkerHost).where(
                    col(WorkerHost.id).in_(due), col(WorkerHost.enabled)
                )
                rows = {h.id: h for h in (await session.exec(query)).all()}
            for host_id in due:
                if host_id in rows and host_id not in self._inflight:
                    self._spawn(host_id, quiet=True, row=rows[host_id])
        upcoming = min(self._due.values(), default=now + self.interval)
        return max(0.05, min(upcoming - now, 1.0))

    async def run(self) -> None:
        """Check each host on its own jittered timer, forever."""
        loop = asyncio.get_running_loop()
        flushed = loop.time()
        while True:
            try:
                pause = await self._round(loop.time())
                if loop.time() - flushed >= self.flush_every:
                    flushed = loop.time()
                    await self.flush()
                pause = min(pause, max(0.05, self.flush_every - (loop.time() - flushed)))
            except Exception:
                logs.pass_failed(log, "health monitor round failed")
                pause = 1.0
            await asyncio.sleep(pause)

    def start(self) -> None:
        """Start the loop (no-op when checks are off)."""
        if self.enabled and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run(), name="health-monitor")

    async def stop(self) -> None:
        """Stop the loop and any check still running."""
        tasks = [t for t in [self._task, *self._pending, *self._inflight.values()] if t]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None
        try:
            await self.flush()
        except Exception:  # the database is gone at shutdown: the times were only times
            log.warning("could not write the last health-check times at shutdown")
