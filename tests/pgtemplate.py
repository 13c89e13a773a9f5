"""Per-test PostgreSQL databases cloned from one migrated template (opt-in, for portability).

Set DOCKFLEET_TEST_POSTGRES_URL=postgresql+asyncpg://USER@HOST:PORT to run the database-backed
tests on PostgreSQL instead of SQLite (needs the `postgres` extra: asyncpg).
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from typing import Any

TEMPLATE = "dockfleet_test_template"


def server_url() -> str | None:
    """The PostgreSQL server to test against, if any."""
    return os.environ.get("DOCKFLEET_TEST_POSTGRES_URL") or None


def _admin(sql: list[str]) -> None:
    import asyncpg  # only when PostgreSQL is asked for

    base = server_url()
    assert base is not None
    dsn = base.replace("postgresql+asyncpg://", "postgresql://") + "/postgres"

    async def run() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            for statement in sql:
                await conn.execute(statement)
        finally:
            await conn.close()

    error: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(run())
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=target)  # never inside the tests' running loop
    thread.start()
    thread.join()
    if error:
        raise error[0]


def make_template(upgrade: Any) -> None:
    """(Re)create the template database and migrate it."""
    _admin([f'DROP DATABASE IF EXISTS "{TEMPLATE}"', f'CREATE DATABASE "{TEMPLATE}"'])
    upgrade(f"{server_url()}/{TEMPLATE}")


def fresh_database() -> str:
    """A new database cloned from the template; its URL."""
    name = f"dockfleet_t_{uuid.uuid4().hex[:12]}"
    _admin([f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"'])
    return f"{server_url()}/{name}"


def drop(url: str) -> None:
    """Drop a test database (its connections are closed by force)."""
    name = url.rsplit("/", 1)[1]
    _admin([f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'])
