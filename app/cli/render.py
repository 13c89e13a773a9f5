"""Tables and panels for people: hosts, directives, tasks, and the helpers every view uses."""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from rich.table import Table
from rich.text import Text

from app.client import DirectiveRead, HostHealth, HostRead, TaskRead


def ago(when: datetime | None, now: datetime | None = None) -> str:
    """`12s ago`, `5m ago`, `3h ago`, `2d ago`, or `never`."""
    if when is None:
        return "never"
    seconds = int(((now or datetime.now(UTC)) - when).total_seconds())
    if seconds < 0:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def duration(start: datetime | None, end: datetime | None) -> str:
    """Seconds between two times (to now when `end` is None), or `-`."""
    if start is None:
        return "-"
    seconds = ((end or datetime.now(UTC)) - start).total_seconds()
    return f"{seconds:.1f}s" if seconds < 60 else f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def table_of(*columns: str) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def health(host: HostRead | HostHealth) -> Text:
    """`healthy` in green or `unhealthy` in red."""
    return Text("healthy", "green") if host.healthy else Text("unhealthy", "red")


def seen(host: HostRead | HostHealth) -> Text:
    """When the host was last seen, red when stale."""
    text = ago(host.last_seen_at)
    return Text(f"stale ({text})", "red") if host.is_stale else Text(text)


def state(host: HostRead) -> Text:
    """enabled / disabled / draining."""
    if not host.enabled:
        return Text("disabled", "dim")
    return Text("draining", "yellow") if host.draining else Text("enabled")


def load(host: HostRead) -> str:
    """Active runs against max_concurrency, e.g. `2/3`."""
    return f"{host.active_runs_count}/{host.capabilities.max_concurrency}"


def gpus(host: HostRead) -> str:
    """GPUs held by our runs against GPUs offered, e.g. `1/4 (1 busy elsewhere)`, or `-`."""
    if not host.capabilities.gpus:
        return "-"
    if not host.gpus_total:
        return "auto: none found" if host.capabilities.gpus == "auto" else "0"
    extra = [f"{host.gpus_free} free"]
    if host.gpus_busy_elsewhere:
        extra.append(f"{host.gpus_busy_elsewhere} busy elsewhere")
    if host.gpus_unhealthy:
        extra.append(f"{host.gpus_unhealthy} held out")
    return f"{host.gpus_held}/{host.gpus_total} ({', '.join(extra)})"


def short_reasons(host: HostRead) -> str:
    """Why the host cannot take runs, one word each (`hosts show` has the details)."""
    return "; ".join(
        dict.fromkeys(
            r if r.startswith("GPU runs: ") else r.split(":")[0] for r in host.unschedulable_reasons
        )
    )


def hosts_table(hosts: Iterable[HostRead]) -> Table:
    """The host list."""
    table = table_of("ID", "NAME", "TYPE", "ADDRESS", "STATE", "HEALTH", "SEEN", "LOAD", "GPUS")
    table.add_column("NOT SCHEDULABLE", overflow="fold", style="dim")
    for h in hosts:
        why = short_reasons(h)
        row = [str(h.id), h.name, h.type.value, h.base_url, state(h), health(h), seen(h)]
        add_row(table, *row, load(h), gpus(h), why)
    return table


def add_row(table: Table, *cells: Any) -> None:
    """A row whose plain strings are shown verbatim (a name like `a[b]` is not markup)."""
    table.add_row(
        *(Text("-" if c is None else str(c)) if not isinstance(c, Text) else c for c in cells)
    )


def fields(pairs: Sequence[tuple[str, Any]]) -> Table:
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in pairs:
        add_row(table, key, value)
    return table


