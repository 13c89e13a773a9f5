"""`dockfleet status` and `hosts gpus` show each GPU: memory bar, utilisation, temperature, use."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Console

from app.cli.render_gpus import gpu_rows, inventory, memory_bar
from app.gpus.schemas import GpuInventory, GpuRead

NOW = datetime(2026, 12, 2, 18, 0, tzinfo=UTC)


def gpu(index: int, **values: object) -> GpuRead:
    base: dict[str, object] = {
        "index": index,
        "uuid": f"GPU-{index}",
        "name": "NVIDIA GeForce RTX 4090",
        "memory_total_mb": 24576,
        "memory_used_mb": 12288,
        "utilization_pct": 50,
        "temperature_c": 61.0,
        "power_w": None,
        "processes": [],
        "present": True,
        "healthy": True,
        "busy_elsewhere": False,
        "held_by_run": None,
        "available": True,
        "reason": None,
        "first_seen_at": NOW,
        "last_seen_at": NOW,
    }
    return GpuRead.model_validate({**base, **values})


def text(renderable: object) -> str:
    console = Console(width=200, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_memory_bar() -> None:
    assert memory_bar(gpu(0)).plain == "█████░░░░░ 12.0/24.0 GiB"
    assert memory_bar(gpu(0, memory_total_mb=None)).plain == "-"


def test_each_gpu_with_its_use() -> None:
    inv = GpuInventory(
        host_id=1, host_name="unraid", declared="auto", status="ok", error=None,
        probed_at=NOW, probe_image="img", duration_ms=10.0, found=3, cdi_devices=[],
        gpus_total=3, gpus_free=1, gpus_busy_elsewhere=1, gpus_unhealthy=0, gpus_held=1,
        reasons=[],
        gpus=[
            gpu(0, held_by_run=7, available=False),
            gpu(1, busy_elsewhere=True, available=False, reason="busy elsewhere: 1 process"),
            gpu(2),
        ],
    )  # fmt: skip
    rows = text(gpu_rows([inv]))
    assert "unraid" in rows and "run 7" in rows and "busy elsewhere: 1 process" in rows
    assert "50%" in rows and "61°C" in rows and "free" in rows
    head = text(inventory(inv))
    assert "declared auto, found 3; 1 free, 1 held, 1 busy elsewhere, 0 held out" in head
