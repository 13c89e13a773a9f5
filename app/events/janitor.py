"""Janitor: keeps the event record within its retention (count and age), in the background."""

from __future__ import annotations

import asyncio
import logging

from app.deps import AppState
from app.events import store

log = logging.getLogger("dockfleet.events")

INTERVAL = 60.0


class Janitor:
    """Trims the `events` table every minute (idempotent: replicas may all run it)."""

    def __init__(self, state: AppState, interval: float = INTERVAL) -> None:
        self.state = state
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    async def tick(self) -> int:
        """One trim; returns how many events were deleted."""
        settings = self.state.settings
        async with self.state.db.session_scope() as session:
            return await store.trim(
                session, keep=settings.events_keep, keep_days=settings.events_keep_days
            )

    async def run(self) -> None:
        """Trim, then every interval."""
        while True:
            try:
                await self.tick()
            except Exception as exc:  # a locked or absent database: try again next time
                log.warning("event trim failed: %s: %s", type(exc).__name__, exc)
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        """Start the loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run(), name="events-janitor")

    async def stop(self) -> None:
        """Stop the loop."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
