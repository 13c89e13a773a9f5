"""`dockfleet notifiers …`: where events are sent (signed webhooks, ntfy, Discord, Slack)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from app.cli.common import JsonOpt, client, emit, fail, split_names
from app.cli.render import add_row, table_of
from app.cli.schedules import when
from app.client import DeliveryRead, NotifierRead

app = typer.Typer(
    help="Notifiers: tell a webhook, ntfy, Discord or Slack about failed runs, refused "
    "schedules, unhealthy hosts.",
    no_args_is_help=True,
)
NotifierArg = Annotated[str, typer.Argument(help="The notifier's id or name.", show_default=False)]


def notifiers_table(rows: Iterable[NotifierRead]) -> Table:
    """The notifier list (URLs masked)."""
    table = table_of("ID", "NAME", "KIND", "URL", "EVENTS", "FILTERS", "ENABLED")
    for n in rows:
        filters = [
            f"{label} {','.join(map(str, ids))}"
            for label, ids in (
                ("directives", n.directive_ids),
                ("schedules", n.schedule_ids),
                ("hosts", n.host_ids),
            )
            if ids
        ]
        if n.on_change_only:
            filters.append("on change only")
        enabled = Text("yes") if n.enabled else Text("no", "dim")
        add_row(
            table,
            str(n.id),
            n.name,
            n.kind,
            n.url_masked,
            ", ".join(n.event_types),
            "; ".join(filters) or "-",
            enabled,
        )
    return table


def _status(d: DeliveryRead) -> Text:
    style = {"delivered": "green", "failed": "red", "pending": "yellow"}.get(str(d.status), "")
    return Text(str(d.status), style)


def deliveries_table(rows: Iterable[DeliveryRead]) -> Table:
    """A notifier's deliveries, newest first."""
    table = table_of("ID", "EVENT", "STATUS", "TRIES", "LAST ANSWER", "CREATED", "NEXT TRY")
    for d in rows:
        answer = str(d.last_status_code) if d.last_status_code else "-"
        if d.last_error:
            answer = d.last_error if answer == "-" else f"{answer} {d.last_error}"
        add_row(
            table,
            str(d.id),
            d.event_type,
            _status(d),
            str(d.attempts),
            answer,
            when(d.created_at),
            when(d.next_attempt_at) if d.status == "pending" else "-",
        )
    return table


@app.command("list")
def list_notifiers(ctx: typer.Context, json: JsonOpt = False) -> None:
    """List notifiers (URLs masked, secrets never shown)."""
    found = list(client(ctx).notifiers.iter())
    if not json and not found:
        emit(found, json, lambda: "no notifiers: add one with dockfleet notifiers add")
        return
    emit(found, json, lambda: notifiers_table(found))


def _ids(values: list[str] | None, option: str) -> list[int]:
    out = []
    for value in split_names(values) or []:
        if not value.isdigit():
            raise typer.BadParameter(f"{value!r} is not an id", param_hint=option)
        out.append(int(value))
    return out


@app.command("add")
def add_notifier(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A unique name.", show_default=False)],
    kind: Annotated[str, typer.Option(help="webhook, ntfy, discord or slack.", show_default=False)],
    url: Annotated[
        str | None,
        typer.Option(
            envvar="DOCKFLEET_NOTIFIER_URL",
            help="The URL (or $DOCKFLEET_NOTIFIER_URL, to keep a token out of the shell history).",
            show_default=False,
        ),
    ] = None,
    secret_env: Annotated[
        str | None,
        typer.Option(
            help="Name of an environment variable holding the secret (webhook: the HMAC key; "
            "ntfy: an access token).",
            show_default=False,
        ),
    ] = None,
    event: Annotated[
        list[str] | None,
        typer.Option(
            help="An event type to send (repeatable; `run.*` for a prefix). Default: run.failed, "
            "schedule.failed, host.unhealthy."
        ),
    ] = None,
    directive: Annotated[
        list[str] | None, typer.Option(help="Only runs of this directive id (repeatable).")
    ] = None,
    schedule: Annotated[
        list[str] | None, typer.Option(help="Only runs of this schedule id (repeatable).")
    ] = None,
    host: Annotated[
        list[str] | None, typer.Option(help="Only events of this host id (repeatable).")
    ] = None,
    on_change_only: Annotated[
        bool,
        typer.Option(
            "--on-change-only",
            help="Only when an outcome changes (runs start failing, recover; a host goes down, "
            "comes back).",
        ),
    ] = False,
    json: JsonOpt = False,
) -> None:
    """Create a notifier.

    Example: DOCKFLEET_NOTIFIER_URL=http://ntfy.lan/dockfleet dockfleet notifiers add phone
    --kind ntfy --event run.failed --event run.succeeded --on-change-only
    """
    if not url:
        raise fail("give --url or $DOCKFLEET_NOTIFIER_URL", code=2)
    body: dict[str, Any] = {"name": name, "kind": kind, "url": url}
    if secret_env:
        secret = os.environ.get(secret_env)
        if not secret:
            raise fail(f"${secret_env} is not set", code=2)
        body["secret"] = secret
    types = split_names(event)
    if types:
        body["event_types"] = types
    body["directive_ids"] = _ids(directive, "--directive")
    body["schedule_ids"] = _ids(schedule, "--schedule")
    body["host_ids"] = _ids(host, "--host")
    body["on_change_only"] = on_change_only
    created = client(ctx).notifiers.create(body)
    emit(
        created,
        json,
        lambda: f"created notifier {created.name} (#{created.id}) -> {created.url_masked}",
    )


@app.command("rm")
def remove_notifier(ctx: typer.Context, notifier: NotifierArg, json: JsonOpt = False) -> None:
    """Delete a notifier and its deliveries."""
    found = client(ctx).notifiers.get(notifier)
    client(ctx).notifiers.delete(found.id)
    emit(
        {"id": found.id, "deleted": True},
        json,
        lambda: f"notifier {found.name} (#{found.id}) deleted",
    )


@app.command("test")
def test_notifier(ctx: typer.Context, notifier: NotifierArg, json: JsonOpt = False) -> None:
    """Send a test notification now (exit 1 when it was not delivered)."""
    delivery = client(ctx).notifiers.test(notifier)
    if json:
        emit(delivery, json, lambda: "")
    elif delivery.status == "delivered":
        emit(delivery, json, lambda: f"delivered (HTTP {delivery.last_status_code})")
    if delivery.status != "delivered":
        answer = delivery.last_error or f"HTTP {delivery.last_status_code}"
        raise fail(f"not delivered ({delivery.status}): {answer}")


@app.command("deliveries")
def list_deliveries(
    ctx: typer.Context,
    notifier: NotifierArg,
    status: Annotated[
        str | None, typer.Option(help="Only pending, delivering, delivered or failed.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many, newest first.")] = 20,
    json: JsonOpt = False,
) -> None:
    """A notifier's delivery log: event, status, tries, last answer."""
    page = client(ctx).notifiers.deliveries(notifier, status=status, limit=limit)
    emit(page.results, json, lambda: deliveries_table(page.results))
