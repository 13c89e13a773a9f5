"""Async helpers for assertions against fleet daemons: aiodocker clients, ping, run, SSH tunnels.

Create clients inside coroutines and close them (`async with`): aiohttp warnings are errors here.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiodocker
import asyncssh

from .daemons import SSH_DOCKER_PORT, TLS_PORT, Daemon


def docker_for(daemon: Daemon) -> aiodocker.Docker:
    """aiodocker client on the daemon's local unix socket (use as `async with`)."""
    return aiodocker.Docker(url=f"unix://{daemon.socket_path}")


def tls_context(daemon: Daemon, client_cert: bool = True) -> ssl.SSLContext:
    assert daemon.tls is not None, f"{daemon.name} has no TLS"
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=daemon.tls.ca_cert)
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT  # the default from Python 3.13 on
    if client_cert:
        ctx.load_cert_chain(daemon.tls.client_cert, daemon.tls.client_key)
    return ctx


def tls_docker(daemon: Daemon, client_cert: bool = True) -> aiodocker.Docker:
    """aiodocker client over https://<ns ip>:2376 with mutual TLS."""
    ctx = tls_context(daemon, client_cert)
    return aiodocker.Docker(url=f"https://{daemon.ns_ip}:{TLS_PORT}", ssl_context=ctx)


async def ping(docker: aiodocker.Docker) -> str:
    """GET /_ping (aiodocker has no public ping); returns "OK"."""
    async with docker._query("_ping", versioned_api=False) as resp:
        return await resp.text()


async def run_container(
    docker: aiodocker.Docker,
    cmd: list[str],
    *,
    image: str = "busybox:1.36",
    host_config: dict | None = None,
) -> tuple[int, str]:
    """Create/start/wait/log/delete one container (NetworkMode none); -> (exit code, output)."""
    config: dict[str, Any] = {
        "Image": image,
        "Cmd": cmd,
        "Labels": {"dfl.test": "1"},
        "HostConfig": {"NetworkMode": "none", **(host_config or {})},
    }
    container = await docker.containers.create(config)
    try:
        await container.start()
        result = await container.wait()
        logs = await container.log(stdout=True, stderr=True)
        return result["StatusCode"], "".join(logs)
    finally:
        await container.delete(force=True)


@asynccontextmanager
async def ssh_tunnel(daemon: Daemon, key_path: str | None = None) -> AsyncIterator[int]:
    """SSH to the daemon's host and forward a free local port to its dockerd; yields the port."""
    assert daemon.ssh is not None, f"{daemon.name} has no SSH access"
    access = daemon.ssh
    async with asyncssh.connect(
        access.host,
        port=access.port,
        username=access.user,
        client_keys=[key_path or access.key_path],
        known_hosts=access.known_hosts,
    ) as conn:
        listener = await conn.forward_local_port("127.0.0.1", 0, "127.0.0.1", SSH_DOCKER_PORT)
        try:
            yield listener.get_port()
        finally:
            listener.close()
            await listener.wait_closed()
