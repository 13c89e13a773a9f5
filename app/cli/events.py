"""`dockfleet events`: follow host and run state changes as they happen (GET /api/events/)."""

from __future__ import annotations

from typing import Annotated

import typer

from app.cli.common import (
    JsonOpt,
    client,
    ends_on_ctrl_c,
    escape,
    host_id,
    out,
    print_line,
    split_names,
)
from app.client import EventRead


def _line(event: EventRead) -> str:
    about = " ".join(
        part
        for part in (
            f"run {event.run_id}" if event.run_id is not None else "",
            f"host {event.host_id}" if event.host_id is not None else "",
        )
        if part
    )
    details = ", ".join(f"{k}={v}" for k, v in event.data.items())
    when = event.created_at.strftime("%H:%M:%S")
    tail = f"  {details}" if details else ""
    return escape(f"{event.id:>6} {when} {event.type:<16} {about}{tail}")


def events(
    ctx: typer.Context,
    type_: Annotated[
        list[str] | None,
        typer.Option(
            "--type",
            "-t",
            help="Only these types (repeatable or comma list; `run.*` for every run event).",
        ),
    ] = None,
    run: Annotated[int | None, typer.Option(min=1, help="Only events of this run.")] = None,
    host: Annotated[str | None, typer.Option(help="Only events of this host (id or name).")] = None,
    after: Annotated[
        int | None, typer.Option(min=0, help="Replay from after this event id (default: now).")
    ] = None,
    count: Annotated[int | None, typer.Option(min=1, help="Stop after this many events.")] = None,
    json: JsonOpt = False,
) -> None:
    """Follow state changes (run.pending, run.running, run.failed, host.unhealthy, …) until
    Ctrl-C; with --json one JSON object per line. Reconnects (and resumes) by itself.

    Examples:

      dockfleet events

      dockfleet events --type run.failed --type host.unhealthy

      dockfleet events --run 42 --json
    """
    fleet = client(ctx)
    types = split_names(type_)
    seen = 0
    with ends_on_ctrl_c():
        for event in fleet.events(
            types=types, run_id=run, host_id=host_id(ctx, host) if host else None, after=after
        ):
            if json:
                print_line(event)
            else:
                out().print(_line(event))
            seen += 1
            if count is not None and seen >= count:
                return
