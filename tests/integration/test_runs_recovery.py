"""A real server process killed with -9 mid-run and restarted on the same database.

(Hosts lost mid-run, and the other faults, are in tests/faults.)

The server runs as `uvicorn app.main:app_factory --factory` with its own SQLite file; the test
talks to it over 127.0.0.1 and checks the daemons directly.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import aiodocker
import httpx

from tests.fleet import Daemon, Fleet
from tests.fleet.aio import docker_for
from tests.integration.runs_helpers import (
    IMAGE,
    add_directive,
    add_host,
    add_task,
    container_events,
    containers,
    free_port,
    launch,
    remove_ours,
    run_logs,
    wait_run,
)


class Server:
    """One `dockfleet` server process on a free loopback port.

    `cli=True` runs `dockfleet serve` (which migrates first) instead of uvicorn's factory;
    `prefix` wraps the command (e.g. `unshare --pid --fork --kill-child`: a replica that looks
    like it runs on another machine)."""

    def __init__(
        self, workdir: Path, *, cli: bool = False, prefix: Sequence[str] = (), **env: str
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.cli = cli
        self.prefix = list(prefix)
        self.db_path = workdir / "db.sqlite"
        self.log_path = workdir / "server.log"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.instance = ""
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("DOCKFLEET_", "DOCKER_"))},
            "DOCKFLEET_DATABASE_URL": f"sqlite+aiosqlite:///{self.db_path}",
            "DOCKFLEET_HEALTH_INTERVAL_SECONDS": "0",
            "DOCKFLEET_RECONCILE_INTERVAL_SECONDS": "0",
            "DOCKFLEET_ALLOWED_NETWORKS": "loopback,10.0.0.0/8",
            "DOCKFLEET_SECRETS_DIR": "/tmp",
            "DOCKFLEET_STOP_TIMEOUT_SECONDS": "2",
            "DOCKFLEET_DOCKER_TIMEOUT_SECONDS": "5",
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def _spawn(self) -> subprocess.Popen[bytes]:
        if self.cli:
            argv = [sys.executable, "-m", "app", "serve"]
            argv += ["--host", "127.0.0.1", "--port", str(self.port)]
        else:
            argv = [sys.executable, "-m", "uvicorn", "app.main:app_factory", "--factory"]
            argv += ["--host", "127.0.0.1", "--port", str(self.port), "--log-level", "info"]
        argv = self.prefix + argv
        with open(self.log_path, "ab") as log:
            return subprocess.Popen(
                argv,
                cwd=self.workdir,  # no stray .env is read
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    async def start(self) -> None:
        """Start the process and wait until /healthz answers."""
        self.proc = await asyncio.to_thread(self._spawn)
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient(base_url=self.url, timeout=2) as http:
            while True:
                assert self.proc.poll() is None, f"server exited:\n{self.log()}"
                with suppress(httpx.HTTPError):
                    answer = await http.get("/healthz")
                    if answer.status_code == 200:
                        self.instance = answer.json()["instance_id"]
                        return
                assert time.monotonic() < deadline, f"server not ready:\n{self.log()}"
                await asyncio.sleep(0.1)

    def kill(self) -> None:
        """kill -9: no shutdown code runs."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)
        self.proc = None

    def instance_id(self) -> str:
        """The orchestrator's instance id (the database's), as /healthz last said."""
        return self.instance

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except OSError:
            return "(no log)"

    @asynccontextmanager
    async def client(self) -> AsyncIterator[httpx.AsyncClient]:
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as http:
            yield http


async def _running(daemon: Daemon, name: str) -> bool:
    async with docker_for(daemon) as docker:
        data = await docker.containers.container(name).show()
    return bool(data["State"]["Running"])


async def _wait_exited(daemon: Daemon, name: str, within: float = 20) -> None:
    deadline = time.monotonic() + within
    while await _running(daemon, name):
        assert time.monotonic() < deadline, f"{name} still running"
        await asyncio.sleep(0.1)


