"""Alembic environment: async engine, batch mode for SQLite, our naming convention."""

from __future__ import annotations

import asyncio
import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from logging.config import fileConfig

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection, make_url

from app import models  # noqa: F401  (registers every table)
from app.config import Settings
from app.db import make_engine
from app.models import metadata

config = context.config
if config.config_file_name and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name)

url = config.get_main_option("sqlalchemy.url") or Settings().database_url


def _configure(connection: Connection | None = None) -> None:
    context.configure(
        connection=connection,
        url=None if connection is not None else url,
        target_metadata=metadata,
        render_as_batch=True,
        compare_type=True,
    )


def run_offline() -> None:
    _configure()
    with context.begin_transaction():
        context.run_migrations()


def _run_sync(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()


# Several processes starting at once on a new database migrate one after the other: the first
# applies the revisions, the others then find nothing left to do.
_PG_LOCK = 7_270_736_900  # pg_advisory_lock key of dockfleet's migrations


@contextmanager
def _file_lock() -> Iterator[None]:
    parsed = make_url(url)
    path = parsed.database if parsed.get_backend_name() == "sqlite" else None
    if not path or path == ":memory:":
        yield
        return
    with open(f"{path}.migrate-lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


async def run_online() -> None:
    engine = make_engine(url, busy_timeout=30)
    with _file_lock():
        async with engine.connect() as connection:
            if connection.dialect.name == "postgresql":
                await connection.execute(text(f"SELECT pg_advisory_lock({_PG_LOCK})"))
                await connection.commit()
            await connection.run_sync(_run_sync)
            await connection.commit()
    await engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    asyncio.run(run_online())
