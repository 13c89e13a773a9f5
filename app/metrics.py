"""Prometheus text exposition of the fleet's state, computed from the database."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func
from sqlmodel import col, select

from app import clock
from app.deps import AppState
from app.gpus.models import Gpu
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
        gpus = (await session.exec(select(Gpu).order_by(col(Gpu.host_id), col(Gpu.index)))).all()
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
    names = {h.id: h.name for h in hosts}
    lines += _gpu_lines(gpus, names, loads)
    return "\n".join(lines) + "\n"


_GPU_GAUGES = (
    ("dockfleet_gpu_memory_total_bytes", "Total memory of the GPU, at its last probe."),
    ("dockfleet_gpu_memory_used_bytes", "Memory used on the GPU, at its last probe."),
    ("dockfleet_gpu_utilization_ratio", "GPU utilisation (0-1), at its last probe."),
    ("dockfleet_gpu_temperature_celsius", "GPU temperature, at its last probe."),
    ("dockfleet_gpu_power_watts", "GPU power draw, at its last probe."),
    ("dockfleet_gpu_present", "1 when the last probe found the GPU."),
    ("dockfleet_gpu_healthy", "1 when present, without errors and below the temperature limit."),
    ("dockfleet_gpu_busy_elsewhere", "1 when processes dockfleet did not start use the GPU."),
    ("dockfleet_gpu_held", "1 when a run of ours holds the GPU."),
)


def _gpu_lines(gpus: Any, names: dict[int | None, str], loads: dict[int, Any]) -> list[str]:
    """Per-GPU gauges with host, uuid, index and name labels (values probes found)."""
    series: dict[str, list[str]] = {name: [] for name, _ in _GPU_GAUGES}
    for g in gpus:
        label = (
            f'{{host="{_escape(names.get(g.host_id, str(g.host_id)))}",uuid="{_escape(g.uuid)}",'
            f'index="{g.index}",name="{_escape(g.name or "")}"}}'
        )
        load = loads.get(g.host_id)
        held = load is not None and (g.uuid in load.gpus_in_use or str(g.index) in load.gpus_in_use)
        mib = 1024 * 1024
        values: dict[str, float | None] = {
            "dockfleet_gpu_memory_total_bytes": _times(g.memory_total_mb, mib),
            "dockfleet_gpu_memory_used_bytes": _times(g.memory_used_mb, mib),
            "dockfleet_gpu_utilization_ratio": _times(g.utilization_pct, 0.01),
            "dockfleet_gpu_temperature_celsius": g.temperature_c,
            "dockfleet_gpu_power_watts": g.power_w,
            "dockfleet_gpu_present": int(g.present),
            "dockfleet_gpu_healthy": int(g.present and not g.health_error),
            "dockfleet_gpu_busy_elsewhere": int(bool(g.present and g.busy_reason)),
            "dockfleet_gpu_held": int(held and g.present),
        }
        for name, value in values.items():
            if value is not None:  # "[N/A]" on this card: no sample rather than a fake 0
                number = int(value) if float(value).is_integer() else round(value, 6)
                series[name].append(f"{name}{label} {number}")
    out: list[str] = []
    for name, text in _GPU_GAUGES:
        out += [f"# HELP {name} {text}", f"# TYPE {name} gauge", *series[name]]
    return out


def _times(value: float | None, factor: float) -> float | None:
    return None if value is None else value * factor
