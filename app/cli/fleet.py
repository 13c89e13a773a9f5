"""`dockfleet serve` (the server itself) and `dockfleet status` (the fleet at a glance)."""

from __future__ import annotations

import logging
import sys
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from app.cli import render_runs as render
from app.cli.common import JsonOpt, client, emit, ends_on_ctrl_c, err, fail, out, print_line
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
    from app.db import connect_reason, upgrade_sync
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
    from app import logs

    logs.configure(settings)
    _check_exposure(settings)
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    _check_database(settings.database_url)
    where = _redacted(settings.database_url)
    if settings.log_format.lower() == "json":  # every line of stderr is then one JSON object
        logging.getLogger("dockfleet").info("applying migrations to %s", where)
    else:
        err().print(f"applying migrations to {where}")
    try:
        upgrade_sync(settings.database_url)
    except Exception as exc:  # a broken database URL or file is the user's to fix, not a bug
        reason = connect_reason(exc, settings.database_url)
        raise fail(f"cannot migrate the database: {type(exc).__name__}: {reason}") from None
    app = create_app(settings, migrate=False)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        log_config=None if settings.log_format.lower() == "json" else uvicorn.config.LOGGING_CONFIG,
    )
    _server_class()(config).run()


def _server_class() -> Any:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server; on SIGINT/SIGTERM the event streams end first, since uvicorn waits
        for every open connection to finish and an event stream never does by itself."""

        def handle_exit(self, sig: int, frame: Any) -> None:
            from app.events.store import BUS

            BUS.close()
            super().handle_exit(sig, frame)

    return Server


def _check_database(url: str) -> None:
    """A wrong, unreachable or refusing database: one line on stderr and exit 1, at once."""
    import asyncio

    from app.db import probe, url_problem

    problem = url_problem(url)
    if problem:
        raise fail(f"invalid DOCKFLEET_DATABASE_URL: {problem}")
    reason = asyncio.run(probe(url))
    if reason:
        raise fail(f"cannot reach the database at {_redacted(url)}: {reason}")


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


def status(
    ctx: typer.Context,
    json: JsonOpt = False,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch",
            "-w",
            help="Redraw on every host or run event (GET /api/events/) until Ctrl-C; with "
            "--json, one JSON line per redraw.",
        ),
    ] = False,
) -> None:
    """The fleet at a glance: every host's health, staleness, load and GPUs; each GPU (memory,
    utilisation, temperature, which run holds it); the active runs; the schedules' next fires."""
    fleet = client(ctx)
    if watch:
        _watch(fleet, json)
        return
    snapshot = _snapshot(fleet)
    emit(snapshot, json, lambda: _drawn(snapshot))


def _snapshot(fleet: Any) -> dict[str, Any]:
    hosts = list(fleet.hosts.iter())
    active = list(fleet.runs.iter(status=sorted(ACTIVE)))
    pending = fleet.runs.list(status=RunStatus.pending, limit=1).count
    gpus = [fleet.gpus.get(h.id) for h in hosts if h.capabilities.gpus or h.gpu_probe_status]
    planned = list(fleet.schedules.iter(enabled=True))
    upcoming = sorted(
        (s for s in planned if s.next_fire_at is not None), key=lambda s: s.next_fire_at
    )[:5]
    return {
        "hosts": hosts,
        "active_runs": active,
        "pending_runs": pending,
        "gpus": gpus,
        "next_fires": upcoming,
    }


def _drawn(snapshot: dict[str, Any]) -> Any:
    view = render.fleet(
        snapshot["hosts"], snapshot["active_runs"], snapshot["pending_runs"], snapshot["gpus"]
    )
    return _with_fires(view, snapshot.get("next_fires") or [])


def _with_fires(fleet_view: Any, upcoming: list[Any]) -> Any:
    """The fleet view, then the next fires of the schedules (when there are any)."""
    from rich.console import Group
    from rich.text import Text

    from app.cli.schedules import next_fires

    if not upcoming:
        return fleet_view
    return Group(fleet_view, Text(""), Text("next fires", "bold"), next_fires(upcoming))


def _watch(fleet: Any, json: bool) -> None:
    """Read the fleet again on each connection (subscribed) and after each event; a terminal
    gets the table redrawn in place, a pipe one frame (or JSON line) after another."""
    from rich.live import Live

    console = out()
    live = Live(console=console, auto_refresh=False) if console.is_terminal and not json else None
    try:
        if live is not None:
            live.start()
        with ends_on_ctrl_c(live.stop if live is not None else None):
            _redraw_on_events(fleet, json, console, live)
    finally:
        if live is not None:
            live.stop()


def _redraw_on_events(fleet: Any, json: bool, console: Any, live: Any) -> None:
    from app.client._sse import KEEPALIVE, Resume

    for item in fleet.event_stream({}, Resume(None)):
        if item is KEEPALIVE:
            continue
        snapshot = _snapshot(fleet)
        if json:
            print_line(snapshot)
        elif live is not None:
            live.update(_drawn(snapshot), refresh=True)
        else:
            console.print(_drawn(snapshot))
            console.print()
            sys.stdout.flush()


_VERDICT_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}


def doctor(
    ctx: typer.Context,
    host: Annotated[str, typer.Argument(help="The host's id or name.", show_default=False)],
    json: JsonOpt = False,
) -> None:
    """Check a host before trusting it: reachable, Docker version/API, task images, NVIDIA
    runtime, GPUs found vs declared, free disk on the Docker root, clock skew. One line per
    check with ok/warn/fail and how to fix it; exit 1 when a check fails."""
    from rich.markup import escape

    from app.cli.common import host_id, out

    report = client(ctx).hosts.doctor(host_id(ctx, host))
    if json:
        emit(report, True, lambda: None)
    else:
        console = out()
        console.print(f"[bold]{escape(report.host_name)} (#{report.host_id})[/]")
        for c in report.checks:
            style = _VERDICT_STYLE[c.status]
            console.print(f"[{style}]{c.status:<4}[/] {c.name:<15} {escape(c.detail)}")
            if c.fix:
                console.print(f"     {'':<15} [dim]fix:[/] {escape(c.fix)}")
    if not report.ok:
        raise typer.Exit(1)
