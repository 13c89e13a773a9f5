"""`dockfleet schedules …`: cron schedules that launch runs unattended."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from app.cli.common import JsonOpt, client, directive_id, emit, host_id, split_names
from app.cli.render import add_row, fields, table_of
from app.client import FireRead, ScheduleRead

app = typer.Typer(
    help="Schedules: a cron expression in a time zone that launches runs of a directive.",
    no_args_is_help=True,
)
ScheduleArg = Annotated[str, typer.Argument(help="The schedule's id or name.", show_default=False)]


def when(at: datetime | None, zone: str = "UTC") -> str:
    """A UTC time as `2026-03-29 03:00 CEST (in 3h)` in the schedule's zone."""
    if at is None:
        return "-"
    from zoneinfo import ZoneInfo

    local = at.astimezone(ZoneInfo(zone))
    seconds = int((at - datetime.now(UTC)).total_seconds())
    rel = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if abs(seconds) >= size:
            n = abs(seconds) // size
            rel = f" (in {n}{unit})" if seconds > 0 else f" ({n}{unit} ago)"
            break
    return f"{local:%Y-%m-%d %H:%M %Z}{rel}"


def schedules_table(rows: Iterable[ScheduleRead]) -> Table:
    """The schedule list."""
    table = table_of("ID", "NAME", "CRON", "ZONE", "ENABLED", "OVERLAP", "NEXT FIRE")
    for s in rows:
        enabled = Text("yes") if s.enabled else Text("no", "dim")
        next_fire = when(s.next_fire_at, s.timezone)
        add_row(table, str(s.id), s.name, s.cron, s.timezone, enabled, s.overlap, next_fire)
    return table


def _outcome(fire: FireRead) -> Text:
    styles = {"launched": "green", "failed": "red", "skipped": "yellow", "missed": "yellow"}
    return Text(str(fire.outcome), styles.get(str(fire.outcome), ""))


def fires_table(fires: Sequence[FireRead], zone: str) -> Table:
    """A schedule's fires, newest first."""
    table = table_of("DUE", "TRIGGER", "OUTCOME", "RUN", "RUN STATUS", "DETAIL")
    for f in fires:
        run = str(f.run_id) if f.run_id else "-"
        detail = f"{f.status_code}: {f.detail}" if f.status_code else f.detail
        add_row(table, when(f.due_at, zone), f.trigger, _outcome(f), run, f.run_status, detail)
    return table


def schedule_detail(s: ScheduleRead) -> RenderableType:
    """One schedule and its last fires."""
    head = fields(
        [
            ("id", s.id),
            ("name", s.name),
            ("description", s.description or None),
            ("cron", f"{s.cron} ({s.timezone})"),
            ("directive", s.directive_id),
            ("tasks", ", ".join(s.tasks) if s.tasks else "(the directive's)"),
            ("target host", s.target_host_id or "(any)"),
            ("enabled", "yes" if s.enabled else "no"),
            ("overlap", s.overlap),
            ("catch up", s.catch_up),
            ("next fire", when(s.next_fire_at, s.timezone)),
            ("last fire", when(s.last_fire_at, s.timezone)),
        ]
    )
    if not s.fires:
        return Group(head, Text(""), Text("no fires yet", "dim"))
    return Group(head, Text(""), fires_table(s.fires, s.timezone))


def next_fires(rows: Iterable[ScheduleRead], limit: int = 5) -> RenderableType:
    """The next fires of enabled schedules, soonest first (for `dockfleet status`)."""
    upcoming = sorted(
        (s for s in rows if s.enabled and s.next_fire_at is not None),
        key=lambda s: s.next_fire_at or datetime.max.replace(tzinfo=UTC),
    )[:limit]
    table = table_of("NEXT FIRE", "SCHEDULE", "CRON")
    for s in upcoming:
        add_row(table, when(s.next_fire_at, s.timezone), f"{s.name} (#{s.id})", s.cron)
    return table


@app.command("list")
def list_schedules(
    ctx: typer.Context,
    json: JsonOpt = False,
    enabled: Annotated[
        bool | None, typer.Option("--enabled/--disabled", help="Only enabled (or disabled).")
    ] = None,
) -> None:
    """List schedules with their next fire time."""
    found = list(client(ctx).schedules.iter(enabled=enabled))
    if not json and not found:
        emit(found, json, lambda: "no schedules: add one with dockfleet schedules add")
        return
    emit(found, json, lambda: schedules_table(found))


