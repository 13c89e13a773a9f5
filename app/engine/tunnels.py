"""SSH tunnels: an asyncssh connection plus a local port forwarded to the remote Docker."""

from __future__ import annotations

import asyncio
import logging

import asyncssh

from app.hosts.models import SSHConfig

log = logging.getLogger("dockfleet.engine")
# asyncssh logs connection details at INFO; keep it quiet so nothing about keys leaks.
logging.getLogger("asyncssh").setLevel(logging.WARNING)


class _Watch(asyncssh.SSHClient):
    """Notes when the SSH connection goes away."""

    def __init__(self) -> None:
        self.lost = False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True


class Tunnel:
    """A forward from 127.0.0.1:<port> to remote_host:remote_port as seen by the SSH server."""

    def __init__(
        self, conn: asyncssh.SSHClientConnection, watch: _Watch, listener: asyncssh.SSHListener
    ) -> None:
        self._conn = conn
        self._watch = watch
        self._listener = listener
        self.port = listener.get_port()

    @classmethod
    async def open(
        cls, ssh: SSHConfig, remote_host: str, remote_port: int, connect_timeout: float
    ) -> Tunnel:
        """Connect and start forwarding; raises asyncssh/OS errors as they come."""
        conn, watch = await asyncssh.create_connection(
            _Watch,
            ssh.host,
            ssh.port,
            username=ssh.user,
            client_keys=[ssh.key_path],
            known_hosts=ssh.known_hosts,
            agent_path=None,
            config=[],
            password=None,
            kbdint_auth=False,
            connect_timeout=connect_timeout,
            keepalive_interval=15,
            keepalive_count_max=3,
        )
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
