"""The `dockfleet` command: the server, and the API for people (tables) and scripts (--json).

Exit codes: 0 ok; 1 an error from the server, an unreachable server, or a run that ended
failed/cancelled under --wait/--follow; 2 a usage error (bad flags or values).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from app import __version__
from app.cli import directives, events, fleet, hosts, notifiers, runs, schedules
from app.cli.common import Env, report
from app.client import DockfleetError

EPILOG = (
    "Examples: dockfleet serve | dockfleet status | dockfleet hosts list | "
    "dockfleet runs launch --task log_triage --wait.  "
    "Exit codes: 0 ok, 1 error (server, unreachable, run failed), 2 usage."
)


class _Group(TyperGroup):
    """Turns a DockfleetError anywhere below into its message on stderr and exit 1."""

    def invoke(self, ctx: Any) -> Any:  # typer's (vendored) click.Context
        try:
            return super().invoke(ctx)
        except DockfleetError as exc:
            raise report(exc) from None
        finally:
            if isinstance(ctx.obj, Env):
                ctx.obj.close()


app = typer.Typer(
    name="dockfleet",
    cls=_Group,
    help="dockfleet: register Docker worker hosts and run containerised tasks on them.",
    epilog=EPILOG,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dockfleet {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(
            envvar="DOCKFLEET_URL",
            help="Server URL.",
            show_default="http://localhost:9595",
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(envvar="DOCKFLEET_API_TOKEN", help="API bearer token.", show_default=False),
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """dockfleet: register Docker worker hosts and run containerised tasks on them."""
    ctx.obj = Env(url=url, token=token)


app.command("serve")(fleet.serve)
token = typer.Typer(help="API tokens.", no_args_is_help=True)
token.command("new")(fleet.token_new)
app.add_typer(token, name="token")
app.command("status")(fleet.status)
app.command("doctor")(fleet.doctor)
app.command("events")(events.events)
app.add_typer(hosts.app, name="hosts")
app.add_typer(directives.directives, name="directives")
app.add_typer(directives.tasks, name="tasks")
app.add_typer(runs.app, name="runs")
app.add_typer(schedules.app, name="schedules")
app.add_typer(notifiers.app, name="notifiers")


def main() -> None:
    """Entry point of the `dockfleet` script."""
    app(prog_name="dockfleet")
