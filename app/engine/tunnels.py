"""SSH tunnels: an asyncssh connection plus a local port forwarded to the remote Docker."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import asyncssh

from app.hosts.models import SSHConfig

log = logging.getLogger("dockfleet.engine")
# asyncssh logs connection details at INFO; keep it quiet so nothing about keys leaks.
logging.getLogger("asyncssh").setLevel(logging.WARNING)


class HostKeyChanged(Exception):
    """The SSH server offered another key than the one pinned on first use."""

    def __init__(self, pinned: str, offered: str) -> None:
        self.pinned, self.offered = pinned, offered
        super().__init__(f"SSH host key changed (pinned {pinned}, offered {offered})")


class _Watch(asyncssh.SSHClient):
    """Notes when the SSH connection goes away, and checks the host key on first use.

    Without a known_hosts file the first key seen is trusted (and then pinned by the caller);
    with a pinned fingerprint only that key is accepted.
    """

    def __init__(self, pinned: str | None, strict: bool) -> None:
        self.lost = False
        self.pinned = pinned
        self.strict = strict  # a known_hosts file decides alone
        self.offered: str | None = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True

    def validate_host_public_key(
        self, host: str, addr: str, port: int, key: asyncssh.SSHKey
    ) -> bool:
        self.offered = key.get_fingerprint("sha256")
        if self.strict:
            return False
        return self.pinned is None or self.offered == self.pinned


async def offered_host_key(ssh: SSHConfig, address: str, connect_timeout: float) -> str:
    """The SHA256 fingerprint of the host key the SSH server at `address` offers now."""
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, (address, ssh.port))
    except BaseException:
        sock.close()
        raise
    async with asyncio.timeout(connect_timeout):
        key = await asyncssh.get_server_host_key(ssh.host, ssh.port, sock=sock, config=[])
    if key is None:
        raise OSError("the SSH server offered no host key")
    return str(key.get_fingerprint("sha256"))


class Tunnel:
    """A forward from 127.0.0.1:<port> to remote_host:remote_port as seen by the SSH server."""

    def __init__(
        self, conn: asyncssh.SSHClientConnection, watch: _Watch, listener: asyncssh.SSHListener
    ) -> None:
        self._conn = conn
        self._watch = watch
        self._listener = listener
        self.port = listener.get_port()
        key = conn.get_server_host_key()
        # the SHA256 fingerprint of the key the server proved it holds
        self.host_key = key.get_fingerprint("sha256") if key is not None else None

    @classmethod
    async def open(
        cls,
        ssh: SSHConfig,
        address: str,
        remote_host: str,
        remote_port: int,
        connect_timeout: float,
        pinned: str | None = None,
    ) -> Tunnel:
        """Connect to `address` (the one checked address of ssh.host) and start forwarding;
        raises asyncssh/OS errors as they come, HostKeyChanged for a key other than `pinned`.

        With `known_hosts` the key is checked strictly against that file; without it, the first
        key seen is accepted (the caller pins its fingerprint) and later only that one.
        """
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, (address, ssh.port))
        except BaseException:
            sock.close()
            raise
        known: Any = ssh.known_hosts or asyncssh.import_known_hosts("")
        watch_box: list[_Watch] = []

        def factory() -> _Watch:
            watch_box.append(_Watch(pinned, strict=bool(ssh.known_hosts)))
            return watch_box[-1]

        try:
            conn, watch = await asyncssh.create_connection(
                factory,
                ssh.host,
                ssh.port,
                sock=sock,
                username=ssh.user,
                client_keys=[ssh.key_path],
                known_hosts=known,
                agent_path=None,
                config=[],
                password=None,
                kbdint_auth=False,
                connect_timeout=connect_timeout,
                keepalive_interval=15,
                keepalive_count_max=3,
            )
        except asyncssh.HostKeyNotVerifiable:
            seen = watch_box[-1] if watch_box else None
            if seen and not seen.strict and pinned and seen.offered and seen.offered != pinned:
                raise HostKeyChanged(pinned, seen.offered) from None
            raise
        try:
            listener = await conn.forward_local_port("127.0.0.1", 0, remote_host, remote_port)
        except BaseException:
            conn.close()
            raise
        log.info("SSH tunnel up on 127.0.0.1:%s", listener.get_port())
        assert isinstance(watch, _Watch)
        return cls(conn, watch, listener)

    @property
    def alive(self) -> bool:
        """False once the SSH connection has dropped."""
        return not self._watch.lost

    async def close(self) -> None:
        """Stop forwarding and close the connection."""
        self._listener.close()
        self._conn.close()
        try:
            await asyncio.wait_for(self._conn.wait_closed(), 5)
        except (TimeoutError, OSError, asyncssh.Error):
            pass
