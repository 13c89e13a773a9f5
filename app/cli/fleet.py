"""`dockfleet serve` (the server itself) and `dockfleet status` (the fleet at a glance)."""

from __future__ import annotations

import logging
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from app.cli import render_runs as render
from app.cli.common import JsonOpt, client, emit, err, fail
from app.runs.schemas import ACTIVE, RunStatus


def serve(
    host: Annotated[
        str | None,
        typer.Option(help="Address to listen on.", show_default="$DOCKFLEET_HOST or 0.0.0.0"),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, help="Port.", show_default="$DOCKFLEET_PORT or 9595"),
    ] = None,
) -> None:
    """Run the server: apply database migrations, then serve the API on HOST:PORT.

    Settings come from DOCKFLEET_* environment variables and a .env file (see the README).
    """
    import uvicorn

    from app.config import Settings
    from app.db import upgrade_sync
    from app.main import create_app

    try:
        settings = Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"DOCKFLEET_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()
        )
        raise fail(f"invalid settings: {problems}", code=2) from None
    changes: dict[str, Any] = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    settings = settings.model_copy(update=changes)
    level = settings.log_level.upper()
    logging.basicConfig(level=level, format="%(levelname)s:     %(name)s: %(message)s")
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    err().print(f"applying migrations to {_redacted(settings.database_url)}")
    try:
        upgrade_sync(settings.database_url)
    except Exception as exc:  # a broken database URL or file is the user's to fix, not a bug
        raise fail(f"cannot migrate the database: {type(exc).__name__}: {exc}") from None
    app = create_app(settings, migrate=False)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level.lower())


def _redacted(url: str) -> str:
    """The database URL without its password."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


def status(ctx: typer.Context, json: JsonOpt = False) -> None:
    """The fleet at a glance: every host's health, staleness, load and GPUs; the active runs."""
    fleet = client(ctx)
    hosts = list(fleet.hosts.iter())
    active = list(fleet.runs.iter(status=sorted(ACTIVE)))
    pending = fleet.runs.list(status=RunStatus.pending, limit=1).count
    emit(
        {"hosts": hosts, "active_runs": active, "pending_runs": pending},
        json,
        lambda: render.fleet(hosts, active, pending),
    )
