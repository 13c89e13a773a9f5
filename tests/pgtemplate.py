"""Per-test PostgreSQL databases cloned from one migrated template.

The server is DOCKFLEET_TEST_POSTGRES_URL (postgresql+asyncpg://USER:PASSWORD@HOST:PORT, a user
who may create databases) when set; else the suite starts a throw-away cluster
(tests/pgcluster.py). See the `pg` fixture in tests/conftest.py.
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from typing import Any

TEMPLATE = "dockfleet_test_template"


def configured_url() -> str | None:
    """The PostgreSQL server given by the environment, if any."""
    return os.environ.get("DOCKFLEET_TEST_POSTGRES_URL") or None


def _in_thread(coro_fn: Any) -> Any:
    """Run an async function on its own loop in a thread (never inside the tests' loop)."""
    result: list[Any] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coro_fn()))
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


class PgServer:
    """One PostgreSQL server the tests make databases on."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def dsn(self, database: str = "postgres") -> str:
        """A plain libpq/asyncpg DSN for `database`."""
        return self.url.replace("postgresql+asyncpg://", "postgresql://") + f"/{database}"

    def admin(self, sql: list[str]) -> None:
        """Run statements outside a transaction on the `postgres` database."""
        import asyncpg

        async def run() -> None:
            conn = await asyncpg.connect(self.dsn(), timeout=10)
            try:
                for statement in sql:
                    await conn.execute(statement, timeout=60)
            finally:
                await conn.close()

        _in_thread(run)

    def fetch(self, database_url: str, query: str) -> list[tuple[Any, ...]]:
        """Rows of `query` on the database of `database_url` (a URL of this server)."""
        import asyncpg

        async def run() -> list[tuple[Any, ...]]:
            dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
            conn = await asyncpg.connect(dsn, timeout=10)
            try:
                return [tuple(r) for r in await conn.fetch(query, timeout=30)]
            finally:
                await conn.close()

        rows: list[tuple[Any, ...]] = _in_thread(run)
        return rows

    def make_template(self, upgrade: Any) -> None:
        """(Re)create the template database and migrate it."""
        self.admin([f'DROP DATABASE IF EXISTS "{TEMPLATE}"', f'CREATE DATABASE "{TEMPLATE}"'])
        upgrade(f"{self.url}/{TEMPLATE}")

    def empty_database(self) -> str:
        """A new database with nothing in it (not migrated); its URL."""
        name = f"dockfleet_t_{uuid.uuid4().hex[:12]}"
        self.admin([f'CREATE DATABASE "{name}"'])
        return f"{self.url}/{name}"

    def fresh_database(self) -> str:
        """A new database cloned from the migrated template; its URL."""
        name = f"dockfleet_t_{uuid.uuid4().hex[:12]}"
        self.admin([f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"'])
        return f"{self.url}/{name}"

    def drop(self, url: str) -> None:
        """Drop a test database (its connections are closed by force)."""
        name = url.rsplit("/", 1)[1]
        self.admin([f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'])
