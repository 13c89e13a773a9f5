"""A real dockfleet server in a subprocess (uvicorn), for client, CLI and example tests."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class LiveServer:
    """Where the server listens, and its log file."""

    url: str
    log: Path
    db: Path

    def log_tail(self, lines: int = 40) -> str:
        """The end of the server's output, for failure messages."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_env(db: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a server on `db`, without any DOCKFLEET_* of the caller's shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKFLEET_", "DOCKER_"))}
    env.update(
        {
            "DOCKFLEET_DATABASE_URL": f"sqlite+aiosqlite:///{db}",
            "DOCKFLEET_HEALTH_INTERVAL_SECONDS": "0",
            "DOCKFLEET_RECONCILE_INTERVAL_SECONDS": "0",
            "DOCKFLEET_LOG_LEVEL": "warning",
            "DOCKFLEET_SECRETS_DIR": "/tmp",
        }
    )
    env.update(extra or {})
    return env


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


@contextmanager
def live_server(
    tmp: Path,
    env: Mapping[str, str] | None = None,
    *,
    template: Path | None = None,
    timeout: float = 30.0,
) -> Iterator[LiveServer]:
    """Start `uvicorn app.main:app_factory` on a free port; stop it (always) on exit.

    `template`: an already migrated database to start from (saves the migrations' second).
    """
    port = free_port()
    db, log = tmp / "dockfleet.db", tmp / "server.log"
    if template is not None:
        shutil.copy(template, db)
    server = LiveServer(url=f"http://127.0.0.1:{port}", log=log, db=db)
    argv = [sys.executable, "-m", "uvicorn", "app.main:app_factory", "--factory"]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, cwd=ROOT, env=server_env(db, env), stdout=out, stderr=subprocess.STDOUT
        )
    try:
        _wait_ready(server, proc, timeout)
        yield server
    finally:
        _stop(proc)


def _wait_ready(server: LiveServer, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{server.log_tail()}")
        try:
            if httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"server not ready in {timeout}s:\n{server.log_tail()}")
