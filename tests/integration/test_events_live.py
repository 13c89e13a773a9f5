"""The event stream end to end: real server processes, a real fleet dockerd, the CLI.

A run that really runs on a fleet daemon streams run.pending → starting → running → succeeded;
two processes on one database stream each other's events; JSON log lines parse, carry run_id
and host_id, and never a secret; the CLI's --wait/--follow and status --watch ride the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.events.sse import Stream, open_stream
from tests.fleet import Fleet
from tests.integration.runs_helpers import (
    add_directive,
    add_host,
    add_task,
    container_events,
    launch,
    uniq,
    wait_run,
)
from tests.integration.test_runs_multiprocess import replicas
from tests.integration.test_runs_recovery import Server
from tests.live_server import ROOT

POSTGRESQL = pytest.param("postgresql", marks=pytest.mark.postgresql)
RUN_FINAL = ("run.succeeded", "run.failed", "run.cancelled")


async def _run_events(stream: Stream, run_id: int, within: float = 60) -> list[dict[str, Any]]:
    """This run's messages until its final one (others are skipped)."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + within
    while not got or got[-1]["event"] not in RUN_FINAL:
        message = await stream.next(max(0.1, deadline - time.monotonic()))
        if message["data"].get("run_id") == run_id:
            got.append(message)
    return got


class TokenServer(Server):
    """A Server whose API (and full /healthz) needs its token."""

    def __init__(self, workdir: Path, token: str, **env: str) -> None:
        super().__init__(workdir, cli=False, prefix=(), DOCKFLEET_API_TOKEN=token, **env)
        self.token = token

    async def start(self) -> None:
        self.proc = await asyncio.to_thread(self._spawn)
        deadline = time.monotonic() + 30
        headers = {"Authorization": f"Bearer {self.token}"}
        async with httpx.AsyncClient(base_url=self.url, timeout=2, headers=headers) as http:
            while True:
                assert self.proc.poll() is None, f"server exited:\n{self.log()}"
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get("/healthz")).status_code == 200:
                        return
                assert time.monotonic() < deadline, f"server not ready:\n{self.log()}"
                await asyncio.sleep(0.1)


@asynccontextmanager
async def _started(*servers: Server) -> AsyncIterator[None]:
    try:
        for server in servers:
            await server.start()
        yield
    finally:
        for server in servers:
            server.kill()


