"""A run's life on real daemons: cancel, timeout, failure, retries, pull and start failures,
live logs, and the launch API's refusals."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from fastapi import FastAPI

from tests.fleet import Fleet
from tests.integration.runs_helpers import (
    add_directive,
    add_host,
    add_task,
    container_events,
    containers,
    get_run,
    host,
    launch,
    run_logs,
    serve,
    uniq,
    wait_run,
)

MISSING_IMAGE = "127.0.0.1:5999/dockfleet/missing:1"  # a loopback port nobody listens on


def _ours(app: FastAPI) -> str:
    return f"dockfleet.instance={app.state.dockfleet.instance_id}"


async def _creates(fleet_daemon: Any, since: float, app: FastAPI, run_id: int) -> list[str]:
    """Names of the containers created for a run since `since` (from the daemon's events)."""
    events = await container_events(
        fleet_daemon, since, _ours(app), f"dockfleet.run_id={run_id}", actions=("create",)
    )
    return [e["Actor"]["Attributes"]["name"] for e in events]


async def test_cancel_pending_running_and_finished(
    fleet: Fleet, app: FastAPI, client: httpx.AsyncClient
) -> None:
    host_id = await add_host(client, fleet.sock, uniq("sock"), max_concurrency=1)
    long = await add_task(client, uniq("long"), "sleep 60")
    after = await add_task(client, uniq("after"), "echo never")
    directive = await add_directive(client, uniq("dir"), tasks=[long, after])

    running = await launch(client, directive)
    waiting = await launch(client, directive)
    assert running["status"] == "starting" and waiting["status"] == "pending"

    started = time.monotonic()
    r = await client.post(f"/api/runs/{waiting['id']}/cancel/")
    assert r.status_code == 200, r.text
    assert time.monotonic() - started < 1.5
    assert r.json()["status"] == "cancelled"
    assert {t["status"] for t in r.json()["tasks"]} == {"cancelled"}

    await wait_run(client, running["id"], {"running"}, within=20)
    (box,) = await containers(fleet.sock, _ours(app), all=False)
    started = time.monotonic()
    r = await client.post(f"/api/runs/{running['id']}/cancel/")
    took = time.monotonic() - started
    assert r.status_code == 200, r.text
    run = r.json()
    assert run["status"] == "cancelled", run
    assert took < 8, f"cancel took {took:.1f}s with a 2 s grace"
    assert [t["status"] for t in run["tasks"]] == ["cancelled", "skipped"]
    assert run["tasks"][0]["exit_code"] == 137  # sh ignores SIGTERM: killed after the grace
    assert await containers(fleet.sock, _ours(app)) == []  # box is gone
    assert (await host(client, host_id))["active_runs_count"] == 0

    for rid in (running["id"], waiting["id"]):
        r = await client.post(f"/api/runs/{rid}/cancel/")
        assert r.status_code == 409, r.text
        assert "already cancelled" in r.json()["detail"]
    await asyncio.sleep(0.5)  # the freed slot must not revive the cancelled pending run
    assert (await get_run(client, waiting["id"]))["status"] == "cancelled"
    assert (await get_run(client, waiting["id"]))["worker_host_id"] is None
    assert await containers(fleet.sock, _ours(app)) == []
    assert box["Labels"]["dockfleet.run_id"] == str(running["id"])


async def test_timeout_fails_the_task_and_skips_the_rest(
    fleet: Fleet, app: FastAPI, client: httpx.AsyncClient
) -> None:
    await add_host(client, fleet.sock, uniq("sock"))
    slow = await add_task(client, uniq("slow"), "echo begun; sleep 30", timeout_seconds=2)
    after = await add_task(client, uniq("after"), "echo never")
    directive = await add_directive(client, uniq("dir"))

    started = time.monotonic()
    run = await launch(client, directive, tasks=[slow, after])
    run = await wait_run(client, run["id"], within=25)
    took = time.monotonic() - started
    assert run["status"] == "failed", run
    assert "timed out" in run["error"]
    first, second = run["tasks"]
    assert first["status"] == "failed" and "timed out" in first["error"]
    assert second["status"] == "skipped" and second["attempt"] == 0
    assert 2 <= took < 12, took
    logs = (await run_logs(client, run["id"]))["tasks"]
    assert logs[0]["logs"] == "begun\n" and logs[1]["logs"] == ""
    assert await containers(fleet.sock, _ours(app)) == []


async def test_failing_exit_code_fails_the_run_once(
    fleet: Fleet, app: FastAPI, client: httpx.AsyncClient
) -> None:
    await add_host(client, fleet.sock, uniq("sock"))
    bad = await add_task(client, uniq("bad"), "echo to-stdout; echo to-stderr >&2; exit 3")
    after = await add_task(client, uniq("after"), "echo never")
    directive = await add_directive(client, uniq("dir"), tasks=[bad, after])

    since = time.time() - 1
    run = await wait_run(client, (await launch(client, directive))["id"], within=20)
    assert run["status"] == "failed", run
    assert "exited with code 3" in run["error"]
    first, second = run["tasks"]
    assert (first["status"], first["exit_code"], first["attempt"]) == ("failed", 3, 1)
    assert second["status"] == "skipped"
    logs = (await run_logs(client, run["id"]))["tasks"][0]
    assert logs["exit_code"] == 3
    # stdout and stderr are separate pipes: both are kept, their interleaving is Docker's
    assert sorted(logs["logs"].splitlines()) == ["to-stderr", "to-stdout"], logs
    # max_retries 0: exactly one container was ever created, and it is gone
    assert len(await _creates(fleet.sock, since, app, run["id"])) == 1
    assert await containers(fleet.sock, _ours(app)) == []


async def test_retries_then_fail_and_retry_then_succeed(
    fleet: Fleet, app: FastAPI, client: httpx.AsyncClient
) -> None:
    await add_host(client, fleet.sock, uniq("sock"))
    always = await add_task(
        client, uniq("always"), 'echo "attempt $DOCKFLEET_ATTEMPT"; exit 1', max_retries=1
    )
    second_time = await add_task(
        client,
        uniq("flaky"),
        'echo "attempt $DOCKFLEET_ATTEMPT"; [ "$DOCKFLEET_ATTEMPT" = 2 ]',
        max_retries=3,
    )
    directive = await add_directive(client, uniq("dir"))

    since = time.time() - 1
    failing = await launch(client, directive, tasks=[always])
    flaky = await launch(client, directive, tasks=[second_time])
    failing = await wait_run(client, failing["id"], within=30)
    flaky = await wait_run(client, flaky["id"], within=30)

    assert failing["status"] == "failed", failing
    (task,) = failing["tasks"]
    assert (task["status"], task["attempt"], task["exit_code"]) == ("failed", 2, 1)
    assert (await run_logs(client, failing["id"]))["tasks"][0]["logs"] == "attempt 2\n"
    names = await _creates(fleet.sock, since, app, failing["id"])
    assert sorted(n[-3:] for n in names) == ["-a1", "-a2"], names

    assert flaky["status"] == "succeeded", flaky
    assert (flaky["tasks"][0]["attempt"], flaky["tasks"][0]["exit_code"]) == (2, 0)
    assert len(await _creates(fleet.sock, since, app, flaky["id"])) == 2
    assert await containers(fleet.sock, _ours(app)) == []


async def test_missing_image_fails_with_the_pull_error(
    fleet: Fleet, app: FastAPI, client: httpx.AsyncClient
) -> None:
    await add_host(client, fleet.sock, uniq("sock"))
    task = await add_task(client, uniq("ghost"), "true", image=MISSING_IMAGE)
    directive = await add_directive(client, uniq("dir"))
    run = await wait_run(client, (await launch(client, directive, tasks=[task]))["id"], within=30)
    assert run["status"] == "failed", run
    (t,) = run["tasks"]
    assert t["status"] == "failed" and t["exit_code"] is None
    assert MISSING_IMAGE in t["error"] and "could not be pulled" in t["error"], t["error"]
    assert "connection refused" in t["error"], t["error"]
    assert t["error"] in run["error"]
    assert await containers(fleet.sock, _ours(app)) == []


async def test_gpu_start_failure_reports_dockers_reason(
    fleet: Fleet, app: FastAPI, client: httpx.AsyncClient
) -> None:
    gpu_host = await add_host(client, fleet.gpu, uniq("gpu"))
    task = await add_task(client, uniq("gpu"), "env", requires_gpu=True, gpu_count=1)
    directive = await add_directive(client, uniq("dir"))
    fleet.gpu.set_gpu_hook_failing(True)
    try:
        run = await launch(client, directive, tasks=[task])
        run = await wait_run(client, run["id"], within=30)
    finally:
        fleet.gpu.set_gpu_hook_failing(False)
    assert run["status"] == "failed", run
    assert run["started_at"] is None  # it never ran
    (t,) = run["tasks"]
    assert t["status"] == "failed"
    assert "did not start" in t["error"], t["error"]
    assert "nvml error: driver not loaded" in t["error"], t["error"]
    assert await containers(fleet.gpu, _ours(app)) == []  # the created container was removed
    assert (await host(client, gpu_host))["gpus_in_use"] == []


async def test_follow_streams_while_running_and_ends_with_the_run(
    fleet: Fleet, app: FastAPI, client: httpx.AsyncClient
) -> None:
    await add_host(client, fleet.sock, uniq("sock"))
    talk = await add_task(client, uniq("talk"), "echo one; sleep 1.5; echo two; sleep 1")
    last = await add_task(client, uniq("last"), "echo three")
    directive = await add_directive(client, uniq("dir"), tasks=[talk, last])
    run = await launch(client, directive)
    rid = run["id"]

    text, when_one, status_at_one = "", None, None
    async with serve(app) as http, asyncio.timeout(30):
        async with http.stream("GET", f"/api/runs/{rid}/logs/", params={"follow": "true"}) as s:
            assert s.status_code == 200
            assert s.headers["content-type"].startswith("text/plain")
            async for chunk in s.aiter_text():
                text += chunk
                if when_one is None and "one\n" in text:
                    when_one = time.monotonic()
                    status_at_one = (await get_run(client, rid))["status"]
        ended = time.monotonic()
        final = await get_run(client, rid)
        # a finished run: the stored logs, and the stream ends at once
        again = (await http.get(f"/api/runs/{rid}/logs/", params={"follow": "true"})).text

    # output arrived while the run ran ("starting" may lag the container's start by a moment)
    assert status_at_one in ("starting", "running")
    # ... well before it ended: 2.5 s of the script were still to come (a busy machine may
    # deliver "one" a second late; seen 1.3 s before the end with two test workers)
    assert when_one is not None and ended - when_one > 0.5
    assert final["status"] == "succeeded"
    header = "=== {} (task {}, attempt 1) ===\n"
    expected = (
        header.format(talk, 1)
        + "one\ntwo\n"
        + header.format(last, 2)
        + "three\n"
        + f"=== run {rid} succeeded ===\n"
    )
    assert text == expected
    assert again == expected


async def test_launch_refusals_never_500_and_leave_no_run(
    fleet: Fleet, client: httpx.AsyncClient
) -> None:
    host_id = await add_host(client, fleet.sock, uniq("sock"))
    good = await add_task(client, uniq("good"), "true")
    off = await add_task(client, uniq("off"), "true", enabled=False)
    directive = await add_directive(client, uniq("dir"))
    url = "/api/runs/launch/"

    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"directive_id": 999_999}, 404, "directive 999999 not found"),
        ({"directive_id": directive, "target_host_id": 999_999}, 404, "host 999999 not found"),
        ({"directive_id": directive, "tasks": ["nope-x", good, "nope-y"]}, 422, "nope-x, nope-y"),
        ({"directive_id": directive, "tasks": [good, off]}, 422, f"disabled tasks: {off}"),
        ({"directive_id": directive, "tasks": []}, 422, "at least one task"),
        ({"directive_id": "1"}, 422, "directive_id"),
        ({"directive_id": 0}, 422, "directive_id"),
        ({"directive_id": directive, "bogus": 1}, 422, "bogus"),
        ({"directive_id": directive, "tasks": good}, 422, "tasks"),
        ({}, 422, "directive_id"),
    ]
    for body, code, needle in cases:
        r = await client.post(url, json=body)
        assert r.status_code == code, (body, r.text)
        assert needle in r.text, (body, r.text)
        if code == 422 and "tasks" in body:
            assert any(e["loc"][-1] == "tasks" for e in r.json()["detail"]), r.text
    r = await client.post(url, content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text

    for method, path in [
        ("GET", "/api/runs/424242/"),
        ("POST", "/api/runs/424242/cancel/"),
        ("GET", "/api/runs/424242/logs/"),
        ("GET", "/api/runs/424242/logs/?follow=true"),
    ]:
        r = await client.request(method, path)
        assert r.status_code == 404, (path, r.text)
        assert r.json()["detail"] == "run 424242 not found"
    r = await client.get("/api/runs/", params={"status": "running,bogus"})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["query", "status"]
    assert "bogus" in r.json()["detail"][0]["msg"]

    assert (await client.get("/api/runs/")).json()["count"] == 0  # nothing was left behind
    assert (await host(client, host_id))["active_runs_count"] == 0


async def test_cancelling_everything_at_once_frees_every_slot(
    fleet: Fleet, app: FastAPI, client: httpx.AsyncClient
) -> None:
    host_id = await add_host(client, fleet.sock, uniq("sock"), max_concurrency=2)
    long = await add_task(client, uniq("long"), "sleep 60")
    directive = await add_directive(client, uniq("dir"), tasks=[long])
    since = time.time() - 1
    runs = [await launch(client, directive) for _ in range(6)]
    assert [r["status"] for r in runs].count("starting") == 2
    for run in runs[:2]:
        await wait_run(client, run["id"], {"running"}, within=20)

    async with asyncio.timeout(30):
        # cancel the pending ones first and the running ones right after, all concurrently:
        # each freed slot must not start a run that is being cancelled
        answers = await asyncio.gather(
            *(client.post(f"/api/runs/{r['id']}/cancel/") for r in reversed(runs))
        )
    assert [a.status_code for a in answers] == [200] * 6, [a.text for a in answers]
    assert {a.json()["status"] for a in answers} == {"cancelled"}
    await asyncio.sleep(0.5)
    finals = [await get_run(client, r["id"]) for r in runs]
    assert [r["status"] for r in finals] == ["cancelled"] * 6
    assert [r["placements"] for r in finals] == [1, 1, 0, 0, 0, 0]
    assert (await host(client, host_id))["active_runs_count"] == 0
    assert await containers(fleet.sock, _ours(app)) == []
    creates = await container_events(fleet.sock, since, _ours(app), actions=("create",))
    assert len(creates) == 2, creates  # only the two that were running ever had a container
