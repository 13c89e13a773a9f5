"""The server process killed (-9) or stopped (SIGTERM) mid-run and started again on the same
database: every run ends as its containers did, exactly one container per attempt, nothing
orphaned — counted from the daemons' /events."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from tests.faults.helpers import FAULT_TIMERS, until
from tests.fleet import Daemon, Fleet
from tests.fleet.observe import EventLog
from tests.integration.runs_helpers import (
    add_directive,
    add_host,
    add_task,
    containers,
    launch,
    remove_ours,
    wait_run,
)
from tests.integration.test_runs_recovery import Server

ENV = {f"DOCKFLEET_{k.upper()}": str(v) for k, v in FAULT_TIMERS.items()}


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
async def test_server_stopped_mid_run_and_started_again(
    fleet: Fleet, tmp_path: Path, sig: signal.Signals
) -> None:
    server = Server(tmp_path, **ENV)
    daemons = [fleet.sock, fleet.tls]
    await server.start()
    instance = server.instance_id()
    label = f"dockfleet.instance={instance}"
    try:
        async with EventLog(daemons, label) as log:
            async with server.client() as http:
                await add_host(http, fleet.sock, "crash-sock", max_concurrency=2)
                await add_host(http, fleet.tls, "crash-tls", max_concurrency=2)
                slow = await add_task(http, "crash-slow", "sleep 4; echo slow-done")
                quick = await add_task(http, "crash-quick", "echo quick-done")
                directive = await add_directive(http, "crash", tasks=[slow, quick])
                runs = [await launch(http, directive) for _ in range(4)]
                ids = [r["id"] for r in runs]
                for rid in ids:
                    await wait_run(http, rid, {"running"}, within=30, poll=0.05)
            assert server.proc is not None
            os.kill(server.proc.pid, sig)
            await asyncio.to_thread(server.proc.wait, 20)
            server.proc = None
            await asyncio.sleep(1)
            await server.start()
            async with server.client() as http:
                finals = [await wait_run(http, rid, within=60) for rid in ids]
                await until(lambda: _clean(daemons, label), 20, "nothing left on the daemons")
    finally:
        server.kill()
        for daemon in daemons:
            await remove_ours(daemon, instance)
    for run in finals:
        assert run["status"] == "succeeded", (run, server.log())
        assert [t["attempt"] for t in run["tasks"]] == [1, 1], run
        assert run["placements"] == 1
    creates = {k: n for d in daemons for k, n in log.creates_per_attempt(d).items()}
    assert len(creates) == 8 and set(creates.values()) == {1}, creates  # 4 runs, 2 tasks each


async def _clean(daemons: list[Daemon], label: str) -> bool:
    for daemon in daemons:
        if await containers(daemon, label):
            return False
    return True
