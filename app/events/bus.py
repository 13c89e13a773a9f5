"""The in-process wake-up of event readers: a commit that wrote events notifies every waiter."""

from __future__ import annotations

import asyncio
import threading


class Bus:
    """Wakes this process's streams when an event committed (thread-safe, any event loop)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = set()
        self.closed = False
        self.wakes = 0  # how many times it woke waiters (readers compare it to their last)

    def close(self) -> None:
        """The server is shutting down: wake every stream, and let none wait again (streams
        end, so the server does not wait for clients that never hang up)."""
        self.closed = True
        self.notify()

    def notify(self) -> None:
        """Wake every waiter."""
        with self._lock:
            self.wakes += 1
            waiters, self._waiters = self._waiters, set()
        for loop, fut in waiters:
            if not loop.is_closed():
                loop.call_soon_threadsafe(_settle, fut)

    async def wait(self, seconds: float, since: int | None = None) -> bool:
        """Until the next notify (True) or `seconds` passed (False). `since`: the `wakes` seen
        before the caller last read; a notify since then returns at once (no lost wake-up)."""
        if self.closed or (since is not None and since != self.wakes):
            return True
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        entry = (loop, fut)
        with self._lock:
            self._waiters.add(entry)
        try:
            await asyncio.wait_for(asyncio.shield(fut), seconds)
            return True
        except TimeoutError:
            return False
        finally:
            with self._lock:
                self._waiters.discard(entry)


def _settle(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


BUS = Bus()
