"""DockerPool: a client closed under a call in flight (pure logic, loopback only)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from app.config import parse_networks
from app.engine.client import Deadlines
from app.engine.endpoint import Endpoint
from app.engine.pool import DockerPool
from app.errors import HostUnreachable


@asynccontextmanager
async def silent_daemon() -> AsyncIterator[int]:
    """A loopback port that takes connections and never answers (a frozen dockerd)."""

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client hangs up
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("wait", [0.01, 0.3])
async def test_a_client_closed_under_a_call_is_the_hosts_trouble(wait: float) -> None:
    """A live check that finds the host not answering closes its client while a task's call
    is still waiting. aiohttp then fails that call in ways of its own (an AssertionError on
    the old code, seen with a frozen dockerd as the run's error "AssertionError"); the call
    must fail as the host's trouble (HostUnreachable), never as a Docker call failure that
    fails the task."""
    async with silent_daemon() as port:
        ep = Endpoint(1, "frozen", "docker_tcp", f"tcp://127.0.0.1:{port}")
        pool = DockerPool(Deadlines(call=5.0), parse_networks("127.0.0.0/8"))

        async def call() -> None:
            async with pool.docker(ep) as docker:
                await docker.ping()

        pending = asyncio.create_task(call())
        await asyncio.sleep(wait)
        await pool.forget(ep.host_id)
        with pytest.raises(HostUnreachable, match="connection closed"):
            async with asyncio.timeout(5):
                await pending
        await pool.close()
