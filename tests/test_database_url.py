"""A wrong database at `dockfleet serve` start, and PostgreSQL going away while serving.

Start: one clear line on stderr, exit code 1, no traceback, never the password (a subprocess of
`dockfleet serve`: wrong port on 127.0.0.1, wrong password, missing database, bad scheme).
While serving: the routes that need the database answer 503 `database_unavailable` JSON (never
a 500) and work again when it is back, without a restart. Both on a throw-away cluster of this
module's own (tests/pgcluster.py), which it stops and starts.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests import pgcluster
from tests.integration.runs_helpers import free_port
from tests.integration.test_runs_recovery import Server
from tests.pgtemplate import PgServer

SECRET = "not-the-password-7f3a"


@pytest.fixture(scope="module")
def cluster() -> Iterator[pgcluster.Cluster]:
    """A cluster of this module's own: its tests stop and start it."""
    reason = pgcluster.missing()
    if reason:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true: {reason}")
        pytest.skip(reason)
    own = pgcluster.Cluster.create()
    try:
        yield own
    finally:
        own.remove()


def serve(url: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`dockfleet serve` with DOCKFLEET_DATABASE_URL=url (expected to give up at once)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKFLEET_", "DOCKER_"))}
    env["DOCKFLEET_DATABASE_URL"] = url
    argv = [sys.executable, "-m", "app", "serve", "--port", str(free_port())]
    return subprocess.run(
        argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def assert_one_clear_line(done: subprocess.CompletedProcess[str], *words: str) -> str:
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert SECRET not in done.stderr + done.stdout
    line = lines[0]
    assert line.startswith("error: "), line
    for word in words:
        assert word in line, line
    return line


def test_a_port_nobody_listens_on_is_one_line_and_exit_1(tmp_path: Path) -> None:
    url = f"postgresql+asyncpg://dockfleet:{SECRET}@127.0.0.1:{free_port()}/dockfleet"
    line = assert_one_clear_line(serve(url, tmp_path), "cannot reach the database", "refused")
    assert "dockfleet:***@127.0.0.1" in line


@pytest.mark.parametrize(
    ("url", "words"),
    [
        (f"mysql://u:{SECRET}@127.0.0.1/db", ("unsupported scheme 'mysql'", "postgresql+asyncpg")),
        (f"postgresql://u:{SECRET}@127.0.0.1/db", ("unsupported scheme 'postgresql'",)),
        ("sqlite:///dockfleet.db", ("unsupported scheme 'sqlite'", "sqlite+aiosqlite:///")),
        ("no url at all", ("not a database URL",)),
        (f"postgresql+asyncpg://u:{SECRET}@127.0.0.1:5432", ("no database name",)),
    ],
    ids=["mysql", "postgresql-without-driver", "sqlite-without-driver", "garbage", "no-database"],
)
def test_a_bad_scheme_is_one_line_and_exit_1(
    url: str, words: tuple[str, ...], tmp_path: Path
) -> None:
    assert_one_clear_line(serve(url, tmp_path), "invalid DOCKFLEET_DATABASE_URL", *words)


@pytest.mark.postgresql
def test_a_wrong_password_or_database_is_one_line_and_exit_1(
    cluster: pgcluster.Cluster, tmp_path: Path
) -> None:
    wrong = cluster.url.replace(cluster.password, SECRET) + "/postgres"
    assert_one_clear_line(serve(wrong, tmp_path), "password authentication failed")
    missing = cluster.url + "/no_such_database"
    done = serve(missing, tmp_path)
    assert_one_clear_line(done, 'database "no_such_database" does not exist')
    assert cluster.password not in done.stderr


@pytest.mark.postgresql
async def test_the_database_going_away_is_503_and_it_recovers_without_a_restart(
    cluster: pgcluster.Cluster, tmp_path: Path
) -> None:
    url = PgServer(cluster.url).empty_database()  # `dockfleet serve` migrates it
    server = Server(
        tmp_path, cli=True, DOCKFLEET_DATABASE_URL=url, DOCKFLEET_DB_BUSY_TIMEOUT_SECONDS="2"
    )
    await server.start()
    task = {"name": "outage", "image": "busybox:1.36", "command": ["true"]}
    try:
        async with server.client() as http:
            assert (await http.post("/api/tasks/", json=task)).status_code == 201
            pid = server.proc.pid if server.proc else None

            cluster.stop()
            answers = []
            for _ in range(3):
                for method, path, body in (
                    ("GET", "/api/tasks/", None),
                    ("GET", "/api/worker-hosts/", None),
                    ("POST", "/api/tasks/", {**task, "name": "during"}),
                    ("GET", "/healthz", None),
                ):
                    r = await http.request(method, path, json=body)
                    answers.append((path, r.status_code, r.json()))
            assert {status for _, status, _ in answers} == {503}, answers
            for path, _, body in answers:
                if path != "/healthz":
                    assert body["code"] == "database_unavailable", body
                    assert body["reason"], body

            cluster.start()
            deadline = time.monotonic() + 20
            while (await http.get("/api/tasks/")).status_code != 200:
                assert time.monotonic() < deadline, "no recovery after the database came back"
                await asyncio.sleep(0.2)
            assert (
                await http.post("/api/tasks/", json={**task, "name": "after"})
            ).status_code == 201
            names = {t["name"] for t in (await http.get("/api/tasks/")).json()["results"]}
            assert {"outage", "after"} <= names and "during" not in names, names
            while (await http.get("/healthz")).status_code != 200:
                assert time.monotonic() < deadline, "healthz did not recover"
                await asyncio.sleep(0.2)
            assert server.proc is not None and server.proc.pid == pid
            assert server.proc.poll() is None, server.log()
    except (AssertionError, httpx.HTTPError):
        print(server.log())
        raise
    finally:
        server.kill()
        if not cluster.running:
            cluster.start()
        PgServer(cluster.url).drop(url)