async def _hand_made(daemon: Daemon, instance: str, run_id: str) -> str:
    """A running container with our labels that no run of the database knows."""
    labels = {
        "dockfleet.managed": "true",
        "dockfleet.instance": instance,
        "dockfleet.run_id": run_id,
        "dockfleet.task_id": run_id,
        "dockfleet.attempt": "1",
    }
    config: dict[str, Any] = {
        "Image": IMAGE,
        "Cmd": ["sleep", "300"],
        "Labels": labels,
        "HostConfig": {"NetworkMode": "none"},
    }
    async with docker_for(daemon) as docker:
        box = await docker.containers.create(config)
        await box.start()
        return str(box.id)


async def _exists(daemon: Daemon, cid: str) -> bool:
    async with docker_for(daemon) as docker:
        try:
            await docker.containers.container(cid).show()
        except aiodocker.DockerError as exc:
            if exc.status == 404:
                return False
            raise
    return True


async def test_kill_9_and_restart_adopts_records_and_sweeps(
    fleet: Fleet, tmp_path: Path, db_url: str
) -> None:
    server = Server(tmp_path, DOCKFLEET_DATABASE_URL=db_url)
    foreign = ""
    since = time.time() - 1
    try:
        await server.start()
        async with server.client() as http:
            await add_host(http, fleet.sock, "sock")
            slow = await add_task(http, "slow-a", "sleep 10; echo a-done")
            quick = await add_task(http, "quick-b", "sleep 1; echo b-done")
            directive = await add_directive(http, "recovery")
            run_a = await launch(http, directive, tasks=[slow])
            run_b = await launch(http, directive, tasks=[quick])
            run_a = await wait_run(http, run_a["id"], {"running"}, within=20, poll=0.05)
            run_b = await wait_run(http, run_b["id"], {"running"}, within=20, poll=0.05)
        instance = server.instance_id()
        name = "dockfleet-{}-r{}-t{}-a1"
        name_a = name.format(instance, run_a["id"], run_a["tasks"][0]["id"])
        name_b = name.format(instance, run_b["id"], run_b["tasks"][0]["id"])
        assert run_a["tasks"][0]["container_id"] is not None

        server.kill()
        await _wait_exited(fleet.sock, name_b)  # B ended while nobody watched
        assert await _running(fleet.sock, name_a)  # A is still running
        orphan = await _hand_made(fleet.sock, instance, "9999")
        foreign = await _hand_made(fleet.sock, "someone-else", "9999")

        await server.start()
        async with server.client() as http:
            done_b = await wait_run(http, run_b["id"], within=20)
            assert await _running(fleet.sock, name_a), "A should still run after the restart"
            done_a = await wait_run(http, run_a["id"], within=30)
            logs_a = (await run_logs(http, run_a["id"]))["tasks"][0]
            logs_b = (await run_logs(http, run_b["id"]))["tasks"][0]
            deadline = time.monotonic() + 10
            while await _exists(fleet.sock, orphan):
                assert time.monotonic() < deadline, "the orphan was not removed"
                await asyncio.sleep(0.2)

        for done, logs, text in ((done_a, logs_a, "a-done"), (done_b, logs_b, "b-done")):
            assert done["status"] == "succeeded", (done, server.log())
            assert (done["tasks"][0]["exit_code"], done["tasks"][0]["attempt"]) == (0, 1), done
            assert done["placements"] == 1
            assert logs["logs"] == f"{text}\n", logs
        assert done_a["tasks"][0]["container_id"] == run_a["tasks"][0]["container_id"]
        # nothing was started twice: one create and one start per run, ever
        for run, cname in ((run_a, name_a), (run_b, name_b)):
            events = await container_events(
                fleet.sock, since, f"dockfleet.run_id={run['id']}", f"dockfleet.instance={instance}"
            )
            actions = sorted(e["Action"] for e in events)
            assert actions == ["create", "start"], events
            assert {e["Actor"]["Attributes"]["name"] for e in events} == {cname}
        assert await _exists(fleet.sock, foreign), "another instance's container was removed"
        assert await containers(fleet.sock, f"dockfleet.instance={instance}") == []
    finally:
        server.kill()
        if foreign:
            async with docker_for(fleet.sock) as docker:
                await docker.containers.container(foreign).delete(force=True)
        with suppress(Exception):
            await remove_ours(fleet.sock, server.instance_id())
