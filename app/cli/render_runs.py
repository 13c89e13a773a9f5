"""Tables for people about runs: lists, one run, stored logs, and the fleet at a glance."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from app.cli.render import (
    add_row,
    ago,
    duration,
    fields,
    gpus,
    health,
    load,
    seen,
    short_reasons,
    state,
    table_of,
)
from app.cli.render_gpus import gpu_rows
from app.client import HostRead, RunLogs, RunRead
from app.gpus.schemas import GpuInventory
from app.runs.schemas import RunStatus

RUN_STYLE = {
    RunStatus.pending: "yellow",
    RunStatus.starting: "cyan",
    RunStatus.running: "cyan",
    RunStatus.succeeded: "green",
    RunStatus.failed: "red",
    RunStatus.cancelled: "magenta",
}


def status_text(status: RunStatus) -> Text:
    """A run status in its colour."""
    return Text(status.value, RUN_STYLE[status])


def progress(run: RunRead) -> str:
    """`2/3 log_triage`: the task now running (or the last one) out of all."""
    current = next((t for t in run.tasks if t.status.value == "running"), None)
    done = sum(t.status.value in ("succeeded", "failed", "skipped") for t in run.tasks)
    if current is not None:
        return f"{current.position + 1}/{len(run.tasks)} {current.task_name}"
    return f"{done}/{len(run.tasks)} done"


def runs_table(runs: Iterable[RunRead]) -> Table:
    """The run list."""
    table = table_of("ID", "STATUS", "DIRECTIVE", "HOST", "TASKS", "CREATED", "TOOK", "ERROR")
    for r in runs:
        add_row(
            table,
            str(r.id),
            status_text(r.status),
            r.directive_name or "-",
            r.worker_host_name or "-",
            progress(r),
            ago(r.created_at),
            duration(r.started_at, r.finished_at),
            Text(r.error or "", "red"),
        )
    return table


def run_detail(r: RunRead) -> Group:
    """One run and its tasks."""
    host = f"{r.worker_host_name} (#{r.worker_host_id})" if r.worker_host_id else "-"
    summary = fields(
        [
            ("id", r.id),
            ("status", status_text(r.status)),
            ("directive", f"{r.directive_name} (#{r.directive_id})" if r.directive_name else None),
            ("host", host),
            ("target host", r.target_host_id),
            ("gpus", ", ".join(r.gpu_device_ids) or None),
            ("created", ago(r.created_at)),
            ("took", duration(r.started_at, r.finished_at)),
            ("waiting for", r.waiting_for),
            ("error", r.error),
        ]
    )
    tasks = table_of("#", "TASK", "IMAGE", "STATUS", "ATTEMPT", "EXIT", "TOOK", "ERROR")
    for t in r.tasks:
        add_row(
            tasks,
            str(t.position + 1),
            t.task_name,
            t.image or "-",
            t.status.value,
            str(t.attempt),
            "-" if t.exit_code is None else str(t.exit_code),
            duration(t.started_at, t.finished_at) if t.started_at else "-",
            Text(t.error or "", "red"),
        )
    return Group(summary, Text(""), tasks)


def logs_text(logs: RunLogs) -> str:
    """Stored logs, each task under the same header the live stream uses."""
    parts = []
    for t in logs.tasks:
        if not t.attempt:
            continue
        head = f"=== {t.task_name} (task {t.position + 1}, attempt {t.attempt}) ==="
        note = " [truncated: only the tail was kept]" if t.truncated else ""
        parts.append(f"{head}{note}\n{t.logs}")
    parts.append(f"=== run {logs.run_id} {logs.status.value} ===\n")
    return "".join(p if p.endswith("\n") else p + "\n" for p in parts)


def fleet(
    hosts: Sequence[HostRead],
    active: Sequence[RunRead],
    pending: int,
    inventories: Sequence[GpuInventory] = (),
) -> RenderableType:
    """The fleet at a glance: every host with health, staleness, load and GPUs; each GPU;
    active runs."""
    ready = sum(h.schedulable for h in hosts)
    head = Text.assemble(
        (f"{len(hosts)} hosts", "bold"),
        f" ({ready} schedulable), ",
        (f"{len(active)} runs active", "bold"),
        f", {pending} pending",
    )
    table = table_of("HOST", "STATE", "HEALTH", "SEEN", "LOAD", "GPUS HELD", "NOTE")
    for h in hosts:
        note = short_reasons(h) if h.unschedulable_reasons else ""
        add_row(table, f"{h.name} (#{h.id})", state(h), health(h), seen(h), load(h), gpus(h), note)
    parts: list[RenderableType] = [head, Text(""), table]
    if any(inv.gpus for inv in inventories):
        parts += [Text(""), gpu_rows(inventories)]
    if active:
        runs = table_of("RUN", "STATUS", "HOST", "DIRECTIVE", "TASK", "GPUS", "RUNNING FOR")
        for r in active:
            add_row(
                runs,
                str(r.id),
                status_text(r.status),
                r.worker_host_name or "-",
                r.directive_name or "-",
                progress(r),
                ", ".join(r.gpu_device_ids) or "-",
                duration(r.started_at or r.placed_at, None),
            )
        parts += [Text(""), runs]
    return Group(*parts)
