"""Prometheus text exposition of the fleet's state, computed from the database."""

from __future__ import annotations

from sqlalchemy import func
from sqlmodel import col, select

from app import clock
from app.deps import AppState
from app.hosts import store as hosts_store
from app.hosts.eligibility import is_stale
from app.hosts.models import WorkerHost


def _escape(value: str) -> str:
    """A Prometheus label value: backslash, quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


async def render_metrics(state: AppState) -> str:
    """Gauges for hosts (health, staleness, load) and runs by status."""
    lines = [
        "# HELP dockfleet_host_up 1 when the host's last live check succeeded.",
        "# TYPE dockfleet_host_up gauge",
    ]
    stale_after = state.settings.stale_after_seconds
    async with state.db.sessions() as session:
        hosts = (await session.exec(select(WorkerHost).order_by(col(WorkerHost.id)))).all()
        loads = await hosts_store.loads(session)
        active = await hosts_store.active_counts(session, [h.id for h in hosts if h.id])
        by_status = select(hosts_store.RUNS.c.status, func.count()).group_by(
            hosts_store.RUNS.c.status
        )
        runs = (await session.exec(by_status)).all()
    now = clock.now()
    per_host: dict[str, list[str]] = {"up": [], "stale": [], "active": [], "held": [], "slots": []}
    for h in hosts:
        label = f'{{host="{_escape(h.name)}",id="{h.id}"}}'
        load = loads.get(h.id or 0)
        per_host["up"].append(f"dockfleet_host_up{label} {int(h.healthy)}")
        per_host["stale"].append(
            f"dockfleet_host_stale{label} {int(is_stale(h.last_seen_at, now, stale_after))}"
        )
        per_host["active"].append(f"dockfleet_host_active_runs{label} {active.get(h.id or 0, 0)}")
        per_host["held"].append(f"dockfleet_host_held_slots{label} {load.held if load else 0}")
        per_host["slots"].append(
            f"dockfleet_host_max_concurrency{label} {h.caps().max_concurrency}"
        )
    lines += per_host["up"]
    for name, key, text in (
        (
            "dockfleet_host_stale",
            "stale",
            "1 when the host has not been seen within the stale limit.",
        ),
        ("dockfleet_host_active_runs", "active", "Runs starting, running or cancelling there."),
        (
            "dockfleet_host_held_slots",
            "held",
            "Slots held: active runs plus holds kept until a container is known gone.",
        ),
        ("dockfleet_host_max_concurrency", "slots", "The host's max_concurrency."),
    ):
        lines += [f"# HELP {name} {text}", f"# TYPE {name} gauge", *per_host[key]]
    lines += ["# HELP dockfleet_runs Runs by status.", "# TYPE dockfleet_runs gauge"]
    lines += [f'dockfleet_runs{{status="{status}"}} {n}' for status, n in runs]
    return "\n".join(lines) + "\n"
