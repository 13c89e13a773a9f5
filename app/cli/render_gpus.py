"""Tables for GPUs: a host's inventory (memory bar, utilisation, temperature, holder), doctor."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Group, RenderableType
from rich.text import Text

from app.cli.render import add_row, ago, table_of
from app.gpus.schemas import GpuInventory, GpuRead

BAR = 10


def memory_bar(gpu: GpuRead) -> Text:
    """`███░░░░░░░ 7.5/24.0 GiB`, or `-` when the card does not say."""
    total, used = gpu.memory_total_mb, gpu.memory_used_mb
    if not total:
        return Text("-")
    share = min(1.0, (used or 0) / total)
    filled = round(share * BAR)
    style = "red" if share > 0.9 else "yellow" if share > 0.5 else "green"
    used_text = "?" if used is None else f"{used / 1024:.1f}"
    return Text.assemble(
        ("█" * filled, style), ("░" * (BAR - filled), "dim"), f" {used_text}/{total / 1024:.1f} GiB"
    )


def use(gpu: GpuRead) -> Text:
    """Who has the GPU: a run of ours, something else, nobody, or why it is held out."""
    if gpu.held_by_run is not None:
        return Text(f"run {gpu.held_by_run}", "bold")
    if gpu.available:
        return Text("free", "green")
    return Text(gpu.reason or "held out", "yellow" if gpu.busy_elsewhere else "red")


def _unit(value: float | int | None, suffix: str) -> str:
    return "-" if value is None else f"{value:g}{suffix}"


def gpu_rows(inventories: Sequence[GpuInventory], with_host: bool = True) -> RenderableType:
    """One line per GPU of these hosts."""
    columns = ["HOST"] if with_host else []
    table = table_of(*columns, "GPU", "NAME", "MEMORY", "UTIL", "TEMP", "POWER", "USE")
    for inv in inventories:
        for g in inv.gpus:
            host = [inv.host_name] if with_host else []
            add_row(
                table,
                *host,
                f"{g.index} {g.uuid}",
                g.name or "-",
                memory_bar(g),
                _unit(g.utilization_pct, "%"),
                _unit(g.temperature_c, "°C"),
                _unit(g.power_w, " W"),
                use(g),
            )
    return table


def inventory(inv: GpuInventory) -> RenderableType:
    """A host's GPUs: declared vs found, the last probe, then each GPU."""
    declared = "no GPUs" if inv.declared is None else f"declared {inv.declared}"
    probe = "never probed" if inv.status is None else f"probed {ago(inv.probed_at)}: {inv.status}"
    head = Text.assemble(
        (f"{inv.host_name} (#{inv.host_id})", "bold"),
        f": {declared}, found {inv.found}; {inv.gpus_free} free, {inv.gpus_held} held, ",
        f"{inv.gpus_busy_elsewhere} busy elsewhere, {inv.gpus_unhealthy} held out; {probe}",
    )
    parts: list[RenderableType] = [head]
    if inv.probing:
        parts.append(Text("a probe is still running (a pull, say): look again soon", "yellow"))
    if inv.error:
        parts.append(Text(f"probe error: {inv.error}", "red"))
    for reason in inv.reasons:
        parts.append(Text(f"GPU runs: {reason}", "yellow"))
    if inv.gpus:
        parts += [Text(""), gpu_rows([inv], with_host=False)]
    return Group(*parts)
