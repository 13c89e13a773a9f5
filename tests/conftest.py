"""Shared fixtures: settings on a fresh migrated SQLite file, the app, an ASGI client, and the
real fleet of dockerds/sshd (session scope) for tests/integration and tests/faults.

Without root or dockerd/sshd the fleet skips, except with CI=true, where it fails instead.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiodocker
import httpx
import pytest
from fastapi import FastAPI

from app import clock
from app.config import Settings
from app.db import upgrade_sync
from app.main import create_app, start, stop
from tests import pgtemplate
from tests.fleet import Daemon, Fleet, start_fleet
from tests.fleet.aio import docker_for as _docker_for

_TOOLS = ("dockerd", "containerd", "runc", "nsenter", "ip", "openssl", "ssh-keygen", "umount")


def _missing_prerequisite() -> str | None:
    if os.geteuid() != 0:
        return "integration tests need root (network namespaces, dockerd)"
    missing = [tool for tool in _TOOLS if shutil.which(tool) is None]
    missing += [p for p in ("/usr/sbin/sshd", "/bin/busybox") if not os.access(p, os.X_OK)]
    return f"integration tests need {', '.join(missing)}" if missing else None


@pytest.fixture(scope="session")
def fleet() -> Iterator[Fleet]:
    """The real fleet: four dockerds in their own netns (one behind sshd), plus `fleet.fault`."""
    reason = _missing_prerequisite()
    if reason:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true: {reason}")
        pytest.skip(reason)
    started = start_fleet()
    try:
        yield started
    finally:
        started.teardown()


@pytest.fixture
def docker_for() -> Callable[[Daemon], aiodocker.Docker]:
    """`async with docker_for(fleet.sock) as docker:` -> aiodocker client on its unix socket."""
    return _docker_for


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite file with every migration applied; tests copy it (fast, and real).

    With DOCKFLEET_TEST_POSTGRES_URL, a migrated PostgreSQL template database is made too.
    """
    path = tmp_path_factory.mktemp("db") / "template.db"
    upgrade_sync(f"sqlite+aiosqlite:///{path}")
    if pgtemplate.server_url():
        pgtemplate.make_template(upgrade_sync)
    return path


@pytest.fixture
def db_url(tmp_path: Path, migrated_template: Path) -> Iterator[str]:
    """A fresh, migrated database for one test (SQLite; PostgreSQL when asked for)."""
    if pgtemplate.server_url():
        url = pgtemplate.fresh_database()
        yield url
        pgtemplate.drop(url)
        return
    path = tmp_path / "dockfleet.db"
    shutil.copy(migrated_template, path)
    yield f"sqlite+aiosqlite:///{path}"


def make_settings(db_url: str, **overrides: Any) -> Settings:
    """Test settings: no background checks unless asked, short timeouts."""
    values: dict[str, Any] = {
        "database_url": db_url,
        "health_interval_seconds": 0,
        "docker_timeout_seconds": 5,
        "stop_timeout_seconds": 2,
        "reconcile_interval_seconds": 0,
        "scheduler_interval_seconds": 0.2,
        "allowed_networks": "loopback,10.0.0.0/8",
        "notifier_allowed_networks": "loopback",  # notifications only ever go to loopback
        "secrets_dir": "/tmp",  # the test fleet's keys and certificates live under /tmp
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def settings(db_url: str) -> Settings:
    """Settings for an app under test."""
    return make_settings(db_url)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The app with its services started (ASGITransport does not run the lifespan)."""
    application = create_app(settings, migrate=False)
    state = application.state.dockfleet
    await start(state)
    try:
        yield application
    finally:
        await stop(state)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the app in-process."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://dockfleet.test") as c:
        yield c


@pytest.fixture
def fake_clock() -> Iterator[clock.FakeClock]:
    """A clock the test moves by hand."""
    fake = clock.FakeClock()
    with clock.use(fake):
        yield fake