async def test_a_run_on_the_fleet_streams_its_lifecycle_and_logs_json_lines(
    fleet: Fleet, tmp_path: Path, db_url: str
) -> None:
    token = secrets.token_urlsafe(24)
    server = TokenServer(
        tmp_path,
        token,
        DOCKFLEET_LOG_FORMAT="json",
        DOCKFLEET_LOG_LEVEL="info",
        DOCKFLEET_DATABASE_URL=db_url,
    )
    auth = {"Authorization": f"Bearer {token}"}
    async with (
        _started(server),
        httpx.AsyncClient(base_url=server.url, timeout=30, headers=auth) as http,
    ):
        assert (
            await http.get("/api/events/", headers={"Authorization": "Bearer no"})
        ).status_code == 401
        async with open_stream(http) as stream:
            host_id = await add_host(http, fleet.sock, uniq("ev-sock"))
            healthy = await stream.take(2)
            assert [m["event"] for m in healthy] == ["host.created", "host.healthy"]
            ok = await add_task(http, uniq("ev-ok"), "sleep 1; echo fine")
            bad = await add_task(http, uniq("ev-bad"), "echo failing; exit 3")
            name = f"nightly-{token}"  # a secret where a log line would show it
            directive = await add_directive(http, name, tasks=[ok])
            since = time.time() - 1
            run = await launch(http, directive)
            lifecycle = await _run_events(stream, run["id"])
            failing = await launch(http, directive, tasks=[bad])
            failed = await _run_events(stream, failing["id"])
        assert [m["event"] for m in lifecycle] == [
            "run.pending",
            "run.starting",
            "run.running",
            "run.succeeded",
        ]
        ids = [int(m["id"]) for m in lifecycle]
        assert ids == sorted(ids)
        assert all(m["data"]["host_id"] == host_id for m in lifecycle[1:])
        assert lifecycle[0]["data"]["data"]["directive"] == name
        assert lifecycle[-1]["data"]["data"]["directive"] == name
        assert [m["event"] for m in failed][-1] == "run.failed"
        assert "exit" in failed[-1]["data"]["data"]["error"]
        started = await container_events(
            fleet.sock, since, f"dockfleet.run_id={run['id']}", actions=("start",)
        )
        assert len(started) == 1  # it really ran on the daemon, once
    lines = [line for line in server.log_path.read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    assert token not in server.log_path.read_text()
    state = [r for r in records if r.get("event", "").startswith("run.")]
    mine = [r for r in state if r.get("run_id") == run["id"]]
    assert [r["event"] for r in mine] == [m["event"] for m in lifecycle]  # one line per change
    assert all(r["host_id"] == host_id for r in mine[1:])
    assert "nightly-***" in mine[0]["message"]
    flips = [r for r in records if r.get("event") == "host.healthy"]
    assert [r["host_id"] for r in flips] == [host_id]


@pytest.mark.parametrize("db_backend", ["sqlite", POSTGRESQL], indirect=True)
async def test_two_processes_on_one_database_stream_each_others_events(
    fleet: Fleet, tmp_path: Path, db_url: str
) -> None:
    one, two = replicas(tmp_path, db_url, 2)
    async with _started(one, two), one.client() as a, two.client() as b:
        last = await _stream_across(fleet, a, b)
        await a.post(f"/api/worker-hosts/{last[1]}/drain/")  # made on one, resumed on the other
        await a.post(f"/api/worker-hosts/{last[1]}/undrain/")
        async with open_stream(b, headers={"Last-Event-ID": last[0]}) as stream:
            assert [m["event"] for m in await stream.take(2)] == ["host.draining", "host.undrained"]


async def _stream_across(
    fleet: Fleet, a: httpx.AsyncClient, b: httpx.AsyncClient
) -> tuple[str, int]:
    """Act on `a`, watch on `b`; returns (the last id seen, the host's id)."""
    async with open_stream(b) as stream:
        started = time.monotonic()
        host_id = await add_host(a, fleet.sock, uniq("ev-mp"))
        created = await stream.next(5)
        latency = time.monotonic() - started
        assert created["event"] == "host.created" and created["data"]["host_id"] == host_id
        assert latency < 2.0, f"another process's event took {latency:.2f}s"
        assert (await stream.next(5))["event"] == "host.healthy"
        task = await add_task(a, uniq("ev-mp"), "echo across")
        directive = await add_directive(a, uniq("ev-mp"), tasks=[task])
        run = await launch(a, directive)
        events = await _run_events(stream, run["id"])
        assert [m["event"] for m in events] == [
            "run.pending",
            "run.starting",
            "run.running",
            "run.succeeded",
        ]
        return events[-1]["id"], host_id


async def _cli(url: str, *args: str, within: float = 90) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKFLEET_")}
    env.update(DOCKFLEET_URL=url, NO_COLOR="1")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), within)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli_wait_follow_and_status_watch_ride_the_stream(
    fleet: Fleet, tmp_path: Path, db_url: str
) -> None:
    server = Server(tmp_path, DOCKFLEET_DATABASE_URL=db_url)
    async with _started(server), server.client() as http:
        host_id = await add_host(http, fleet.sock, uniq("ev-cli"))
        ok = await add_task(http, uniq("ev-cli-ok"), "sleep 3; echo cli-done")
        bad = await add_task(http, uniq("ev-cli-bad"), "exit 4")
        directive = str(await add_directive(http, uniq("ev-cli"), tasks=[ok]))

        began = time.monotonic()
        code, out, err = await _cli(
            server.url, "runs", "launch", "-d", directive, "--wait", "--json"
        )
        took = time.monotonic() - began
        assert code == 0, (out, err)
        run = json.loads(out)
        assert run["status"] == "succeeded"
        assert took < 12, f"--wait took {took:.1f}s for a 3 s task"
        log = server.log()
        assert re.search(rf"GET /api/events/\?types=run\.(\*|%2A)&run_id={run['id']} ", log), log
        reads = log.count(f"GET /api/runs/{run['id']}/ HTTP")
        assert reads <= 5, f"--wait read the run {reads} times (polling?)"

        code, out, err = await _cli(server.url, "runs", "launch", "-d", directive, "--follow")
        assert code == 0, (out, err)
        assert "cli-done" in out and "succeeded" in out

        code, out, err = await _cli(
            server.url, "runs", "launch", "-d", directive, "-t", bad, "--wait"
        )
        assert code == 1 and "failed" in err, (out, err)

        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKFLEET_")}
        env.update(DOCKFLEET_URL=server.url)
        watch = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "app",
            "status",
            "--watch",
            "--json",
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert watch.stdout is not None
        try:
            first = json.loads(await asyncio.wait_for(watch.stdout.readline(), 20))
            mine = [h for h in first["hosts"] if h["id"] == host_id]
            assert mine and mine[0]["draining"] is False
            await http.post(f"/api/worker-hosts/{host_id}/drain/")
            redrawn = json.loads(await asyncio.wait_for(watch.stdout.readline(), 10))
            assert [h["draining"] for h in redrawn["hosts"] if h["id"] == host_id] == [True]
            await http.post(f"/api/worker-hosts/{host_id}/undrain/")
        finally:
            watch.send_signal(signal.SIGINT)
            try:  # read what is left, so a full pipe cannot hold the watcher up
                _, rest = await asyncio.wait_for(watch.communicate(), 10)
            except TimeoutError:
                watch.kill()
                _, rest = await watch.communicate()
                raise AssertionError(f"status --watch went on after Ctrl-C: {rest!r}") from None
        assert watch.returncode == 0, rest

        events_cli = asyncio.ensure_future(
            _cli(server.url, "events", "--type", "host.*", "--count", "2", "--json", within=20)
        )
        await asyncio.sleep(1.5)  # subscribed
        await http.post(f"/api/worker-hosts/{host_id}/drain/")
        await http.post(f"/api/worker-hosts/{host_id}/undrain/")
        code, out, err = await events_cli
        assert code == 0, err
        assert [json.loads(line)["type"] for line in out.splitlines()] == [
            "host.draining",
            "host.undrained",
        ]
        await wait_run(http, run["id"])
