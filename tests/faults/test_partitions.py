"""A TCP host cut off (link down, or a silent iptables DROP) and healed, and a dead daemon kept
"alive" by heartbeats: runs leave a lost host within the bound, and a host that comes back is
swept before it takes runs — our running containers there never exceed max_concurrency and no
GPU is in two of them, as counted by the daemon itself."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.faults.helpers import fault_settings, host_view, ours, running_app, statuses, until
from tests.fleet import Daemon
from tests.fleet.observe import EventLog, Sampler, gpu_overlaps
from tests.integration.runs_helpers import add_directive, add_host, add_task, launch, remove_ours

SLOTS = 3
# Well past DOCKFLEET_HOST_LOST_AFTER_SECONDS (3 s in these tests); DOCKFLEET_FAULT_CUT_SECONDS=60
# plays the 60 s outage as it was seen.
CUT_SECONDS = float(os.environ.get("DOCKFLEET_FAULT_CUT_SECONDS", "8"))


@contextlib.contextmanager
def cut(daemon: Daemon, how: str) -> Iterator[None]:
    """Cut the host off the network: its link down, or a silent partition (DROP)."""
    with daemon.link_cut() if how == "link" else daemon.partitioned():
        yield


@pytest.mark.parametrize("how", ["link", "silent"])
async def test_a_healed_host_is_swept_before_pinned_runs_start(
    healthy_fault: Daemon, db_url: str, how: str
) -> None:
    fault = healthy_fault
    async with running_app(fault_settings(db_url)) as (app, client):
        label = ours(app)
        host_id = await add_host(client, fault, f"cut-{how}", max_concurrency=SLOTS, gpu_count=4)
        task = await add_task(client, "gpu-long", "sleep 60", requires_gpu=True, max_retries=1)
        directive = await add_directive(client, "cut", tasks=[task])
        try:
            async with EventLog([fault], label) as log, Sampler([fault], label) as sampler:
                first = [await launch(client, directive, target_host_id=host_id) for _ in range(3)]
                ids = [r["id"] for r in first]
                await until(
                    lambda: _all(client, ids, "running"), 30, "first runs running", poll=0.2
                )
                cut_at = time.monotonic()
                with cut(fault, how):
                    later = [
                        (await launch(client, directive, target_host_id=host_id))["id"]
                        for _ in range(3)
                    ]
                    # the first runs leave the lost host (re-queued: one retry left each)
                    await until(lambda: _all(client, ids, "pending"), 20, "runs leave the host")
                    left_after = time.monotonic() - cut_at
                    lost = await host_view(client, host_id)
                    assert lost["healthy"] is False and lost["held_slots"] == SLOTS, lost
                    await asyncio.sleep(max(0.0, CUT_SECONDS - (time.monotonic() - cut_at)))
                healed_at = time.monotonic()
                everyone = ids + later
                _, back_after = await until(
                    lambda: _count(client, everyone, "running", SLOTS), 30, "runs placed again"
                )
                await asyncio.sleep(2)  # watch the host while it runs full again
                for rid in everyone:
                    await client.post(f"/api/runs/{rid}/cancel/")
                await until(lambda: _all(client, everyone, "cancelled"), 30, "all cancelled")
            after = await host_view(client, host_id)
        finally:
            await remove_ours(fault, app.state.dockfleet.instance_id)

    print(
        f"[{how}] runs left the host {left_after:.1f}s after the cut; "
        f"{SLOTS} ran again {back_after:.1f}s after the heal ({time.monotonic() - healed_at:.1f}s)"
    )
    # the daemon's own view: never more of ours running than slots, never a GPU twice
    assert log.peak(fault) <= SLOTS, log.intervals(fault)
    assert sampler[fault].peak <= SLOTS
    assert sampler[fault].overlaps == []
    assert gpu_overlaps(log.intervals(fault), sampler[fault].devices()) == []
    assert all(n == 1 for n in log.creates_per_attempt(fault).values())
    assert after["held_slots"] == 0 and after["healthy"] is True, after


async def test_heartbeats_do_not_keep_a_dead_daemon_alive(
    healthy_fault: Daemon, db_url: str
) -> None:
    fault = healthy_fault
    async with running_app(fault_settings(db_url)) as (app, client):
        host_id = await add_host(client, fault, "heartbeat")
        task = await add_task(client, "hb-long", "sleep 60")
        directive = await add_directive(client, "hb", tasks=[task])
        run = await launch(client, directive, target_host_id=host_id)
        await until(lambda: _all(client, [run["id"]], "running"), 30, "run running")

        async def beat() -> None:
            while True:
                r = await client.get(f"/api/worker-hosts/{host_id}/health/")
                assert r.status_code == 200
                await asyncio.sleep(1)

        beats = asyncio.create_task(beat())
        try:
            killing = asyncio.create_task(asyncio.to_thread(fault.kill))
            (final,), took = await until(
                lambda: _final(client, run["id"]), 20, "run leaves the dead host"
            )
            await killing
            seen = await host_view(client, host_id)
        finally:
            beats.cancel()
            await asyncio.gather(beats, return_exceptions=True)
            fault.start()
            await remove_ours(fault, app.state.dockfleet.instance_id)
    print(f"run failed {took:.1f}s after dockerd was killed, heartbeats every second")
    assert final["status"] == "failed" and final["error"] == "host unreachable", final
    # heartbeats kept the host fresh, but not healthy
    assert seen["is_stale"] is False and seen["healthy"] is False, seen
    # lost after 3 s of failing checks, plus a check and a back-off
    assert took < 3 + 6


async def _all(client: httpx.AsyncClient, ids: list[int], status: str) -> bool:
    return all(s == status for s in await statuses(client, ids))


async def _count(client: httpx.AsyncClient, ids: list[int], status: str, n: int) -> bool:
    return sum(s == status for s in await statuses(client, ids)) >= n


async def _final(client: httpx.AsyncClient, run_id: int) -> list[dict[str, Any]] | None:
    run: dict[str, Any] = (await client.get(f"/api/runs/{run_id}/")).json()
    return [run] if run["status"] in ("succeeded", "failed", "cancelled") else None
