"""`dockfleet runs …`: launch, list, show, logs, cancel and wait for runs."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.text import Text

from app.cli import render_runs as render
from app.cli.common import (
    JsonOpt,
    client,
    directive_id,
    emit,
    err,
    fail,
    host_id,
    out,
    print_json,
    split_names,
)
from app.client import DockfleetClient, DockfleetError, RunRead, RunStatus

app = typer.Typer(
    help="Runs: ordered lists of containerised tasks on one host.", no_args_is_help=True
)

RunArg = Annotated[int, typer.Argument(help="The run's id.", show_default=False)]
TimeoutOpt = Annotated[
    float | None,
    typer.Option(min=0, help="Stop waiting (exit 1) after this many seconds."),
]
DEFAULT_DIRECTIVE = "default"


def _directive(ctx: typer.Context, key: str | None) -> int:
    try:
        return directive_id(ctx, key or DEFAULT_DIRECTIVE)
    except DockfleetError as exc:
        if key is None and exc.status == 404:
            raise fail(
                f"no directive named {DEFAULT_DIRECTIVE!r}: create it "
                f"(dockfleet directives add {DEFAULT_DIRECTIVE}) or pass --directive"
            ) from None
        raise


def _wait(fleet: DockfleetClient, run: RunRead, timeout: float | None) -> RunRead:
    """Wait for the run's end behind a spinner on stderr (drawn only on a terminal)."""
    console = err()

    def line(r: RunRead) -> Text:
        where = f" on {r.worker_host_name}" if r.worker_host_name else ""
        return Text(f"run {r.id} {r.status.value}{where}: {render.progress(r)}")

    with console.status(line(run)) as spinner:
        return fleet.runs.wait_for_run(run.id, timeout, on_update=lambda r: spinner.update(line(r)))


def _follow(fleet: DockfleetClient, run_id: int, to_stderr: bool) -> RunRead:
    """Copy the live log stream as it comes; then the run as it ended."""
    stream = sys.stderr if to_stderr else sys.stdout
    for chunk in fleet.runs.follow_logs(run_id):
        stream.write(chunk)
        stream.flush()
    return fleet.runs.wait_for_run(run_id)  # at once, unless the stream was cut short


def _ended(run: RunRead, json: bool) -> None:
    """Show a finished run; exit 1 unless it succeeded."""
    emit(run, json, lambda: render.run_detail(run))
    if run.status != RunStatus.succeeded:
        raise fail(f"run {run.id} {run.status.value}" + (f": {run.error}" if run.error else ""))


@app.command("launch")
def launch(
    ctx: typer.Context,
    directive: Annotated[
        str | None,
        typer.Option(
            "--directive", "-d", help="Directive id or name (default: the one named default)."
        ),
    ] = None,
    task: Annotated[
        list[str] | None,
        typer.Option(
            "--task", "-t", help="A task to run (repeatable, in order; default: the directive's)."
        ),
    ] = None,
    host: Annotated[
        str | None,
        typer.Option(help="Run only on this host (id or name; default: the least loaded)."),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait for the end; exit 1 unless it succeeded.")
    ] = False,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow", "-f", help="Stream the logs until the end; exit 1 unless it succeeded."
        ),
    ] = False,
    timeout: Annotated[
        float | None,
        typer.Option(min=0, help="With --wait: stop waiting (exit 1) after this many seconds."),
    ] = None,
    json: JsonOpt = False,
) -> None:
    """Launch a run of a directive, anywhere or on one host.

    Examples:

      dockfleet runs launch

      dockfleet runs launch --task log_triage --task gpu_report

      dockfleet runs launch --task log_triage --host Unraid --follow
    """
    fleet = client(ctx)
    did = _directive(ctx, directive)
    target = host_id(ctx, host) if host else None
    run = fleet.runs.launch(did, split_names(task), target)
    if follow:
        _ended(_follow(fleet, run.id, to_stderr=json), json)
    elif wait:
        _ended(_wait(fleet, run, timeout), json)
    elif json:
        print_json(run)
    else:
        where = f" on {run.worker_host_name}" if run.worker_host_name else ""
        out().print(f"run {run.id} {run.status.value}{where}")
        out().print(render.run_detail(run))


def _statuses(values: list[str] | None) -> list[str] | None:
    names = split_names(values)
    allowed = [s.value for s in RunStatus]
    for name in names or []:
        if name not in allowed:
            raise typer.BadParameter(f"{name!r} is not one of {', '.join(allowed)}")
    return names


@app.command("list")
def list_runs(
    ctx: typer.Context,
    status: Annotated[
        list[str] | None,
        typer.Option(help="Only these statuses (repeatable or comma list), e.g. running,pending."),
    ] = None,
    host: Annotated[str | None, typer.Option(help="Only runs on this host (id or name).")] = None,
    directive: Annotated[
        str | None, typer.Option(help="Only runs of this directive (id or name).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Newest N runs.")] = 50,
    json: JsonOpt = False,
) -> None:
    """List runs, newest first."""
    page = client(ctx).runs.list(
        status=_statuses(status),
        worker_host_id=host_id(ctx, host) if host else None,
        directive_id=directive_id(ctx, directive) if directive else None,
        limit=limit,
    )
    if json:
        print_json(page.results)
        return
    if not page.results:
        out().print("no runs")
        return
    out().print(render.runs_table(page.results))
    if page.count > len(page.results):
        err().print(f"{len(page.results)} of {page.count} runs shown (--limit)")


@app.command("show")
def show(ctx: typer.Context, run: RunArg, json: JsonOpt = False) -> None:
    """Show one run: its tasks, host, GPUs, timings and errors."""
    found = client(ctx).runs.get(run)
    emit(found, json, lambda: render.run_detail(found))


@app.command("logs")
def logs(
    ctx: typer.Context,
    run: RunArg,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Stream live output until the run ends.")
    ] = False,
    json: JsonOpt = False,
) -> None:
    """Print a run's logs: what was kept of each task, or the live stream with --follow."""
    fleet = client(ctx)
    if follow:
        _follow(fleet, run, to_stderr=False)
        return
    stored = fleet.runs.logs(run)
    if json:
        print_json(stored)
    else:
        sys.stdout.write(render.logs_text(stored))


@app.command("cancel")
def cancel(ctx: typer.Context, run: RunArg, json: JsonOpt = False) -> None:
    """Cancel a run: pending at once; running: its container is stopped (grace, then kill)."""
    cancelled = client(ctx).runs.cancel(run)
    if json:
        print_json(cancelled)
    else:
        done = cancelled.status == RunStatus.cancelled
        note = "" if done else " (stopping its container)"
        out().print(f"run {cancelled.id} {'cancelled' if done else 'cancel requested'}{note}")


@app.command("wait")
def wait(
    ctx: typer.Context, run: RunArg, timeout: TimeoutOpt = None, json: JsonOpt = False
) -> None:
    """Wait for a run to end; exit 1 unless it succeeded (or when --timeout passes)."""
    fleet = client(ctx)
    _ended(_wait(fleet, fleet.runs.get(run), timeout), json)
