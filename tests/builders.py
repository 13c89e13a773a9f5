"""Plain builder functions for request bodies, rows and in-process clients."""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from app import clock
from app.config import Settings
from app.hosts.models import WorkerHost
from app.main import create_app, start, stop

_seq = itertools.count(1)
# Key and certificate files of the test payloads: real (readable) files in the tests'
# secrets directory (DOCKFLEET_SECRETS_DIR is /tmp in make_settings); never used to connect.
SECRETS = Path(tempfile.gettempdir()) / "dockfleet-test-secrets"
for _name in ("test_ssh_key", "vm_ssh_key", "nas/ca.pem", "nas/cert.pem", "nas/key.pem"):
    (SECRETS / _name).parent.mkdir(parents=True, exist_ok=True)
    (SECRETS / _name).touch()
MISSING_SOCKET = "unix:///tmp/dockfleet-test-does-not-exist.sock"


def host_payload(**overrides: Any) -> dict[str, Any]:
    """A valid POST /api/worker-hosts/ body (a local socket host), with overrides."""
    body: dict[str, Any] = {
        "name": f"host-{next(_seq)}",
        "type": "docker_socket",
        "base_url": "unix:///var/run/docker.sock",
        "capabilities": {"max_concurrency": 2},
    }
    body.update(overrides)
    return body


def ssh_host_payload(**overrides: Any) -> dict[str, Any]:
    """A docker_tcp host reached through an SSH tunnel on loopback (never contacted)."""
    body = host_payload(
        type="docker_tcp",
        base_url="tcp://127.0.0.1:2376",
        ssh_config={
            "host": "127.0.0.1",
            "port": 22,
            "user": "fleetadmin",
            "key_path": f"{SECRETS}/test_ssh_key",
        },
    )
    body.update(overrides)
    return body


def task_payload(**overrides: Any) -> dict[str, Any]:
    """A valid POST /api/tasks/ body, with overrides."""
    body: dict[str, Any] = {
        "name": f"task_{next(_seq)}",
        "description": "Disk usage of the root filesystem",
        "image": "busybox:1.36",
        "command": ["df", "-h", "/"],
        "timeout_seconds": 60,
    }
    body.update(overrides)
    return body


def directive_payload(**overrides: Any) -> dict[str, Any]:
    """A valid POST /api/directives/ body, with overrides."""
    body: dict[str, Any] = {"name": f"directive-{next(_seq)}", "description": "test directive"}
    body.update(overrides)
    return body


def make_host(**overrides: Any) -> WorkerHost:
    """An in-memory WorkerHost that could take any CPU run now (healthy, seen now)."""
    now: datetime = overrides.pop("now", None) or clock.now()
    values: dict[str, Any] = {
        "id": next(_seq),
        "name": f"host-{next(_seq)}",
        "type": "docker_socket",
        "base_url": "unix:///var/run/docker.sock",
        "capabilities": {"gpus": False, "gpu_count": 0, "max_concurrency": 2},
        "healthy": True,
        "last_seen_at": now,
    }
    values.update(overrides)
    return WorkerHost(**values)


@asynccontextmanager
async def app_client(settings: Settings, **kwargs: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A started app built from `settings` and a client talking to it in-process."""
    application = create_app(settings, migrate=False)
    state = application.state.dockfleet
    await start(state)
    transport = httpx.ASGITransport(app=application, **kwargs)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://dockfleet.test") as c:
            yield c
    finally:
        await stop(state)


async def set_host_row(app: Any, host_id: int, **values: Any) -> None:
    """Write columns of a host row directly (e.g. healthy=True without a Docker daemon)."""
    from sqlalchemy import update
    from sqlmodel import col

    async with app.state.dockfleet.db.session_scope() as session:
        await session.exec(update(WorkerHost).where(col(WorkerHost.id) == host_id).values(**values))


def error_locs(response: httpx.Response) -> list[list[Any]]:
    """The `loc` of every error in a 422 body."""
    return [list(error["loc"]) for error in response.json()["detail"]]


def assert_field_error(response: httpx.Response, *field: str) -> None:
    """A 422 whose errors name `field` (a path under the body, e.g. "capabilities", "gpus")."""
    assert response.status_code == 422, response.text
    want = ["body", *field]
    locs = error_locs(response)
    assert any(loc[: len(want)] == want for loc in locs), f"{want} not in {locs}"
