"""The outbox survives `kill -9` of the server: a notification that kept failing is delivered
by the next server on the same database, once it can be; events recorded while no server
fed them are delivered too (the feed's cursor is in the database)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.live_server import ROOT, LiveServer, _wait_ready, free_port, server_env
from tests.notifiers.receiver import Receiver

ENV = {
    "DOCKFLEET_NOTIFIER_BACKOFF_SECONDS": "0.2",
    "DOCKFLEET_NOTIFIER_BACKOFF_MAX_SECONDS": "0.5",
    "DOCKFLEET_NOTIFIER_MAX_ATTEMPTS": "100",
    "DOCKFLEET_NOTIFIER_LEASE_SECONDS": "2",
    "DOCKFLEET_NOTIFIER_POLL_SECONDS": "0.2",
    "DOCKFLEET_LOG_LEVEL": "info",
}


@contextmanager
def server(tmp: Path, db: Path, name: str) -> Iterator[tuple[LiveServer, subprocess.Popen[bytes]]]:
    """A server on `db`; the caller may kill it; it is always gone after the block."""
    port = free_port()
    log = tmp / f"{name}.log"
    live = LiveServer(url=f"http://127.0.0.1:{port}", log=log, db=db)
    argv = [sys.executable, "-m", "uvicorn", "app.main:app_factory", "--factory"]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, cwd=ROOT, env=server_env(db, ENV), stdout=out, stderr=subprocess.STDOUT
        )
    try:
        _wait_ready(live, proc, 30)
        yield live, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


def _deliveries(url: str, name: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{url}/api/notifiers/{name}/deliveries/", timeout=5)
    assert r.status_code == 200, r.text
    out: list[dict[str, Any]] = r.json()["results"]
    return out


def test_the_outbox_survives_kill_9(tmp_path: Path, migrated_template: Path) -> None:
    db = tmp_path / "dockfleet.db"
    shutil.copy(migrated_template, db)
    with Receiver() as rx:
        rx.default = 500  # the receiver is broken while the first server runs
        with server(tmp_path, db, "first") as (live, proc):
            api = httpx.Client(base_url=live.url, timeout=10)
            r = api.post(
                "/api/notifiers/",
                json={"name": "ops", "kind": "webhook", "url": rx.url("/ops"), "secret": "k"},
            )
            assert r.status_code == 201, r.text
            d = api.post("/api/directives/", json={"name": "d", "tasks": ["log_triage"]}).json()
            s = {"name": "nightly", "directive_id": d["id"], "cron": "@daily"}
            assert api.post("/api/schedules/", json=s).status_code == 201
            assert api.post("/api/schedules/nightly/run-now/").status_code == 503  # no hosts
            got = rx.wait(3, "/ops")
            assert len(got) >= 3 and {g.answered for g in got} == {500}, live.log_tail()
            api.close()
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        tried = len(rx.at("/ops"))
        # While no server runs, another schedule refusal is recorded straight in the database
        # by a process that is not a server (the feed never saw it).
        subprocess.run(
            [sys.executable, "-m", "tests.notifiers.record_event", f"sqlite+aiosqlite:///{db}"],
            cwd=ROOT,
            check=True,
            timeout=60,
        )
        rx.default = 200  # repaired
        with server(tmp_path, db, "second") as (live, _):
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                found = _deliveries(live.url, "ops")
                if len(found) == 2 and all(x["status"] == "delivered" for x in found):
                    break
                time.sleep(0.2)
            assert [x["status"] for x in found] == ["delivered", "delivered"], (
                found,
                live.log_tail(),
            )
            first = found[1]  # newest first
            assert first["attempts"] > tried - 1 >= 2
            assert [a["status_code"] for a in first["log"]][-2:] == [500, 200]
            assert found[0]["event_type"] == "schedule.failed"
            assert found[0]["message"]["event"]["data"]["schedule"] == "offline"
    answered_ok = [g for g in rx.at("/ops") if g.answered == 200]
    ids = sorted(g.headers["x-dockfleet-delivery"] for g in answered_ok)
    assert ids == sorted(str(x["id"]) for x in found)  # each delivered once
