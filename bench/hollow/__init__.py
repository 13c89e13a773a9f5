"""A hollow Docker engine: one asyncio process answering the Engine API calls dockfleet (and
aiodocker) make, on one unix socket per simulated host. Containers "run" for a set time.

In process (tests)::

    async with running(tmp_path, hosts=3, run_ms=50) as hollow:
        docker = aiodocker.Docker(url=f"unix://{hollow.paths[0]}")

Standalone: `python -m bench.hollow --dir /tmp/hollow --hosts 1000 --latency-ms 2 --run-ms 200`.
See bench/hollow/README.md for what it implements and what it does not.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.hollow.engine import Engine, Settings, normalise_image
from bench.hollow.server import HollowServer

__all__ = ["Engine", "Hollow", "HollowServer", "Settings", "running"]


@dataclass
class Hollow:
    """A started engine: its state, its server and the socket paths (one per host)."""

    engine: Engine
    server: HollowServer
    paths: list[str]


@asynccontextmanager
async def running(
    directory: str | Path,
    hosts: int,
    *,
    latency_ms: float = 2.0,
    run_ms: float = 200.0,
    images: Iterable[str] | None = None,
    pull: bool = True,
) -> AsyncIterator[Hollow]:
    """Serve `hosts` hollow daemons in this event loop; closed (sockets removed) on exit."""
    settings = Settings(latency_s=latency_ms / 1000, run_s=run_ms / 1000, pull=pull)
    if images is not None:
        settings.images = {normalise_image(i) for i in images}
    engine = Engine(settings)
    server = HollowServer(engine, directory)
    try:
        paths = await server.start(hosts)
        yield Hollow(engine, server, paths)
    finally:
        await server.close()
