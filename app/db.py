"""Async engine, sessions, portable column types, and migrations at start-up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, event
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.types import TypeDecorator
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

ROOT = Path(__file__).resolve().parent.parent

# Stable constraint names, so migrations can alter them on SQLite and PostgreSQL alike.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC, returns aware UTC: the same on SQLite and PostgreSQL."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None else None


def make_engine(url: str, busy_timeout: float = 5.0) -> AsyncEngine:
    """An async engine whose every wait is bounded: SQLite gets WAL, foreign keys and a busy
    timeout; PostgreSQL a connect and a command timeout. A pool checkout waits at most as long."""
    if url.startswith("sqlite"):
        engine = create_async_engine(
            url, connect_args={"timeout": busy_timeout}, pool_timeout=busy_timeout
        )

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
            cur.close()

        return engine
    connect_args: dict[str, Any] = {}
    if "+asyncpg" in url:
        connect_args = {"timeout": max(busy_timeout, 5.0), "command_timeout": 30}
    engine = create_async_engine(
        url, pool_pre_ping=True, pool_timeout=busy_timeout, connect_args=connect_args
    )

    @event.listens_for(engine.sync_engine, "do_connect")
    def _connect(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        # asyncpg lets a refused, unreachable or timed-out connect through as a bare OSError or
        # TimeoutError; as the driver's OperationalError it is a database error like any other
        # (a 503 while the server is away, and the pool reconnects once it is back).
        try:
            return dialect.connect(*cargs, **cparams)
        except (OSError, TimeoutError) as exc:
            detail = " ".join(str(exc).split()) or type(exc).__name__
            raise dialect.loaded_dbapi.OperationalError(f"cannot connect: {detail}") from exc

    return engine


_REASONS = (
    ("database is locked", "database is locked (another writer holds it)"),
    ("disk is full", "database or disk is full"),
    ("disk i/o error", "disk I/O error"),
    ("readonly", "database is read-only"),
    ("unable to open", "cannot open the database file"),
    ("too many connections", "too many connections"),
    ("connection refused", "connection refused (the database server is down?)"),
    ("connect call failed", "connection refused (the database server is down?)"),
    ("the database system is", "the database server is starting or shutting down"),
    ("terminating connection", "connection to the database lost"),
    ("connection was closed", "connection to the database lost"),
    ("cannot connect", "cannot connect to the database"),
    ("timeout", "timed out"),
    ("timed out", "timed out"),
)


def unavailable_reason(exc: BaseException) -> str | None:
    """Why the database could not serve a statement (locked, full, gone), in a few clean words;
    None when `exc` is a bug instead (bad SQL, an integrity error nobody caught)."""
    from sqlalchemy import exc as sa_exc

    if isinstance(exc, sa_exc.TimeoutError):
        return "no database connection free in time"
    if isinstance(exc, sa_exc.IntegrityError | sa_exc.ProgrammingError | sa_exc.DataError):
        return None
    if not isinstance(exc, sa_exc.DBAPIError):
        return None
    orig = exc.orig if exc.orig is not None else exc
    text = (str(orig).strip().splitlines() or [""])[0].lower()
    for needle, reason in _REASONS:
        if needle in text:
            return reason
    if exc.connection_invalidated or isinstance(exc, sa_exc.InterfaceError):
        return "connection to the database lost"
    if isinstance(exc, sa_exc.OperationalError):
        return "the database refused the statement"
    return None


SUPPORTED_URLS = {
    "sqlite+aiosqlite": "sqlite+aiosqlite:///PATH",
    "postgresql+asyncpg": "postgresql+asyncpg://USER:PASSWORD@HOST:PORT/DATABASE",
}


def url_problem(url: str) -> str | None:
    """What is wrong with a database URL before any connection (None: nothing)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    forms = " or ".join(SUPPORTED_URLS.values())
    try:
        parsed = make_url(url)
    except ArgumentError:
        return f"not a database URL; use {forms}"
    if parsed.drivername not in SUPPORTED_URLS:
        return f"unsupported scheme {parsed.drivername!r}; use {forms}"
    if parsed.drivername.startswith("postgresql") and not parsed.database:
        return f"no database name; use {SUPPORTED_URLS['postgresql+asyncpg']}"
    return None


def _scrub(text: str, url: str) -> str:
    """`text` without the URL's password, on one line."""
    from sqlalchemy.engine import make_url

    line = " ".join(text.split())
    password = make_url(url).password
    return line.replace(str(password), "***") if password else line


def connect_reason(exc: BaseException, url: str) -> str:
    """Why a connection failed, in a few clean words on one line, never with the password."""
    import socket

    from sqlalchemy import exc as sa_exc

    orig: BaseException = exc
    while isinstance(orig, sa_exc.DBAPIError) and orig.orig is not None:
        orig = orig.orig
    text = str(orig)
    refused = ("connect call failed", "connection refused")
    if isinstance(orig, ConnectionRefusedError) or any(r in text.lower() for r in refused):
        return "connection refused (is the server running and listening on that port?)"
    if isinstance(orig, socket.gaierror):
        return "host name not found"
    if isinstance(orig, TimeoutError):
        return "timed out"
    if isinstance(orig, OSError) and orig.strerror:
        return _scrub(orig.strerror, url)
    reason = unavailable_reason(exc) if isinstance(exc, sa_exc.DBAPIError) else None
    first = (text.strip().splitlines() or [type(orig).__name__])[0]
    return _scrub(first or reason or type(orig).__name__, url)


PROBE_SECONDS = 10.0  # `dockfleet serve` gives up on an unanswering database after this


async def probe(url: str) -> str | None:
    """Connect and run one statement within PROBE_SECONDS: None when that works, else why not."""
    from sqlalchemy import text

    engine = make_engine(url, busy_timeout=PROBE_SECONDS)
    try:
        async with asyncio.timeout(PROBE_SECONDS), engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except TimeoutError:
        return f"no answer within {PROBE_SECONDS:g} s"
    except Exception as exc:
        return connect_reason(exc, url)
    finally:
        await engine.dispose()
    return None


class Database:
    """The engine and a session factory; one per app."""

    def __init__(self, url: str, busy_timeout: float = 5.0) -> None:
        self.url = url
        self.engine = make_engine(url, busy_timeout)
        self.sessions = async_sessionmaker(self.engine, class_=AsyncSession, expire_on_commit=False)

    @asynccontextmanager
    async def session_scope(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: commit on success, roll back on error."""
        async with self.sessions() as session:
            try:
                yield session
                await session.commit()
            except BaseException:
                await session.rollback()
                raise

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()


def _project_dir() -> Path:
    """Where alembic.ini and migrations/ live: the checkout, else the working directory."""
    for candidate in (ROOT, Path.cwd()):
        if (candidate / "alembic.ini").is_file() and (candidate / "migrations").is_dir():
            return candidate
    raise RuntimeError("cannot find alembic.ini and migrations/ (run from the project directory)")


def alembic_config(url: str) -> Any:
    """An alembic Config pointing at the project's migrations, for `url`."""
    from alembic.config import Config

    root = _project_dir()
    cfg = Config(str(root / "alembic.ini"))
    cfg.set_main_option("script_location", str(root / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["configure_logger"] = False
    return cfg


def upgrade_sync(url: str) -> None:
    """Apply every migration (blocking; runs its own event loop)."""
    from alembic import command

    command.upgrade(alembic_config(url), "head")


async def upgrade(url: str) -> None:
    """Apply every migration from async code, in a worker thread."""
    await asyncio.to_thread(upgrade_sync, url)
