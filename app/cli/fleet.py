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
        typer.Option(
            help="Address to listen on (another than loopback needs DOCKFLEET_API_TOKEN).",
            show_default="$DOCKFLEET_HOST or 127.0.0.1",
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, help="Port.", show_default="$DOCKFLEET_PORT or 9595"),
    ] = None,
    insecure_no_token: Annotated[
        bool,
        typer.Option(
            "--insecure-no-token",
            help="Serve a non-loopback address without a token (anyone who reaches it can run "
            "any container on every host). Logged at every start.",
        ),
    ] = False,
) -> None:
    """Run the server: apply database migrations, then serve the API on HOST:PORT.

    Settings come from DOCKFLEET_* environment variables and a .env file (see the README).
    The API is root on the fleet: on an address other than loopback the server refuses to start
    without DOCKFLEET_API_TOKEN (make one with `dockfleet token new`).
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
    if insecure_no_token:
        changes["insecure_no_token"] = True
    settings = settings.model_copy(update=changes)
    level = settings.log_level.upper()
    logging.basicConfig(level=level, format="%(levelname)s:     %(name)s: %(message)s")
    _check_exposure(settings)
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    err().print(f"applying migrations to {_redacted(settings.database_url)}")
    try:
        upgrade_sync(settings.database_url)
    except Exception as exc:  # a broken database URL or file is the user's to fix, not a bug
        raise fail(f"cannot migrate the database: {type(exc).__name__}: {exc}") from None
    app = create_app(settings, migrate=False)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level.lower())


def _check_exposure(settings: Any) -> None:
    """Refuse to serve a non-loopback address without a token (unless told, loudly)."""
    from app.auth import is_loopback

    try:
        tokens = settings.tokens()
    except (OSError, ValueError) as exc:
        raise fail(f"invalid settings: DOCKFLEET_API_TOKEN_FILE: {exc}", code=2) from None
    if tokens or is_loopback(settings.host):
        return
    if settings.insecure_no_token:
        logging.getLogger("dockfleet").warning(
            "serving %s WITHOUT A TOKEN (--insecure-no-token): anyone who reaches it can run "
            "any container on every registered host",
            settings.host,
        )
        return
    raise fail(
        f"refusing to serve {settings.host} without a token: the API runs containers on every "
        "host. Set DOCKFLEET_API_TOKEN (dockfleet token new makes one), or, if you really mean "
        "it, pass --insecure-no-token (DOCKFLEET_INSECURE_NO_TOKEN=true).",
        code=2,
    )


def token_new() -> None:
    """Print a new strong API token (for DOCKFLEET_API_TOKEN; give several, comma-separated,
    to rotate)."""
    from app.auth import new_token

    typer.echo(new_token())


def _redacted(url: str) -> str:
    """The database URL without its password."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


def status(ctx: typer.Context, json: JsonOpt = False) -> None:
    """The fleet at a glance: every host's health, staleness, load and GPUs; the active runs;
    the next fires of the schedules."""
    fleet = client(ctx)
    hosts = list(fleet.hosts.iter())
    active = list(fleet.runs.iter(status=sorted(ACTIVE)))
    pending = fleet.runs.list(status=RunStatus.pending, limit=1).count
    planned = list(fleet.schedules.iter(enabled=True))
    upcoming = sorted(
        (s for s in planned if s.next_fire_at is not None), key=lambda s: s.next_fire_at or 0
    )[:5]
    emit(
        {"hosts": hosts, "active_runs": active, "pending_runs": pending, "next_fires": upcoming},
        json,
        lambda: _with_fires(render.fleet(hosts, active, pending), upcoming),
    )


def _with_fires(fleet_view: Any, upcoming: list[Any]) -> Any:
    """The fleet view, then the next fires of the schedules (when there are any)."""
    from rich.console import Group
    from rich.text import Text

    from app.cli.schedules import next_fires

    if not upcoming:
        return fleet_view
    return Group(fleet_view, Text(""), Text("next fires", "bold"), next_fires(upcoming))
