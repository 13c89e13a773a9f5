"""Schedules through the API with a clock the test moves: validation, fires, overlap, catch-up,
refusals recorded, run-now, DST, enable/disable, and the loop waking at the due time."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from app import clock
from app.schedules import store
from app.schedules.firing import Firer
from tests.builders import assert_field_error
from tests.schedules.conftest import Bench

# The fake clock starts at 2026-01-10 12:00 UTC (a Saturday).


async def test_bad_input_is_a_422_naming_the_field(bench: Bench) -> None:
    base: dict[str, Any] = {"name": "bad", "directive_id": bench.directive_id, "cron": "@daily"}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"cron": "61 * * * *"}, "cron"),
        ({"cron": "@reboot"}, "cron"),
        ({"timezone": "Europe/Atlantis"}, "timezone"),
        ({"directive_id": 999999}, "directive_id"),
        ({"target_host_id": 999999}, "target_host_id"),
        ({"tasks": ["no_such_task"]}, "tasks"),
        ({"tasks": []}, "tasks"),
        ({"overlap": "sometimes"}, "overlap"),
        ({"catch_up": "all"}, "catch_up"),
        ({"enabled": "yes"}, "enabled"),
    ]
    for change, field in cases:
        r = await bench.client.post("/api/schedules/", json={**base, **change})
        assert_field_error(r, field)
    r = await bench.client.patch("/api/schedules/999/", json={"enabled": False})
    assert r.status_code == 404
    await bench.schedule(name="dup", cron="@daily")
    r = await bench.client.post("/api/schedules/", json={**base, "name": "dup"})
    assert r.status_code == 409, r.text
    r = await bench.client.patch("/api/schedules/dup/", json={"cron": "* * * *"})
    assert_field_error(r, "cron")


async def test_a_fire_launches_a_run_as_launch_does_once(bench: Bench) -> None:
    s = await bench.schedule(cron="*/10 * * * *")
    assert s["next_fire_at"] == "2026-01-10T12:10:00Z"
    assert s["overlap"] == "skip" and s["catch_up"] == "none" and s["timezone"] == "UTC"
    await bench.tick_at("2026-01-10T12:09:59+00:00")
    assert await bench.runs_of(s["id"]) == []
    await bench.tick_at("2026-01-10T12:10:01+00:00")
    await bench.firer.tick()  # a second pass at the same time claims nothing
    runs = await bench.runs_of(s["id"])
    assert len(runs) == 1 and runs[0]["status"] == "pending"
    assert [t["task_name"] for t in runs[0]["tasks"]] == ["log_triage"]
    shown = await bench.show(s["id"])
    assert shown["next_fire_at"] == "2026-01-10T12:20:00Z"
    [fire] = shown["fires"]
    assert fire["outcome"] == "launched" and fire["run_id"] == runs[0]["id"]
    assert fire["due_at"] == "2026-01-10T12:10:00Z" and fire["trigger"] == "cron"
    assert fire["run_status"] == "pending"


async def test_overlap_skip_allow_and_queue(bench: Bench) -> None:
    skip = await bench.schedule(name="skip", cron="*/10 * * * *")
    allow = await bench.schedule(name="allow", cron="*/10 * * * *", overlap="allow")
    queue = await bench.schedule(name="queue", cron="*/10 * * * *", overlap="queue")
    await bench.tick_at("2026-01-10T12:10:00+00:00")
    await bench.tick_at("2026-01-10T12:20:00+00:00")
    await bench.tick_at("2026-01-10T12:30:00+00:00")
    assert len(await bench.runs_of(skip["id"])) == 1
    assert len(await bench.runs_of(allow["id"])) == 3
    [first] = await bench.runs_of(queue["id"])
    outcomes = [f["outcome"] for f in (await bench.show("skip"))["fires"]]
    assert outcomes == ["skipped", "skipped", "launched"]  # newest first
    fires = (await bench.show("queue"))["fires"]
    assert [f["outcome"] for f in fires] == ["skipped", "queued", "launched"]
    assert fires[0]["detail"] == "a fire is already queued"
    # The queued fire waits for the first run, then launches on the next pass.
    await bench.firer.tick()
    assert len(await bench.runs_of(queue["id"])) == 1
    await bench.finish(first["id"], "failed")
    await bench.firer.tick()
    runs = await bench.runs_of(queue["id"])
    assert len(runs) == 2
    fires = (await bench.show("queue"))["fires"]
    assert fires[1]["outcome"] == "launched" and fires[1]["run_id"] == runs[0]["id"]
    assert fires[1]["due_at"] == "2026-01-10T12:20:00Z"


async def test_catch_up_none_and_latest_after_downtime(bench: Bench) -> None:
    none = await bench.schedule(name="none", cron="0 * * * *")
    latest = await bench.schedule(name="latest", cron="0 * * * *", catch_up="latest")
    # dockfleet "was down" from 12:00 to 17:30: five hourly times passed.
    await bench.tick_at("2026-01-10T17:30:00+00:00")
    assert await bench.runs_of(none["id"]) == []
    [missed] = (await bench.show("none"))["fires"]
    r = await bench.client.get("/api/events/recent/", params={"types": "schedule.missed"})
    assert [e["data"]["schedule"] for e in r.json()["results"]] == ["none"]
    assert missed["outcome"] == "missed" and missed["due_at"] == "2026-01-10T13:00:00Z"
    assert (await bench.show("none"))["next_fire_at"] == "2026-01-10T18:00:00Z"
    [run] = await bench.runs_of(latest["id"])
    [fire] = (await bench.show("latest"))["fires"]
    assert fire["trigger"] == "catch_up" and fire["due_at"] == "2026-01-10T17:00:00Z"
    assert fire["run_id"] == run["id"]
    assert (await bench.show("latest"))["next_fire_at"] == "2026-01-10T18:00:00Z"
    # Within the grace a fire is on time, not missed.
    await bench.finish(run["id"])
    await bench.tick_at("2026-01-10T18:00:45+00:00")
    assert (await bench.show("none"))["fires"][0]["outcome"] == "launched"


async def test_refusals_are_recorded_not_raised(bench: Bench) -> None:
    anywhere = await bench.schedule(name="anywhere", cron="*/5 * * * *", overlap="allow")
    pinned = await bench.schedule(
        name="pinned", cron="*/5 * * * *", target_host_id=bench.host_id, overlap="allow"
    )
    await bench.set_host(healthy=False, last_error="connection refused")
    await bench.tick_at("2026-01-10T12:05:00+00:00")
    [f] = (await bench.show("anywhere"))["fires"]
    assert f["outcome"] == "failed" and f["status_code"] == 503 and f["run_id"] is None
    assert "No available hosts" in f["detail"] and "connection refused" in f["detail"]
    [f] = (await bench.show("pinned"))["fires"]
    assert f["outcome"] == "failed" and f["status_code"] == 409
    assert "cannot take this run" in f["detail"]
    # The claim moved on all the same: the schedule is not stuck on the refused time.
    assert (await bench.show("anywhere"))["next_fire_at"] == "2026-01-10T12:10:00Z"
    # run-now answers as POST /runs/launch/ would, and records the refusal too.
    r = await bench.client.post("/api/schedules/anywhere/run-now/")
    assert r.status_code == 503 and r.json()["code"] == "no_available_hosts", r.text
    r = await bench.client.post("/api/schedules/pinned/run-now/")
    assert r.status_code == 409 and r.json()["code"] == "target_ineligible", r.text
    fires = (await bench.show("anywhere"))["fires"]
    assert [f["trigger"] for f in fires] == ["run_now", "cron"]
    # A deleted directive is a recorded 404.
    await bench.set_host(healthy=True)
    assert (await bench.client.delete(f"/api/directives/{bench.directive_id}/")).status_code == 204
    await bench.tick_at("2026-01-10T12:10:00+00:00")
    f = (await bench.show("anywhere"))["fires"][0]
    assert f["status_code"] == 404 and "directive" in f["detail"]
    assert await bench.runs_of(anywhere["id"]) == [] and await bench.runs_of(pinned["id"]) == []
    # Each refusal is an event too (what a notifier hears about).
    r = await bench.client.get("/api/events/recent/", params={"types": "schedule.*"})
    refused = [e for e in r.json()["results"] if e["data"]["schedule"] == "anywhere"]
    assert [e["data"]["status_code"] for e in refused] == [503, 503, 404]
    assert {e["type"] for e in refused} == {"schedule.failed"}


async def test_run_now_fires_once_and_leaves_the_cron_alone(bench: Bench) -> None:
    s = await bench.schedule(name="nightly", cron="30 2 * * *", enabled=False)
    assert s["next_fire_at"] is None
    r = await bench.client.post("/api/schedules/nightly/run-now/")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["fire"]["trigger"] == "run_now" and body["fire"]["outcome"] == "launched"
    r = await bench.client.get(f"/api/runs/{body['run_id']}/")
    assert r.json()["schedule_id"] == s["id"]
    assert (await bench.show("nightly"))["next_fire_at"] is None
    assert (await bench.client.post("/api/schedules/nope/run-now/")).status_code == 404


async def test_disable_enable_and_changes_recompute_without_replay(bench: Bench) -> None:
    s = await bench.schedule(name="hourly", cron="@hourly")
    r = await bench.client.patch("/api/schedules/hourly/", json={"enabled": False})
    assert r.json()["next_fire_at"] is None
    await bench.tick_at("2026-01-10T15:10:00+00:00")
    r = await bench.client.patch("/api/schedules/hourly/", json={"enabled": True})
    assert r.json()["next_fire_at"] == "2026-01-10T16:00:00Z"
    await bench.firer.tick()
    assert await bench.runs_of(s["id"]) == []  # 13:00-15:00 were not replayed
    r = await bench.client.patch(
        "/api/schedules/hourly/", json={"cron": "30 2 * * *", "timezone": "Europe/Berlin"}
    )
    assert r.json()["next_fire_at"] == "2026-01-11T01:30:00Z"
    r = await bench.client.get("/api/schedules/", params={"enabled": "true"})
    assert [x["name"] for x in r.json()["results"]] == ["hourly"]
    assert (await bench.client.delete("/api/schedules/hourly/")).status_code == 204
    assert (await bench.client.get("/api/schedules/hourly/")).status_code == 404


async def test_berlin_dst_fires_in_the_firing_loop(bench: Bench) -> None:
    bench.clock.current = datetime(2026, 3, 28, 12, tzinfo=UTC)
    s = await bench.schedule(
        name="berlin", cron="30 2 * * *", timezone="Europe/Berlin", overlap="allow"
    )
    assert s["next_fire_at"] == "2026-03-29T01:00:00Z"  # 03:00 CEST: 02:30 does not exist
    await bench.tick_at("2026-03-29T01:00:00+00:00")
    assert (await bench.show("berlin"))["next_fire_at"] == "2026-03-30T00:30:00Z"  # 02:30 CEST
    # Autumn: 02:30 happens twice on 2026-10-25; one fire.
    r = await bench.client.patch("/api/schedules/berlin/", json={"enabled": False})
    bench.clock.current = datetime(2026, 10, 24, 12, tzinfo=UTC)
    r = await bench.client.patch("/api/schedules/berlin/", json={"enabled": True})
    assert r.json()["next_fire_at"] == "2026-10-25T00:30:00Z"  # 02:30 CEST
    await bench.tick_at("2026-10-25T00:30:00+00:00")
    await bench.tick_at("2026-10-25T01:30:00+00:00")  # 02:30 CET: no second fire
    assert (await bench.show("berlin"))["next_fire_at"] == "2026-10-26T01:30:00Z"
    fires = (await bench.show("berlin"))["fires"]
    assert [f["due_at"] for f in fires] == ["2026-10-25T00:30:00Z", "2026-03-29T01:00:00Z"]
    assert len(await bench.runs_of(s["id"])) == 2


async def test_the_claim_is_a_guarded_write(bench: Bench) -> None:
    s = await bench.schedule(name="guard", cron="*/10 * * * *")
    due = datetime(2026, 1, 10, 12, 10, tzinfo=UTC)
    following = due + timedelta(minutes=10)
    async with bench.state.db.session_scope() as one, bench.state.db.session_scope() as two:
        assert await store.claim(one, s["id"], due, following) is True
        await one.commit()
        assert await store.claim(two, s["id"], due, following) is False  # already moved


async def _until_run(bench: Bench, schedule_id: int) -> None:
    runs: list[Any] = []
    while not runs:
        await asyncio.sleep(0.1)
        runs = await bench.runs_of(schedule_id)


async def test_the_loop_wakes_at_the_due_time(bench: Bench) -> None:
    # A clock that runs in real time from 12:09:58: the fire is due in two seconds; the poll
    # (30 s) is not what wakes the loop.
    start, origin = datetime(2026, 1, 10, 12, 9, 58, tzinfo=UTC), time.monotonic()
    s = await bench.schedule(name="soon", cron="*/10 * * * *")
    firer = Firer(bench.state)
    with clock.use(lambda: start + timedelta(seconds=time.monotonic() - origin)):
        firer.start()
        try:
            async with asyncio.timeout(10):
                await _until_run(bench, s["id"])
        finally:
            await firer.stop()
    waited = time.monotonic() - origin
    assert 1.5 < waited < 5, waited
