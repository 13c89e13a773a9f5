"""DockerPool: one aiodocker client (and SSH tunnel) per host, re-opened when they drop."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiodocker

from app.config import Network, address_allowed
from app.engine.client import Deadlines, DockerClient, DockerFacts
from app.engine.endpoint import Endpoint
from app.engine.errors import translate
from app.engine.tunnels import Tunnel
from app.errors import EngineError, HostUnreachable

log = logging.getLogger("dockfleet.engine")


@dataclass
class CheckResult:
    """What one live check learned: the latency, and the facts when they were read."""

    latency_ms: float
    facts: DockerFacts | None
    reconnected: bool


@dataclass
class _Slot:
    fingerprint: str
    docker: aiodocker.Docker
    tunnel: Tunnel | None
    fresh: bool = True  # not yet used by a live check (its facts are worth reading)

    @property
    def alive(self) -> bool:
        return self.tunnel is None or self.tunnel.alive

    async def close(self) -> None:
        try:
            await self.docker.close()
        finally:
            if self.tunnel is not None:
                await self.tunnel.close()


class DockerPool:
    """Pooled Docker clients keyed by host; the seam between dockfleet and the daemons."""

    def __init__(self, deadlines: Deadlines, networks: list[Network | str]) -> None:
        self.deadlines = deadlines
        self.timeout = deadlines.call
        self.networks = networks
        self._slots: dict[int, _Slot] = {}
        self._locks: dict[int, asyncio.Lock] = {}

    async def _check_address(self, host: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise HostUnreachable(f"cannot resolve {host}: {exc}") from exc
        for info in infos:
            address = str(info[4][0])
            if not address_allowed(address, self.networks):
                raise HostUnreachable(f"{host} ({address}) is outside DOCKFLEET_ALLOWED_NETWORKS")

    def _client(self, url: str, ssl_context: ssl.SSLContext | None = None) -> aiodocker.Docker:
        timeout = self.deadlines.client_timeout()
        return aiodocker.Docker(url=url, ssl_context=ssl_context, timeout=timeout)

    async def _open(self, ep: Endpoint) -> _Slot:
        fingerprint = ep.fingerprint()
        if ep.type == "docker_socket":
            return _Slot(fingerprint, self._client(ep.base_url), None)
        host, port = ep.tcp_target()
        if ep.ssh is not None:
            await self._check_address(ep.ssh.host)
            try:
                tunnel = await Tunnel.open(ep.ssh, host, port, self.timeout)
            except OSError as exc:  # refused, no route: the SSH server, not Docker
                raise translate(exc, ep.name, ep.secrets(), "cannot reach the SSH server") from exc
            return _Slot(fingerprint, self._client(f"http://127.0.0.1:{tunnel.port}"), tunnel)
        await self._check_address(host)
        if ep.tls is not None:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ep.tls.ca_cert)
            ctx.load_cert_chain(ep.tls.client_cert, ep.tls.client_key)
            return _Slot(fingerprint, self._client(f"https://{host}:{port}", ctx), None)
        return _Slot(fingerprint, self._client(f"http://{host}:{port}"), None)

    async def _slot(self, ep: Endpoint) -> _Slot:
        lock = self._locks.setdefault(ep.host_id, asyncio.Lock())
        async with lock:
            slot = self._slots.get(ep.host_id)
            if slot is not None and (slot.fingerprint != ep.fingerprint() or not slot.alive):
                await self._drop(ep.host_id)
                slot = None
            if slot is None:
                try:
                    async with asyncio.timeout(self.timeout):
                        slot = await self._open(ep)
                except EngineError:
                    raise
                except Exception as exc:
                    raise translate(exc, ep.name, ep.secrets()) from exc
                self._slots[ep.host_id] = slot
            return slot

    async def _drop(self, host_id: int) -> None:
        slot = self._slots.pop(host_id, None)
        if slot is not None:
            try:
                await slot.close()
            except Exception:  # closing a broken client must not hide the real error
                log.debug("error closing client of host %s", host_id, exc_info=True)

    @asynccontextmanager
    async def docker(self, ep: Endpoint) -> AsyncIterator[DockerClient]:
        """A client for the host; errors are translated and a broken client is dropped."""
        slot = await self._slot(ep)
        try:
            yield DockerClient(slot.docker, self.deadlines)
        except EngineError:
            raise
        except Exception as exc:
            err = translate(exc, ep.name, ep.secrets())
            if isinstance(err, HostUnreachable):
                await self._drop(ep.host_id)
            raise err from exc

    async def ping(self, ep: Endpoint, facts: bool = False) -> CheckResult:
        """Live check: /_ping within the deadline, plus version and info when `facts` is asked
        for or the connection is new (the host (re)connected).

        A pooled connection (or tunnel) may have died since its last use: then one retry on a
        fresh one. A fresh connection that failed, or any timeout, is the answer as it is.
        """
        pooled = ep.host_id in self._slots
        try:
            return await self._ping_once(ep, facts)
        except HostUnreachable as exc:
            if not pooled or isinstance(exc.__cause__, TimeoutError):
                raise
            return await self._ping_once(ep, facts)

    async def _ping_once(self, ep: Endpoint, want_facts: bool) -> CheckResult:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout):
                slot = await self._slot(ep)
                reconnected, slot.fresh = slot.fresh, False
                async with self.docker(ep) as docker:
                    await docker.ping()
                    facts = await docker.facts() if want_facts or reconnected else None
        except TimeoutError as exc:
            await self._drop(ep.host_id)
            raise HostUnreachable(
                f"{ep.name}: no answer from Docker within {self.timeout:g}s"
            ) from exc
        latency = round((time.perf_counter() - started) * 1000, 2)
        return CheckResult(latency_ms=latency, facts=facts, reconnected=reconnected)

    async def forget(self, host_id: int) -> None:
        """Close a host's client and tunnel (its config changed or it was deleted)."""
        lock = self._locks.setdefault(host_id, asyncio.Lock())
        async with lock:
            await self._drop(host_id)
        self._locks.pop(host_id, None)

    async def close(self) -> None:
        """Close every client and tunnel (shutdown)."""
        for host_id in list(self._slots):
            await self._drop(host_id)
