"""HealthMonitor: live-checks hosts through the engine and records what it finds."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from sqlalchemy import update
from sqlmodel import col, select

from app import clock
from app.config import Settings
from app.db import Database
from app.engine.endpoint import Endpoint
from app.engine.pool import DockerPool
from app.errors import EngineError
from app.hosts.models import CheckResult, WorkerHost

log = logging.getLogger("dockfleet.health")


class HealthMonitor:
    """Checks every enabled host each interval (bounded concurrency); new hosts at once."""

    def __init__(self, db: Database, pool: DockerPool, settings: Settings) -> None:
        self.db = db
        self.pool = pool
        self.interval = settings.health_interval_seconds
        self._limit = asyncio.Semaphore(settings.health_concurrency)
        self._task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[CheckResult | None]] = set()
        self.on_healthy: list[Callable[[int], None]] = []

    @property
    def enabled(self) -> bool:
        """False when DOCKFLEET_HEALTH_INTERVAL_SECONDS is 0."""
        return self.interval > 0

    async def check(self, host_id: int) -> CheckResult | None:
        """Live-check one host and store the result; None if the host is gone."""
        async with self.db.sessions() as session:
            host = await session.get(WorkerHost, host_id)
            if host is None:
                return None
            ep = Endpoint.of(host)
            was_healthy = host.healthy
        async with self._limit:
            try:
                facts = await self.pool.ping(ep)
            except EngineError as exc:
                result = CheckResult(
                    ok=False, latency_ms=None, error=str(exc.detail), docker_version=None
                )
                await self._record_failure(host_id, result.error or "unreachable")
                if was_healthy:
                    log.warning("host %s (%s) is unhealthy: %s", host_id, ep.name, result.error)
                return result
        now = clock.now()
        values = {
            "healthy": True,
            "last_seen_at": now,
            "last_check_at": now,
            "last_error": None,
            "docker_version": facts.docker_version,
            "api_version": facts.api_version,
            "ncpu": facts.ncpu,
            "mem_total": facts.mem_total,
            "runtimes": facts.runtimes,
        }
        await self._write(host_id, values)
        if not was_healthy:
            log.info("host %s (%s) is healthy (Docker %s)", host_id, ep.name, facts.docker_version)
        for listener in self.on_healthy:
            listener(host_id)
        return CheckResult(
            ok=True, latency_ms=facts.latency_ms, error=None, docker_version=facts.docker_version
        )

    async def _record_failure(self, host_id: int, error: str) -> None:
        await self._write(
            host_id, {"healthy": False, "last_check_at": clock.now(), "last_error": error}
        )

    async def _write(self, host_id: int, values: dict[str, object]) -> None:
        # A targeted UPDATE so a concurrent PATCH of other columns is never overwritten.
        async with self.db.session_scope() as session:
            stmt = update(WorkerHost).where(col(WorkerHost.id) == host_id).values(**values)
            await session.exec(stmt)

    async def tick(self) -> dict[int, CheckResult | None]:
        """Check every enabled host once, concurrently; returns results by host id."""
        async with self.db.sessions() as session:
            rows = await session.exec(select(WorkerHost.id).where(col(WorkerHost.enabled)))
            ids = [i for i in rows.all() if i is not None]
        results = await asyncio.gather(*(self.check(i) for i in ids), return_exceptions=True)
        out: dict[int, CheckResult | None] = {}
        for host_id, result in zip(ids, results, strict=True):
            if isinstance(result, BaseException):
                log.error("health check of host %s crashed", host_id, exc_info=result)
                out[host_id] = None
            else:
                out[host_id] = result
        return out

    def check_soon(self, host_id: int) -> None:
        """Check a host in the background now (a new or re-enabled host), if checks are on."""
        if not self.enabled:
            return
        task = asyncio.get_running_loop().create_task(self.check(host_id))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def run(self) -> None:
        """Tick forever, every interval."""
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("health monitor tick failed")
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        """Start the loop (no-op when checks are off)."""
        if self.enabled and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run(), name="health-monitor")

    async def stop(self) -> None:
        """Stop the loop and any check still running."""
        tasks = [t for t in [self._task, *self._pending] if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None
