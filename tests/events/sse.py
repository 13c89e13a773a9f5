"""A small reader of a real event stream for tests: messages as dicts, each awaited with a bound."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx


class Stream:
    """The messages of one open GET /api/events/ (comments are counted, not returned)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.reader = asyncio.ensure_future(self._read())
        self.comments = 0
        self.retry: str | None = None

    async def _read(self) -> None:
        # One task reads the body, so a test's bounded wait never cancels a read half-way.
        async for line in self.response.aiter_lines():
            self.queue.put_nowait(line)

    async def next(self, within: float = 10.0) -> dict[str, Any]:
        """The next message: {"id", "event", "data"} (data parsed as JSON)."""
        fields: dict[str, Any] = {}
        data: list[str] = []
        deadline = time.monotonic() + within
        while True:
            left = max(0.0, deadline - time.monotonic())
            line = await asyncio.wait_for(self.queue.get(), left)
            if line == "":
                if data:
                    return {**fields, "data": json.loads("\n".join(data))}
                continue
            if line.startswith(":"):
                self.comments += 1
                continue
            name, _, value = line.partition(": ")
            if name == "data":
                data.append(value)
            elif name == "retry":
                self.retry = value
            else:
                fields[name] = value

    async def take(self, count: int, within: float = 10.0) -> list[dict[str, Any]]:
        """The next `count` messages."""
        return [await self.next(within) for _ in range(count)]

    async def silent(self, seconds: float) -> bool:
        """True when no message comes within `seconds`."""
        try:
            await self.next(seconds)
        except TimeoutError:
            return True
        return False


@asynccontextmanager
async def open_stream(
    client: httpx.AsyncClient,
    params: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> AsyncIterator[Stream]:
    """Open the stream (asserting 200 and text/event-stream) and read its first line."""
    timeout = httpx.Timeout(10, read=None)
    async with client.stream(
        "GET", "/api/events/", params=params, headers=headers, timeout=timeout
    ) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = Stream(response)
        try:
            yield stream
        finally:
            stream.reader.cancel()
            await asyncio.gather(stream.reader, return_exceptions=True)
