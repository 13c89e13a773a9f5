"""DockerPool: one aiodocker client (and SSH tunnel) per host, re-opened when they drop."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiodocker
import aiohttp
import aiohttp.abc
from sqlalchemy.exc import SQLAlchemyError

from app.config import Network, address_allowed
from app.engine.client import Deadlines, DockerClient, DockerFacts
from app.engine.endpoint import Endpoint
from app.engine.errors import scrub, translate
from app.engine.tunnels import HostKeyChanged, Tunnel, offered_host_key
from app.errors import EngineError, HostUnreachable
from app.hosts.secrets import SecretPathError
from app.hosts.secrets import check as check_secret

log = logging.getLogger("dockfleet.engine")
IMAGE_MEMORY_SECONDS = 300.0  # an image seen on a host is not looked up again for this long


class _Pinned(aiohttp.abc.AbstractResolver):
    """Resolves one host name to the one address already checked against the allow-list."""

    def __init__(self, host: str, address: str) -> None:
        self.host = host
        self.address = address

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[aiohttp.abc.ResolveResult]:
        if host != self.host:
            raise OSError(f"{host} was not checked against DOCKFLEET_ALLOWED_NETWORKS")
        fam = socket.AF_INET6 if ":" in self.address else socket.AF_INET
        return [
            {
                "hostname": host,
                "host": self.address,
                "port": port,
                "family": fam,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        return None


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
    closed: bool = False  # dropped: a call still in flight on it fails however aiohttp fails

    @property
    def alive(self) -> bool:
        return self.tunnel is None or self.tunnel.alive

    async def close(self) -> None:
        self.closed = True
        try:
            connector = self.docker.connector
            await self.docker.close()
            if not connector.closed:  # a connector we gave aiodocker is ours to close
                await connector.close()
        finally:
            if self.tunnel is not None:
                await self.tunnel.close()


class DockerPool:
    """Pooled Docker clients keyed by host; the seam between dockfleet and the daemons."""

    def __init__(
        self,
        deadlines: Deadlines,
        networks: list[Network | str],
        secrets_root: Path | None = None,
    ) -> None:
        self.deadlines = deadlines
        self.timeout = deadlines.call
        self.networks = networks
        self.secrets_root = secrets_root
        self._images: dict[tuple[int, str], float] = {}
        # Called with (host id, SHA256 fingerprint) when an SSH host key is seen the first
        # time (trust on first use): the caller pins it.
        self.on_host_key: Callable[[int, str], Awaitable[None]] | None = None
        self._slots: dict[int, _Slot] = {}
        self._locks: dict[int, asyncio.Lock] = {}

    async def _resolve(self, ep: Endpoint, host: str, port: int) -> str:
        """The one address to connect to for `host`: it and every other address the name
        resolves to must be allowed (resolved once per connection: no second lookup)."""
        secrets = ep.secrets()
        try:
            literal = ipaddress.ip_address(host.strip("[]"))
            candidates = [str(literal)]
        except ValueError:
            loop = asyncio.get_running_loop()
            try:
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except OSError as exc:
                raise HostUnreachable(scrub(f"cannot resolve {host}: {exc}", secrets)) from exc
            candidates = list(dict.fromkeys(str(info[4][0]) for info in infos))
        for address in candidates:
            if not address_allowed(address, self.networks):
                where = f"{host} ({address})"
                if ep.ssh is not None and host == ep.ssh.host:
                    where = "the SSH server's address"  # ssh_config is never echoed
                text = f"{ep.name}: {where} is outside DOCKFLEET_ALLOWED_NETWORKS"
                raise HostUnreachable(scrub(text, secrets))
        if not candidates:
            raise HostUnreachable(scrub(f"cannot resolve {host}", secrets))
        return candidates[0]

    def _check_files(self, ep: Endpoint) -> None:
        """Key and certificate files must still lie in the secrets directory (a symlink may
        have been changed since the host was registered)."""
        if self.secrets_root is None:
            return
        for field, path in ep.secret_files():
            try:
                check_secret(path, self.secrets_root, must_read=True)
            except SecretPathError as exc:
                raise HostUnreachable(f"{ep.name}: {field} {exc}") from None

    def _client(self, url: str, connector: aiohttp.BaseConnector | None = None) -> aiodocker.Docker:
        timeout = self.deadlines.client_timeout()
        return aiodocker.Docker(url=url, connector=connector, timeout=timeout)

    async def _open(self, ep: Endpoint) -> _Slot:
        fingerprint = ep.fingerprint()
        if ep.type == "docker_socket":
            return _Slot(fingerprint, self._client(ep.base_url), None)
        self._check_files(ep)
        host, port = ep.tcp_target()
        if ep.ssh is not None:
            address = await self._resolve(ep, ep.ssh.host, ep.ssh.port)
            try:
                tunnel = await Tunnel.open(
                    ep.ssh, address, host, port, self.timeout, pinned=ep.ssh_host_key
                )
            except HostKeyChanged as exc:
                raise HostUnreachable(
                    f"{ep.name}: SSH host key changed (pinned {exc.pinned}, now offered "
                    f"{exc.offered}); if the change is expected, accept the new key "
                    f"(POST /api/worker-hosts/{ep.host_id}/ssh-host-key/)"
                ) from None
            except OSError as exc:  # refused, no route: the SSH server, not Docker
                raise translate(exc, ep.name, ep.secrets(), "cannot reach the SSH server") from exc
            if ep.ssh_host_key is None and tunnel.host_key and self.on_host_key is not None:
                await self.on_host_key(ep.host_id, tunnel.host_key)
            return _Slot(fingerprint, self._client(f"http://127.0.0.1:{tunnel.port}"), tunnel)
        address = await self._resolve(ep, host, port)
        ctx = None
        if ep.tls is not None:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ep.tls.ca_cert)
            ctx.load_cert_chain(ep.tls.client_cert, ep.tls.client_key)
        # The name stays in the URL (TLS checks the certificate against it); the connection
        # goes to the address checked above.
        connector = aiohttp.TCPConnector(ssl=ctx or False, resolver=_Pinned(host, address))
        scheme = "https" if ctx is not None else "http"
        return _Slot(fingerprint, self._client(f"{scheme}://{host}:{port}", connector), None)

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

    async def _drop(self, host_id: int, only: _Slot | None = None) -> None:
        """Close the host's client (`only` that one: a newer client is left alone)."""
        if only is not None and self._slots.get(host_id) is not only:
            return
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
        except (EngineError, SQLAlchemyError):
            # A database error raised inside the block (a write made while the client is
            # held) is the database's, never Docker's: its caller waits for the database.
            raise
        except Exception as exc:
            if slot.closed:
                # The client was closed under this call (a live check found the host not
                # answering, or shutdown): aiohttp then fails in ways of its own, even an
                # AssertionError. That is the host's trouble, never the task's.
                raise HostUnreachable(
                    f"{ep.name}: connection closed while waiting for Docker ({type(exc).__name__})"
                ) from exc
            err = translate(exc, ep.name, ep.secrets())
            if isinstance(err, HostUnreachable):
                await self._drop(ep.host_id, slot)
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

    def has_image(self, host_id: int, image: str) -> bool:
        """Whether the image was seen on the host lately (then no inspect is needed)."""
        seen = self._images.get((host_id, image))
        return seen is not None and time.monotonic() - seen < IMAGE_MEMORY_SECONDS

    def saw_image(self, host_id: int, image: str) -> None:
        """The image is on the host now."""
        self._images[(host_id, image)] = time.monotonic()

    def forget_image(self, host_id: int, image: str) -> None:
        """The image turned out to be gone."""
        self._images.pop((host_id, image), None)

    async def offered_host_key(self, ep: Endpoint) -> str:
        """The SSH host key fingerprint the host's SSH server offers now (to accept it)."""
        assert ep.ssh is not None
        try:
            async with asyncio.timeout(self.timeout):
                address = await self._resolve(ep, ep.ssh.host, ep.ssh.port)
                return await offered_host_key(ep.ssh, address, self.timeout)
        except EngineError:
            raise
        except Exception as exc:
            raise translate(exc, ep.name, ep.secrets(), "cannot read the SSH host key") from exc

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
