"""Placement is pure: snapshot in, plan out. These tests need no database and no Docker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.hosts.eligibility import HostLoad
from app.hosts.models import WorkerHost
from app.scheduling.placement import HostView, Need, plan

NOW = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
STALE = 300.0


def make_host(host_id: int, name: str | None = None, **overrides: object) -> WorkerHost:
    """A healthy, fresh, enabled host; override any field."""
    caps = {"gpus": False, "gpu_count": 0, "max_concurrency": 2}
    caps.update(overrides.pop("caps", {}))  # type: ignore[call-overload]
    values: dict[str, object] = {
        "id": host_id,
        "name": name or f"h{host_id}",
        "type": "docker_socket",
        "base_url": f"unix:///tmp/h{host_id}.sock",
        "enabled": True,
        "healthy": True,
        "last_seen_at": NOW - timedelta(seconds=10),
        "capabilities": caps,
    }
    values.update(overrides)
    return WorkerHost(**values)


def views(*hosts: WorkerHost, loads: dict[int, HostLoad] | None = None) -> list[HostView]:
    loads = loads or {}
    return [HostView.of(h, loads.get(h.id or 0)) for h in hosts]


def test_least_loaded_by_share_of_slots() -> None:
    hosts = views(
        make_host(1, caps={"max_concurrency": 2}),
        make_host(2, caps={"max_concurrency": 4}),
        loads={1: HostLoad(held=1), 2: HostLoad(held=1)},
    )
    [p] = plan([Need(10)], hosts, NOW, STALE)
    assert p.host_id == 2  # 1/4 < 1/2


def test_ties_break_on_fewest_active_then_name() -> None:
    hosts = views(make_host(1, "beta"), make_host(2, "alpha"))
    [p] = plan([Need(10)], hosts, NOW, STALE)
    assert p.host_name == "alpha"


def test_never_more_than_max_concurrency() -> None:
    hosts = views(
        make_host(1, caps={"max_concurrency": 2}), make_host(2, caps={"max_concurrency": 3})
    )
    placed = plan([Need(i) for i in range(20)], hosts, NOW, STALE)
    per_host = {1: 0, 2: 0}
    for p in placed:
        per_host[p.host_id] += 1
    assert per_host == {1: 2, 2: 3}
    assert [p.run_id for p in placed] == [0, 1, 2, 3, 4]  # oldest first


def test_ineligible_hosts_take_nothing() -> None:
    hosts = views(
        make_host(1, enabled=False),
        make_host(2, draining=True),
        make_host(3, healthy=False),
        make_host(4, last_seen_at=NOW - timedelta(seconds=STALE + 1)),
        make_host(5, last_seen_at=None),
    )
    assert plan([Need(1)], hosts, NOW, STALE) == []


def test_gpu_runs_get_distinct_free_ids() -> None:
    gpu = make_host(1, caps={"gpus": True, "gpu_count": 2, "max_concurrency": 4})
    hosts = views(gpu, loads={1: HostLoad(held=1, gpus_in_use={"0"})})
    placed = plan([Need(10, gpu_need=1), Need(11, gpu_need=1)], hosts, NOW, STALE)
    assert [p.gpu_ids for p in placed] == [("1",)]  # only one free id; the second waits


def test_gpu_need_above_gpu_count_is_never_placed() -> None:
    hosts = views(make_host(1, caps={"gpus": True, "gpu_count": 1, "max_concurrency": 4}))
    assert plan([Need(1, gpu_need=2)], hosts, NOW, STALE) == []


def test_cpu_runs_may_use_gpu_hosts_but_gpu_runs_need_them() -> None:
    hosts = views(make_host(1, caps={"gpus": True, "gpu_count": 2}), make_host(2))
    placed = plan([Need(1, gpu_need=2), Need(2)], hosts, NOW, STALE)
    assert [(p.run_id, p.host_id, p.gpu_ids) for p in placed] == [(1, 1, ("0", "1")), (2, 2, ())]


def test_target_host_is_the_only_choice() -> None:
    hosts = views(make_host(1), make_host(2), loads={2: HostLoad(held=1)})
    [p] = plan([Need(1, target_host_id=2)], hosts, NOW, STALE)
    assert p.host_id == 2


def test_older_run_reserves_its_hosts_against_younger_ones() -> None:
    # Host 1 is full; the oldest run is pinned to it. A younger unpinned run may use host 2,
    # but a younger run pinned to host 1 must not jump the queue when a slot frees mid-plan.
    hosts = views(
        make_host(1, caps={"max_concurrency": 1}), make_host(2), loads={1: HostLoad(held=1)}
    )
    placed = plan(
        [Need(1, target_host_id=1), Need(2), Need(3, target_host_id=1)], hosts, NOW, STALE
    )
    assert [(p.run_id, p.host_id) for p in placed] == [(2, 2)]


def test_each_placement_on_a_host_expects_the_previous_bump() -> None:
    hosts = views(make_host(1, placement_seq=7, caps={"max_concurrency": 3}))
    placed = plan([Need(1), Need(2), Need(3)], hosts, NOW, STALE)
    assert [p.seq for p in placed] == [7, 8, 9]
