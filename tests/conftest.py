"""Shared fixtures: settings on a fresh migrated database, the app, an ASGI client, and the
real fleet of dockerds/sshd (session scope) for tests/integration and tests/faults.

The database is SQLite; the tests of the modules in BOTH_BACKENDS run a second time on
PostgreSQL (`db_backend` is parametrized, the PostgreSQL runs are marked `postgresql`): the server
of DOCKFLEET_TEST_POSTGRES_URL when set, else a throw-away cluster the session starts
(tests/pgcluster.py) and removes. Without root or dockerd/sshd/PostgreSQL these tests skip,
except with CI=true, where they fail instead.
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
from _pytest.nodeid import coerce_node_id
from fastapi import FastAPI

from app import clock
from app.config import Settings
from app.db import upgrade_sync
from app.main import create_app, start, stop
from tests import pgcluster
from tests.fleet import Daemon, Fleet, start_fleet
from tests.fleet.aio import docker_for as _docker_for
from tests.pgtemplate import PgServer, configured_url

# The persistence, launch, scheduler, recovery and multi-process tests: run on both databases.
BOTH_BACKENDS = frozenset(
    {
        "tests/hosts/test_routes.py",
        "tests/hosts/test_monitor.py",
        "tests/tasks/test_routes.py",
        "tests/directives/test_routes.py",
        "tests/runs/test_waiting.py",
        "tests/scheduling/test_holds.py",
        "tests/scheduling/test_ownership.py",
        "tests/scheduling/test_guard.py",
        "tests/scheduling/test_placement.py",
        "tests/integration/test_runs_lifecycle.py",
        "tests/integration/test_runs_concurrency.py",
        "tests/integration/test_runs_gpu.py",
        "tests/integration/test_runs_hosts.py",
        "tests/integration/test_runs_recovery.py",
        "tests/integration/test_runs_multiprocess.py",
        "tests/faults/test_races.py",
        "tests/test_migrations.py",
    }
)
_ROOT = Path(__file__).resolve().parents[1]

_TOOLS = ("dockerd", "containerd", "runc", "nsenter", "ip", "openssl", "ssh-keygen", "umount")


def _missing_prerequisite() -> str | None:
    if os.geteuid() != 0:
        return "integration tests need root (network namespaces, dockerd)"
    missing = [tool for tool in _TOOLS if shutil.which(tool) is None]
    missing += [p for p in ("/usr/sbin/sshd", "/bin/busybox") if not os.access(p, os.X_OK)]
    return f"integration tests need {', '.join(missing)}" if missing else None


def _unavailable(reason: str) -> None:
    """Skip, or fail with CI=true: CI never silently runs less than the suite."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true: {reason}")
    pytest.skip(reason)


POSTGRESQL = pytest.param("postgresql", marks=pytest.mark.postgresql)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test of a BOTH_BACKENDS module that uses a database runs on SQLite and PostgreSQL,
    unless it parametrizes `db_backend` itself."""
    if "db_backend" not in metafunc.fixturenames:
        return
    for mark in metafunc.definition.iter_markers("parametrize"):
        if "db_backend" in str(mark.args[0]):
            return
    try:
        module = Path(metafunc.definition.path).resolve().relative_to(_ROOT).as_posix()
    except ValueError:
        return
    if module in BOTH_BACKENDS:
        metafunc.parametrize("db_backend", ["sqlite", POSTGRESQL], indirect=True)


@pytest.fixture
def db_backend(request: pytest.FixtureRequest) -> str:
    """The database of the test: sqlite, or postgresql in a BOTH_BACKENDS test's second run."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture(scope="session")
def pg() -> Iterator[PgServer]:
    """The PostgreSQL server of the session, with a migrated template database.

    DOCKFLEET_TEST_POSTGRES_URL when set; else a throw-away cluster (started on first use,
    removed at the end of the session)."""
    url, cluster = configured_url(), None
    if url is None:
        reason = pgcluster.missing()
        if reason:
            _unavailable(reason)
        cluster = pgcluster.Cluster.create()
        url = cluster.url
    server = PgServer(url)
    try:
        server.make_template(upgrade_sync)
        yield server
    finally:
        if cluster is not None:
            cluster.remove()


@pytest.fixture(scope="session")
def fleet() -> Iterator[Fleet]:
    """The real fleet: four dockerds in their own netns (one behind sshd), plus `fleet.fault`."""
    reason = _missing_prerequisite()
    if reason:
        _unavailable(reason)
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
    """One SQLite file with every migration applied; tests copy it (fast, and real)."""
    path = tmp_path_factory.mktemp("db") / "template.db"
    upgrade_sync(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture
def db_url(
    request: pytest.FixtureRequest, db_backend: str, tmp_path: Path, migrated_template: Path
) -> Iterator[str]:
    """A fresh, migrated database for one test: a copy of the SQLite template, or on PostgreSQL
    a database cloned from the template database (dropped afterwards)."""
    if db_backend == "postgresql":
        server: PgServer = request.getfixturevalue("pg")
        url = server.fresh_database()
        yield url
        server.drop(url)
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
        # A launch's answer says `starting` when its placement lands within this. A test's
        # first placement (new connections; on PostgreSQL statements prepared; the monitor's
        # first checks and sweeps) can take longer than the 50 ms default on a busy 2-core
        # machine, and the tests assert that answer (seen on SQLite too: `pending`).
        "launch_wait_seconds": 0.5,
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


def pytest_configure(config: pytest.Config) -> None:
    """pytest-xdist sets COLUMNS=80 (and LINES) in its workers; the CLI tests read tables as a
    pipe gets them (app/cli/common.py), as in a run without workers."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        for name in ("COLUMNS", "LINES"):
            os.environ.pop(name, None)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """With pytest-xdist (`make test` runs `-n 2 --dist loadgroup`): every test of the real
    fleet runs in one worker, one after another, on one fleet (the fault tests stop and cut
    its daemons); the other tests are shared out between the workers.

    schemathesis gives all its cases (one per API operation) the test function's node id;
    the scheduler keys tests by node id and ran one of the 45. Each gets its operation in its
    id, as its name has: `test_fuzz.py::test_…[GET /api/worker-hosts/]`."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    for item in items:
        if item.nodeid.rpartition("::")[2] != item.name and item.parent is not None:
            item._id = item.parent.id.child(item.name)  # type: ignore[attr-defined]
        if "fleet" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("fleet"))
            if worker and not item.nodeid.endswith("@fleet"):
                # The scheduler reads the group from a node id ending "@fleet". xdist 3.8 sets
                # it on `item._nodeid`, which pytest 9 no longer reads: without this, each
                # worker started a fleet of its own and the fleet tests ran in both.
                item._id = coerce_node_id(f"{item.nodeid}@fleet")  # type: ignore[attr-defined]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """What a test measured (tests/measured.py) rides on its report: under xdist the report
    is what reaches the controller, which prints the summary."""
    from tests.measured import MEASURED

    report = yield
    report.user_properties += [("measured", line) for line in MEASURED]
    MEASURED.clear()
    return report


_MEASURED_SEEN: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _MEASURED_SEEN.extend(str(v) for k, v in report.user_properties if k == "measured")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print what the tests measured (tests/measured.py)."""
    if _MEASURED_SEEN:
        terminalreporter.section("measured")
        for line in _MEASURED_SEEN:
            terminalreporter.write_line(line)