def host_detail(h: HostRead) -> Table:
    """One host, field by field."""
    caps = h.capabilities
    return fields(
        [
            ("id", h.id),
            ("name", h.name),
            ("type", h.type.value),
            ("base_url", h.base_url),
            ("state", state(h)),
            ("health", health(h)),
            ("last seen", seen(h)),
            ("last check", ago(h.last_check_at)),
            ("last error", h.last_error),
            ("load", load(h)),
            ("gpus", gpus(h)),
            ("gpu probe", _probe(h)),
            ("labels", ", ".join(f"{k}={v}" for k, v in caps.labels.items()) or None),
            (
                "schedulable",
                "yes" if h.schedulable else "no: " + "; ".join(h.unschedulable_reasons),
            ),
            ("ssh tunnel", "yes" if h.has_ssh_config else "no"),
            ("tls", "yes" if h.has_tls_config else "no"),
            ("docker", f"{h.docker_version} (API {h.api_version})" if h.docker_version else None),
            ("cpus / memory", _machine(h)),
        ]
    )


def _probe(h: HostRead) -> str | None:
    if h.gpu_probe_status is None:
        return None
    return h.gpu_probe_status + (f": {h.gpu_probe_error}" if h.gpu_probe_error else "")


def _machine(h: HostRead) -> str | None:
    if h.ncpu is None:
        return None
    mem = f"{h.mem_total / 2**30:.1f} GiB" if h.mem_total else "?"
    return f"{h.ncpu} / {mem}"


def health_detail(h: HostHealth) -> Table:
    """A heartbeat or live check answer."""
    pairs: list[tuple[str, Any]] = [
        ("host", f"{h.name} (#{h.host_id})"),
        ("health", health(h)),
        ("last seen", seen(h)),
        ("active runs", h.active_runs_count),
    ]
    if h.check is not None:
        ok = Text("ok", "green") if h.check.ok else Text("failed", "red")
        pairs.append(("check", ok))
        if h.check.latency_ms is not None:
            pairs.append(("latency", f"{h.check.latency_ms:.0f} ms"))
        pairs += [("docker", h.check.docker_version), ("error", h.check.error)]
    return fields(pairs)


def directives_table(directives: Iterable[DirectiveRead]) -> Table:
    """The directive list."""
    table = table_of("ID", "NAME", "TASKS", "ENV", "DESCRIPTION")
    for d in directives:
        tasks = ", ".join(d.tasks) or "(every enabled task)"
        env = ", ".join(d.env) or "-"
        add_row(table, str(d.id), d.name, tasks, env, d.description)
    return table


def directive_detail(d: DirectiveRead) -> Table:
    """One directive."""
    return fields(
        [
            ("id", d.id),
            ("name", d.name),
            ("description", d.description),
            ("tasks", ", ".join(d.tasks) or "(every enabled task)"),
            ("env", ", ".join(f"{k}={v}" for k, v in d.env.items()) or None),
        ]
    )


def tasks_table(tasks: Iterable[TaskRead]) -> Table:
    """The task definition list."""
    table = table_of("ID", "NAME", "IMAGE", "GPUS", "TIMEOUT", "ENABLED", "DESCRIPTION")
    for t in tasks:
        gpu = str(max(t.gpu_count, 1)) if t.requires_gpu else "-"
        timeout = f"{t.timeout_seconds}s" if t.timeout_seconds else "-"
        enabled = Text("yes") if t.enabled else Text("no", "dim")
        add_row(table, str(t.id), t.name, t.image, gpu, timeout, enabled, t.description)
    return table


def task_detail(t: TaskRead) -> Table:
    """One task definition."""
    command = shlex.join(t.command) if t.command else "(image default)"
    return fields(
        [
            ("id", t.id),
            ("name", t.name),
            ("description", t.description),
            ("image", t.image),
            ("command", command),
            ("env", ", ".join(f"{k}={v}" for k, v in t.env.items()) or None),
            ("gpus", max(t.gpu_count, 1) if t.requires_gpu else 0),
            ("timeout", f"{t.timeout_seconds}s" if t.timeout_seconds else None),
            ("retries", t.max_retries),
            ("binds", ", ".join(t.binds) or None),
            ("network", t.network_mode),
            ("limits", _limits(t)),
            ("enabled", "yes" if t.enabled else "no"),
        ]
    )


def _limits(t: TaskRead) -> str | None:
    parts = []
    if t.cpu_limit:
        parts.append(f"{t.cpu_limit:g} CPUs")
    if t.memory_limit_mb:
        parts.append(f"{t.memory_limit_mb} MiB")
    return ", ".join(parts) or None
