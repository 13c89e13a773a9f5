"""End to end on the real fleet: an every-minute schedule fires on its own at the next minute
boundary (and once more by run-now), each fire's run really runs on a fleet dockerd (seen from
the daemon's events), and a notifier hears of each success from the events, signed.

The app's clock runs a fixed offset ahead of (or behind) the wall clock, so that its next
minute boundary is a few seconds away: the wait no longer depends on where in the minute the
test starts (it took up to 57 s). Everything else about the path is real."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI

from app import clock
from tests.fleet import Fleet
from tests.integration.runs_helpers import (
    add_directive,
    add_host,
    add_task,
    container_events,
    uniq,
    wait_run,
)
from tests.notifiers.receiver import Receiver

LEAD_SECONDS = 4.0  # the app's clock starts this long before a minute boundary


@contextmanager
def minute_boundary_soon() -> Iterator[None]:
    """Shift the app's clock by a fixed offset: its next minute boundary is LEAD_SECONDS away."""
    now = datetime.now(UTC)
    offset = timedelta(seconds=60 - now.second - now.microsecond / 1e6 - LEAD_SECONDS)
    with clock.use(lambda: datetime.now(UTC) + offset):
        yield


async def test_an_every_minute_schedule_runs_on_the_fleet(
    fleet: Fleet, app: FastAPI, client: httpx.AsyncClient
) -> None:
    with minute_boundary_soon():
        await _every_minute(fleet, client)


async def _every_minute(fleet: Fleet, client: httpx.AsyncClient) -> None:
    since = time.time()
    await add_host(client, fleet.sock, uniq("sched-sock"), max_concurrency=2)
    task = await add_task(client, uniq("tick"), "echo scheduled-$MARK; sleep 1")
    directive = await add_directive(client, uniq("sched"), tasks=[task], env={"MARK": "yes"})
    with Receiver() as rx:
        name = uniq("every-minute")
        r = await client.post(
            "/api/schedules/",
            json={"name": name, "directive_id": directive, "cron": "* * * * *"},
        )
        assert r.status_code == 201, r.text
        schedule = r.json()
        r = await client.post(
            "/api/notifiers/",
            json={
                "name": uniq("ops"),
                "kind": "webhook",
                "url": rx.url("/ok"),
                "secret": "fleet-secret",
                "event_types": ["run.succeeded"],
                "schedule_ids": [schedule["id"]],
            },
        )
        assert r.status_code == 201, r.text
        runs: list[dict[str, Any]] = []
        deadline = time.monotonic() + 60  # the next minute boundary, and its run
        while not runs and time.monotonic() < deadline:
            shown = (await client.get(f"/api/schedules/{schedule['id']}/")).json()
            runs = [f for f in shown["fires"] if f["outcome"] == "launched"]
            await asyncio.sleep(0.5)
        assert runs, shown
        assert runs[0]["trigger"] == "cron" and runs[0]["due_at"].endswith(":00Z"), runs
        # A second fire by hand, on the same path, once the first is over (overlap: skip). The
        # cron arithmetic itself, minute after minute and across DST, is tested with a clock
        # the tests move.
        await wait_run(client, runs[0]["run_id"], within=60)
        r = await client.post(f"/api/schedules/{schedule['id']}/run-now/")
        assert r.status_code in (200, 201), r.text
        runs = [runs[0], r.json()["fire"]]
        assert runs[1]["trigger"] == "run_now" and runs[1]["outcome"] == "launched", runs
        for fire in runs:
            run = await wait_run(client, fire["run_id"], within=60)
            assert run["status"] == "succeeded" and run["schedule_id"] == schedule["id"], run
            logs = (await client.get(f"/api/runs/{run['id']}/logs/")).json()
            assert "scheduled-yes" in logs["tasks"][0]["logs"]
            seen = await container_events(
                fleet.sock, since, f"dockfleet.run_id={run['id']}", actions=("start", "die")
            )
            actions = [e["Action"] for e in seen]
            assert "start" in actions and "die" in actions, seen
            died = [e for e in seen if e["Action"] == "die"]
            assert died[-1]["Actor"]["Attributes"]["exitCode"] == "0"
        got = await rx.until(2, "/ok", limit=30)
        told = sorted(g.json()["event"]["run_id"] for g in got)
        assert told[:2] == sorted(f["run_id"] for f in runs[:2])
        for g in got:
            ts = g.headers["x-dockfleet-timestamp"]
            mac = hmac.new(b"fleet-secret", ts.encode() + b"." + g.body, hashlib.sha256)
            assert g.headers["x-dockfleet-signature"] == f"sha256={mac.hexdigest()}"
        await client.patch(f"/api/schedules/{schedule['id']}/", json={"enabled": False})
