"""What a host's GPUs offer (pure): declared vs discovered, memory/name asks, held-out GPUs,
and placement by UUID on top of it."""

from __future__ import annotations

from app.gpus.offer import GpuAsk, GpuState, GpuUnit, GpuUse, gpu_run_reasons, never_reasons
from app.hosts.eligibility import HostLoad
from app.hosts.models import Capabilities
from app.scheduling.placement import HostView, Need, plan
from tests.scheduling.test_placement import NOW, STALE, make_host

SMALL = GpuUnit("GPU-small", 0, "NVIDIA GeForce RTX 3060", 12288)
BIG = GpuUnit("GPU-big", 1, "NVIDIA GeForce RTX 4090", 24564)
BUSY = GpuUnit("GPU-busy", 2, "NVIDIA A100-SXM4-80GB", 81920, reason="busy elsewhere: …", busy=True)
GONE = GpuUnit("GPU-gone", 3, "NVIDIA GeForce RTX 4090", 24564, present=False, reason="missing")
HOT = GpuUnit("GPU-hot", 1, "NVIDIA GeForce RTX 4090", 24564, reason="unhealthy: temperature")
FOUND = GpuState("ok", None, (SMALL, BIG, BUSY, GONE))


def caps(**values: object) -> Capabilities:
    return Capabilities.model_validate({"max_concurrency": 4, **values})


def test_a_declaration_is_trusted_until_a_probe_finds_the_gpus() -> None:
    declared = caps(gpus=True, gpu_count=2)
    assert never_reasons(declared, None, GpuAsk(2)) == []
    assert never_reasons(declared, None, GpuAsk(3)) == ["has 2 GPUs, run needs 3"]
    assert "unknown until a probe" in never_reasons(declared, None, GpuAsk(1, 20000))[0]
    failed = GpuState("error", "probe image unavailable", ())  # could not run: nothing learned
    assert never_reasons(declared, failed, GpuAsk(2)) == []
    assert never_reasons(caps(gpus="auto"), failed, GpuAsk(1)) == [
        "GPUs not discovered yet: probe image unavailable"
    ]
    assert never_reasons(caps(), FOUND, GpuAsk(1)) == ["no GPUs"]  # gpus: false is a CPU host


def test_fewer_gpus_found_than_declared() -> None:
    assert never_reasons(caps(gpus=True, gpu_count=4), FOUND, GpuAsk(1)) == [
        "declared 4 GPUs, found 3"
    ]
    assert never_reasons(caps(gpus=True, gpu_count=3), FOUND, GpuAsk(1)) == []
    none = GpuState("no_runtime", "no NVIDIA runtime", ())
    assert never_reasons(caps(gpus=True, gpu_count=1), none, GpuAsk(1)) == [
        "declared 1 GPUs, found 0 (no NVIDIA runtime)"
    ]
    assert never_reasons(caps(gpus="auto"), none, GpuAsk(1)) == [
        "no GPUs found (no NVIDIA runtime)"
    ]


def test_memory_and_name_asks() -> None:
    auto = caps(gpus="auto")
    assert never_reasons(auto, FOUND, GpuAsk(1, 20000)) == []
    assert never_reasons(auto, FOUND, GpuAsk(1, name="a100")) == []  # any case
    assert never_reasons(auto, FOUND, GpuAsk(2, name="4090")) == [
        "has 1 GPUs named *4090*, run needs 2"  # the missing 4090 does not count
    ]
    assert never_reasons(auto, FOUND, GpuAsk(1, 100000)) == [
        "has 0 GPUs with ≥ 100000 MiB, run needs 1"
    ]


def test_free_gpus_smallest_card_first_held_out_ones_never() -> None:
    use = GpuUse(list(FOUND.units), set())
    assert [u.id for u in use.free(GpuAsk(1))] == ["GPU-small", "GPU-big"]
    assert [u.id for u in use.free(GpuAsk(1, 20000))] == ["GPU-big"]
    assert use.free(GpuAsk(1, name="A100")) == []  # busy elsewhere
    assert use.totals() == {
        "gpus_total": 3,
        "gpus_free": 2,
        "gpus_busy_elsewhere": 1,
        "gpus_unhealthy": 1,
        "gpus_held": 0,
    }
    # A hold by index (placed before the host was probed) keeps that GPU taken.
    assert [u.id for u in GpuUse(list(FOUND.units), {"0"}).free(GpuAsk(1))] == ["GPU-big"]


def test_reasons_for_gpu_runs_on_the_host_view() -> None:
    auto = caps(gpus="auto")
    assert gpu_run_reasons(auto, FOUND, set()) == []
    assert gpu_run_reasons(auto, FOUND, {"GPU-small", "GPU-big"}) == [
        "no free GPU: 2 held by runs, 1 busy elsewhere, 1 held out (unhealthy or missing)"
    ]
    assert gpu_run_reasons(caps(), None, set()) == []


def view(state: GpuState | None, load: HostLoad | None = None, host_id: int = 1) -> HostView:
    host = make_host(host_id, caps={"gpus": "auto", "gpu_count": None, "max_concurrency": 4})
    return HostView.of(host, load, state)


def test_placement_hands_out_uuids_matching_the_ask() -> None:
    needs = [
        Need(1, gpu_need=1, gpu_memory_mb=20000),
        Need(2, gpu_need=1, gpu_name="3060"),
        Need(3, gpu_need=1),
    ]
    placed = plan(needs, [view(FOUND)], NOW, STALE)
    assert [(p.run_id, p.gpu_ids) for p in placed] == [(1, ("GPU-big",)), (2, ("GPU-small",))]


def test_an_unhealthy_gpu_is_never_given() -> None:
    state = GpuState("ok", None, (SMALL, HOT))
    placed = plan([Need(1, gpu_need=1), Need(2, gpu_need=1)], [view(state)], NOW, STALE)
    assert [p.gpu_ids for p in placed] == [("GPU-small",)]


def test_a_run_waiting_for_a_busy_card_blocks_neither_the_host_nor_other_cards() -> None:
    needs = [Need(1, gpu_need=1, gpu_name="A100"), Need(2, gpu_need=1), Need(3)]
    placed = plan(needs, [view(FOUND)], NOW, STALE)
    assert [(p.run_id, p.gpu_ids) for p in placed] == [(2, ("GPU-small",)), (3, ())]


def test_an_older_run_keeps_the_cards_it_waits_for() -> None:
    # Run 1 needs both 24 GiB cards, only one is free: the younger run 2 must not take it.
    both = GpuState("ok", None, (SMALL, BIG, GpuUnit("GPU-big2", 2, "RTX 4090", 24564)))
    load = HostLoad(held=1, gpus_in_use={"GPU-big2"})
    needs = [
        Need(1, gpu_need=2, gpu_memory_mb=20000),
        Need(2, gpu_need=1, gpu_memory_mb=20000),
        Need(3, gpu_need=1),
    ]
    placed = plan(needs, [view(both, load)], NOW, STALE)
    assert [(p.run_id, p.gpu_ids) for p in placed] == [(3, ("GPU-small",))]


def test_a_gpu_host_that_lost_a_declared_gpu_takes_no_gpu_run() -> None:
    host = make_host(1, caps={"gpus": True, "gpu_count": 4, "max_concurrency": 4})
    placed = plan([Need(1, gpu_need=1), Need(2)], [HostView.of(host, None, FOUND)], NOW, STALE)
    assert [(p.run_id, p.gpu_ids) for p in placed] == [(2, ())]