@app.command("add")
def add_schedule(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A unique name.", show_default=False)],
    cron: Annotated[
        str,
        typer.Option(
            help="5 fields (minute hour day month weekday) or @hourly/@daily/@weekly/@monthly/"
            "@yearly.",
            show_default=False,
        ),
    ],
    directive: Annotated[str, typer.Option(help="The directive's id or name.", show_default=False)],
    timezone: Annotated[str, typer.Option(help="IANA time zone, e.g. Europe/Berlin.")] = "UTC",
    task: Annotated[
        list[str] | None,
        typer.Option(help="A task of each run (repeatable, in order); none = the directive's."),
    ] = None,
    host: Annotated[
        str | None, typer.Option(help="Run only on this host (id or name).", show_default=False)
    ] = None,
    overlap: Annotated[
        str, typer.Option(help="While the last run is unfinished: skip, queue or allow.")
    ] = "skip",
    catch_up: Annotated[
        str, typer.Option(help="Times missed while down: none, or latest (fire once).")
    ] = "none",
    description: Annotated[str, typer.Option(help="What it is for.")] = "",
    disabled: Annotated[bool, typer.Option("--disabled", help="Create it disabled.")] = False,
    json: JsonOpt = False,
) -> None:
    """Create a schedule.

    Example: dockfleet schedules add nightly --cron "30 2 * * *" --timezone Europe/Berlin
    --task log_triage
    """
    body: dict[str, Any] = {
        "name": name,
        "cron": cron,
        "timezone": timezone,
        "directive_id": directive_id(ctx, directive),
        "overlap": overlap,
        "catch_up": catch_up,
        "description": description,
        "enabled": not disabled,
    }
    tasks = split_names(task)
    if tasks:
        body["tasks"] = tasks
    if host:
        body["target_host_id"] = host_id(ctx, host)
    created = client(ctx).schedules.create(body)
    emit(
        created,
        json,
        lambda: (
            f"created schedule {created.name} (#{created.id}); next fire "
            f"{when(created.next_fire_at, created.timezone)}"
        ),
    )


@app.command("show")
def show_schedule(
    ctx: typer.Context,
    schedule: ScheduleArg,
    fires: Annotated[int, typer.Option(min=0, max=200, help="How many recent fires.")] = 20,
    json: JsonOpt = False,
) -> None:
    """Show a schedule, its next fire and its last fires with their runs."""
    found = client(ctx).schedules.get(schedule, fires=fires)
    emit(found, json, lambda: schedule_detail(found))


def _set_enabled(ctx: typer.Context, schedule: str, enabled: bool, json: bool) -> None:
    found = client(ctx).schedules.update(schedule, enabled=enabled)
    verb = "enabled" if enabled else "disabled"
    emit(
        found,
        json,
        lambda: (
            f"schedule {found.name} (#{found.id}) {verb}; next fire "
            f"{when(found.next_fire_at, found.timezone)}"
        ),
    )


@app.command("enable")
def enable_schedule(ctx: typer.Context, schedule: ScheduleArg, json: JsonOpt = False) -> None:
    """Enable a schedule (the next fire is computed from now; nothing missed is replayed)."""
    _set_enabled(ctx, schedule, True, json)


@app.command("disable")
def disable_schedule(ctx: typer.Context, schedule: ScheduleArg, json: JsonOpt = False) -> None:
    """Disable a schedule: it fires no more until enabled."""
    _set_enabled(ctx, schedule, False, json)


@app.command("rm")
def remove_schedule(ctx: typer.Context, schedule: ScheduleArg, json: JsonOpt = False) -> None:
    """Delete a schedule and its history (its runs stay)."""
    found = client(ctx).schedules.get(schedule, fires=0)
    client(ctx).schedules.delete(found.id)
    emit(
        {"id": found.id, "deleted": True},
        json,
        lambda: f"schedule {found.name} (#{found.id}) deleted",
    )


@app.command("run-now")
def run_now(ctx: typer.Context, schedule: ScheduleArg, json: JsonOpt = False) -> None:
    """Fire a schedule once now (whatever its cron and overlap policy)."""
    fired = client(ctx).schedules.run_now(schedule)
    emit(fired, json, lambda: f"schedule {schedule} fired: run {fired.run_id}")
