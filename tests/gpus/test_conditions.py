"""What a probe's rows make of a GPU: healthy, unhealthy (errors, ECC, heat), busy elsewhere
(processes dockfleet did not start, memory used), and never busy for our own runs' processes."""

from __future__ import annotations

from app.gpus.models import Gpu
from app.gpus.parse import AppRow, GpuRow, HealthRow, Report
from app.gpus.store import Limits, _found, condition_of, reason_of, unit_of

LIMITS = Limits(busy_mb=1024, max_temperature_c=90)


def found(
    row: GpuRow,
    apps: tuple[AppRow, ...] = (),
    health: HealthRow | None = None,
    held: frozenset[str] = frozenset(),
) -> Gpu:
    gpu = Gpu(host_id=1, uuid=row.uuid)
    report = Report(gpus=[row], apps=list(apps), health={row.uuid: health} if health else {})
    _found(gpu, row, report, set(held), LIMITS)
    return gpu


def row(**values: object) -> GpuRow:
    base: dict[str, object] = {"index": 1, "uuid": "GPU-x", "name": "RTX 4090"}
    base |= {"memory_total_mb": 24564, "memory_used_mb": 3, "temperature_c": 40.0}
    return GpuRow(**{**base, **values})  # type: ignore[arg-type]


def test_an_idle_gpu_is_healthy() -> None:
    gpu = found(row())
    assert condition_of(gpu) == "healthy" and reason_of(gpu) is None and unit_of(gpu).usable


def test_foreign_processes_or_memory_make_it_busy_elsewhere() -> None:
    busy = found(row(), (AppRow("GPU-x", 77, 500),))
    assert condition_of(busy) == "busy_elsewhere" and "pid 77" in (reason_of(busy) or "")
    assert unit_of(busy).busy and not unit_of(busy).usable
    used = found(row(memory_used_mb=2048))
    assert "2048 MiB used, above DOCKFLEET_GPU_BUSY_MB (1024)" in (reason_of(used) or "")


def test_our_own_runs_processes_are_not_busy_elsewhere() -> None:
    for key in ("GPU-x", "1"):  # held by UUID, or by index from before discovery
        ours = found(
            row(memory_used_mb=20000), (AppRow("GPU-x", 77, 19000),), held=frozenset({key})
        )
        assert condition_of(ours) == "healthy", key
        assert ours.processes == [{"pid": 77, "used_memory_mb": 19000}]


def test_errors_heat_and_ecc_hold_it_out() -> None:
    hot = found(row(temperature_c=95.0))
    assert condition_of(hot) == "unhealthy" and "95 °C above the 90 °C" in (reason_of(hot) or "")
    broken = found(row(errors=["memory.used [GPU requires reset]"]))
    assert "GPU requires reset" in (reason_of(broken) or "")
    ecc = found(row(), health=HealthRow("GPU-x", ecc_uncorrected=2, retired_pending=True))
    text = reason_of(ecc) or ""
    assert "2 uncorrected ECC errors" in text and "retired pages pending" in text
    assert not unit_of(ecc).usable and not unit_of(ecc).busy
