"""What a host's GPUs offer to a run: the ask, the GPUs as placement sees them, the reasons.

Pure (no I/O, no imports from other rooms), so hosts/eligibility and scheduling/placement can
use it. A host whose GPUs were never discovered offers what it declares ("0", "1", …); once a
probe has found its GPUs it offers their UUIDs, minus the ones held out (missing, unhealthy,
busy with processes dockfleet did not start). A hold on an index ("1") from before discovery
keeps that GPU taken, so one physical GPU is never given twice across the switch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Probe statuses: the GPU query ran (ok), the daemon has no NVIDIA device driver (no_runtime),
# the driver/hook or nvidia-smi failed (driver_error: every GPU held out), or the probe could
# not run at all (error: image missing, host unreachable — the inventory stays as it was).
DISCOVERED = ("ok", "no_runtime", "driver_error")


@dataclass(frozen=True)
class GpuAsk:
    """What a run asks of GPUs: how many, at least this much memory each, a name substring."""

    count: int = 0
    memory_mb: int = 0
    name: str | None = None

    @property
    def filtered(self) -> bool:
        """Asks for memory or a name (needs discovered GPUs)."""
        return bool(self.memory_mb or self.name)

    def matches(self, gpu: GpuUnit) -> bool:
        """The GPU has the memory and the name asked for."""
        if self.memory_mb and (gpu.memory_total_mb or 0) < self.memory_mb:
            return False
        return not self.name or self.name.lower() in (gpu.name or "").lower()

    def describe(self) -> str:
        """ "GPUs with ≥ 20000 MiB named *4090*" (or just "GPUs")."""
        text = "GPUs"
        if self.memory_mb:
            text += f" with ≥ {self.memory_mb} MiB"
        if self.name:
            text += f" named *{self.name}*"
        return text


@dataclass(frozen=True)
class GpuUnit:
    """One GPU as placement sees it; `reason` says why it is held out (None: usable)."""

    id: str  # what a hold and the container's DeviceIDs use: the UUID (or "0".. undiscovered)
    index: int
    name: str | None = None
    memory_total_mb: int | None = None
    present: bool = True
    reason: str | None = None
    busy: bool = False  # the reason is use by processes dockfleet did not start

    @property
    def usable(self) -> bool:
        """Present, healthy and not busy elsewhere."""
        return self.present and self.reason is None

    def keys(self) -> tuple[str, str]:
        """The hold ids that mean this GPU: its UUID and its index."""
        return (self.id, str(self.index))


@dataclass(frozen=True)
class GpuState:
    """A host's last probe: its status, error and the GPUs it knows (missing ones included)."""

    status: str
    error: str | None = None
    units: tuple[GpuUnit, ...] = ()
    found_before: bool = False  # an earlier probe discovered the GPUs (the last one may not)

    @property
    def discovered(self) -> bool:
        """A probe has found what the host has (a probe that could not run changes nothing)."""
        return self.status in DISCOVERED or self.found_before

    def present(self) -> list[GpuUnit]:
        return [u for u in self.units if u.present]


def _suffix(state: GpuState) -> str:
    if state.status == "no_runtime":
        return " (no NVIDIA runtime)"
    if state.status == "driver_error" and state.error:
        return f" (probe failed: {state.error})"
    return ""


def units_of(caps: Any, state: GpuState | None) -> list[GpuUnit]:
    """The GPUs a host knows (discovered ones, missing ones last) or the declared ids."""
    if state is not None and state.discovered:
        return sorted(state.units, key=lambda u: (not u.present, u.index))
    if caps.gpus is True:
        return [GpuUnit(id=str(i), index=i) for i in range(caps.gpu_count or 0)]
    return []


def never_reasons(caps: Any, state: GpuState | None, ask: GpuAsk) -> list[str]:
    """Why the host could never take a run asking this of its GPUs ([] = it could)."""
    if not ask.count:
        return []
    if not caps.gpus:
        return ["no GPUs"]
    if state is None or not state.discovered:
        if caps.gpus == "auto":
            why = f": {state.error}" if state is not None and state.error else ""
            return [f"GPUs not discovered yet{why}"]
        if (caps.gpu_count or 0) < ask.count:
            return [f"has {caps.gpu_count} GPUs, run needs {ask.count}"]
        if ask.filtered:
            return [
                f"GPU names and memory unknown until a probe finds them (run asks for "
                f"{ask.describe()})"
            ]
        return []
    found = state.present()
    if caps.gpus is True and len(found) < (caps.gpu_count or 0):
        return [f"declared {caps.gpu_count} GPUs, found {len(found)}{_suffix(state)}"]
    if not found:
        return [f"no GPUs found{_suffix(state)}"]
    matching = [u for u in found if ask.matches(u)]
    if len(matching) < ask.count:
        if ask.filtered:
            return [f"has {len(matching)} {ask.describe()}, run needs {ask.count}"]
        return [f"has {len(found)} GPUs, run needs {ask.count}"]
    return []


@dataclass
class GpuUse:
    """A host's GPUs right now: totals for the API, and what is free for an ask."""

    units: list[GpuUnit]
    in_use: set[str] = field(default_factory=set)

    def held(self, unit: GpuUnit) -> bool:
        """One of our runs holds it (by UUID or, from before discovery, by index)."""
        return unit.id in self.in_use or str(unit.index) in self.in_use

    def free(self, ask: GpuAsk) -> list[GpuUnit]:
        """Usable, unheld GPUs matching the ask; the smallest card first (big ones stay free
        for runs that need them), then by index."""
        out = [u for u in self.units if u.usable and not self.held(u) and ask.matches(u)]
        return sorted(out, key=lambda u: (u.memory_total_mb or 0, u.index))

    def totals(self) -> dict[str, int]:
        """gpus_total (present) / free / busy_elsewhere / held out (unhealthy or missing) /
        held by our runs."""
        busy = sum(1 for u in self.units if u.reason and u.busy)
        out = sum(1 for u in self.units if u.reason and not u.busy)
        held = sum(1 for u in self.units if u.present and self.held(u))
        free = sum(1 for u in self.units if u.usable and not self.held(u))
        return {
            "gpus_total": sum(1 for u in self.units if u.present),
            "gpus_free": free,
            "gpus_busy_elsewhere": busy,
            "gpus_unhealthy": out,
            "gpus_held": held,
        }


def gpu_run_reasons(caps: Any, state: GpuState | None, in_use: set[str]) -> list[str]:
    """Why the host cannot take a one-GPU run now, for the host's own view ([] = it can)."""
    if not caps.gpus:
        return []
    never = never_reasons(caps, state, GpuAsk(1))
    if never:
        return never
    use = GpuUse(units_of(caps, state), in_use)
    if use.free(GpuAsk(1)):
        return []
    t = use.totals()
    parts = [f"{t['gpus_held']} held by runs"]
    if t["gpus_busy_elsewhere"]:
        parts.append(f"{t['gpus_busy_elsewhere']} busy elsewhere")
    if t["gpus_unhealthy"]:
        parts.append(f"{t['gpus_unhealthy']} held out (unhealthy or missing)")
    return ["no free GPU: " + ", ".join(parts)]
