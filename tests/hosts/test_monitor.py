"""HealthMonitor.tick() and staleness, driven by a fake clock (no Docker daemon involved)."""

from __future__ import annotations

from pathlib import Path

import httpx
from fastapi import FastAPI

from app.clock import FakeClock
from app.hosts.models import WorkerHost
from app.hosts.monitor import HealthMonitor
from bench.hollow import running
from tests.builders import MISSING_SOCKET, host_payload

API = "/api/worker-hosts/"


def monitor_of(app: FastAPI) -> HealthMonitor:
    monitor = app.state.dockfleet.monitor
    assert isinstance(monitor, HealthMonitor)
    return monitor


async def row(app: FastAPI, host_id: int) -> WorkerHost:
    async with app.state.dockfleet.db.sessions() as session:
        host = await session.get(WorkerHost, host_id)
    assert host is not None
    return host


async def test_tick_marks_a_host_with_a_missing_socket_unhealthy(
    client: httpx.AsyncClient, app: FastAPI, fake_clock: FakeClock
) -> None:
    host = (await client.post(API, json=host_payload(base_url=MISSING_SOCKET))).json()
    await client.get(f"{API}{host['id']}/health/")  # seen, so only the check can change health

    results = await monitor_of(app).tick()

    result = results[host["id"]]
    assert result is not None
    assert result.ok is False
    assert result.error
    stored = await row(app, host["id"])
    assert stored.healthy is False
    assert stored.last_error
    assert stored.last_check_at == fake_clock.current


async def test_tick_skips_disabled_hosts(client: httpx.AsyncClient, app: FastAPI) -> None:
    body = host_payload(base_url=MISSING_SOCKET, enabled=False)
    host = (await client.post(API, json=body)).json()

    results = await monitor_of(app).tick()

    assert host["id"] not in results
    stored = await row(app, host["id"])
    assert stored.last_check_at is None
    assert stored.last_error is None


async def test_check_soon_does_nothing_when_checks_are_off(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    monitor = monitor_of(app)
    assert monitor.interval == 0
    assert monitor.enabled is False
    host = (await client.post(API, json=host_payload(base_url=MISSING_SOCKET))).json()

    monitor.check_soon(host["id"])

    assert not monitor._pending
    assert (await row(app, host["id"])).last_check_at is None


async def test_host_goes_stale_just_past_the_limit(
    client: httpx.AsyncClient, app: FastAPI, fake_clock: FakeClock
) -> None:
    stale_after = app.state.dockfleet.settings.stale_after_seconds
    host = (await client.post(API, json=host_payload())).json()
    path = f"{API}{host['id']}/"
    assert host["is_stale"] is True  # never seen

    await client.get(f"{path}health/")
    fresh = (await client.get(path)).json()
    fake_clock.advance(stale_after)
    at_limit = (await client.get(path)).json()
    fake_clock.advance(0.5)
    past_limit = (await client.get(path)).json()
    listed = (await client.get(API)).json()["results"][0]
    heartbeat = (await client.get(f"{path}health/")).json()

    assert fresh["is_stale"] is False
    assert at_limit["is_stale"] is False
    assert past_limit["is_stale"] is True
    assert any(r.startswith("stale: last seen") for r in past_limit["unschedulable_reasons"])
    assert listed["is_stale"] is True
    assert heartbeat["is_stale"] is False


async def test_quiet_checks_write_their_times_with_the_flush(
    client: httpx.AsyncClient, app: FastAPI, fake_clock: FakeClock, tmp_path: Path
) -> None:
    """A timer check that finds a healthy host healthy is written with the next flush, in one
    statement for every such host; a check someone asked for is written at once."""
    async with running(tmp_path / "h", hosts=2, latency_ms=0) as hollow:
        ids = []
        for i, path in enumerate(hollow.paths):
            body = host_payload(name=f"quiet{i}", base_url=f"unix://{path}")
            ids.append((await client.post(API, json=body)).json()["id"])
        monitor = monitor_of(app)
        for host_id in ids:
            assert (await monitor.check(host_id)).ok  # type: ignore[union-attr]
        first = fake_clock.current
        fake_clock.advance(10)
        for host_id in ids:
            assert (await monitor.check(host_id, quiet=True)).ok  # type: ignore[union-attr]
            assert (await row(app, host_id)).last_seen_at == first  # not written yet
        assert await monitor.flush() == 2
        for host_id in ids:
            stored = await row(app, host_id)
            assert stored.last_seen_at == stored.last_check_at == fake_clock.current
        assert await monitor.flush() == 0

        fake_clock.advance(10)
        assert (await monitor.check(ids[0])).ok  # type: ignore[union-attr]
        assert (await row(app, ids[0])).last_seen_at == fake_clock.current


async def test_a_host_added_while_the_timer_reads_its_list_is_not_forgotten(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """The timer caches the enabled hosts' ids; a registration that lands while that read is in
    flight must not be hidden behind the cache (its host would go unchecked for seconds)."""
    monitor = monitor_of(app)
    read = monitor._enabled_ids
    reads = 0

    async def racing() -> list[int]:
        nonlocal reads
        reads += 1
        before = await read()
        if reads == 1:  # a host is registered (and the cache invalidated) during the read
            body = host_payload(name="racer", base_url=MISSING_SOCKET, enabled=True)
            assert (await client.post(API, json=body)).status_code == 201
        return before

    monitor._enabled_ids = racing  # type: ignore[method-assign]
    first = await monitor._timer_ids(0.0)
    assert first == set()  # the read before the registration
    ids = await monitor._timer_ids(0.1)  # within the cache's lifetime, yet read again
    assert reads == 2 and len(ids) == 1
    assert await monitor._timer_ids(0.2) == ids and reads == 2  # now that read is cached
