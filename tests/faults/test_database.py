"""The database in trouble: a transient error in a supervisor's write (a held SQLite write lock
past the busy timeout, also for longer than the internal-error limit), the database file on a
full disk, and under a held lock. Writes answer 503 within the bound, reads go on, nothing is
orphaned, retries are respected, no run fails for it, and the service recovers by itself; an
unexpected error of another kind past the limit stops the container and fails the run."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.scheduling.records import RunRecords
from tests.faults.helpers import fault_settings, ours, running_app, until
from tests.fleet import Fleet
from tests.fleet.dbfaults import full_tmpfs, hold_sqlite_write_lock
from tests.fleet.observe import EventLog
from tests.integration.runs_helpers import (
    add_directive,
    add_host,
    add_task,
    containers,
    launch,
    remove_ours,
)

BUSY = 0.5  # DOCKFLEET_DB_BUSY_TIMEOUT_SECONDS in these tests


def _path(db_url: str) -> Path:
    assert db_url.startswith("sqlite"), "these faults are SQLite's"
    return Path(db_url.split("///", 1)[1])


async def _final(client: httpx.AsyncClient, run_id: int) -> dict[str, Any] | None:
    run: dict[str, Any] = (await client.get(f"/api/runs/{run_id}/")).json()
    return run if run["status"] in ("succeeded", "failed", "cancelled") else None


async def test_a_locked_database_in_a_supervisor_write_is_retried_not_fatal(
    fleet: Fleet, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = fault_settings(db_url, db_busy_timeout_seconds=BUSY)
    async with running_app(settings) as (app, client):
        label = ours(app)
        host_id = await add_host(client, fleet.sock, "db-locked")
        task = await add_task(client, "db-exit3", "sleep 2; exit 3", max_retries=1)
        directive = await add_directive(client, "db-locked", tasks=[task])
        try:
            async with EventLog([fleet.sock], label) as log:
                run = await launch(client, directive, target_host_id=host_id)
                await asyncio.sleep(1.2)
                # the container exits at ~2 s: its supervisor's writes meet a held lock
                with caplog.at_level(logging.WARNING, logger="dockfleet.supervisor"):
                    with hold_sqlite_write_lock(_path(db_url), seconds=3):
                        await asyncio.sleep(3)
                    done, _ = await until(lambda: _final(client, run["id"]), 30, "run ends")
            left = await containers(fleet.sock, label)
        finally:
            await remove_ours(fleet.sock, app.state.dockfleet.instance_id)
    waits = [r for r in caplog.records if "database unavailable" in r.getMessage()]
    assert waits, "the held lock never reached a supervisor write"
    assert not [r for r in caplog.records if "internal error" in r.getMessage()]
    assert done["status"] == "failed", done
    assert done["tasks"][0]["attempt"] == 2  # max_retries 1: exactly two attempts
    assert done["error"] == "task db-exit3 failed: exited with code 3", done
    assert sorted(log.creates_per_attempt(fleet.sock).values()) == [1, 1]
    assert left == []


async def test_a_database_locked_past_the_error_limit_never_fails_a_run(
    fleet: Fleet, db_url: str
) -> None:
    """A lock held for longer than DOCKFLEET_INTERNAL_ERROR_LIMIT tries would take: the run's
    container goes on, and the run succeeds once the database answers (seen at 1,000 hosts,
    where an exhausted connection pool failed runs that had nothing wrong with them)."""
    settings = fault_settings(db_url, db_busy_timeout_seconds=BUSY, internal_error_limit=2)
    async with running_app(settings) as (app, client):
        label = ours(app)
        host_id = await add_host(client, fleet.sock, "db-outlast")
        task = await add_task(client, "db-outlast", "sleep 2; echo outlasted")
        directive = await add_directive(client, "db-outlast", tasks=[task])
        try:
            async with EventLog([fleet.sock], label) as log:
                run = await launch(client, directive, target_host_id=host_id)
                await asyncio.sleep(1.2)
                with hold_sqlite_write_lock(_path(db_url), seconds=9):
                    await asyncio.sleep(9)  # >= 2 tries of the busy timeout and their backoff
                released = time.monotonic()
                done, _ = await until(lambda: _final(client, run["id"]), 30, "run ends")
                took = time.monotonic() - released
            left = await containers(fleet.sock, label)
        finally:
            await remove_ours(fleet.sock, app.state.dockfleet.instance_id)
    print(f"database locked for 9 s: run {done['status']} {took:.1f}s after the lock was released")
    assert done["status"] == "succeeded", done
    assert done["tasks"][0]["exit_code"] == 0 and done["tasks"][0]["attempt"] == 1
    assert list(log.creates_per_attempt(fleet.sock).values()) == [1]
    assert left == []


async def test_a_held_write_lock_is_a_503_within_the_bound_then_recovers(db_url: str) -> None:
    settings = fault_settings(db_url, db_busy_timeout_seconds=BUSY, health_interval_seconds=0)
    async with running_app(settings) as (_app, client):
        body = {"name": "locked-1"}
        with hold_sqlite_write_lock(_path(db_url), seconds=30):
            started = time.monotonic()
            refused = await client.post("/api/directives/", json=body)
            took = time.monotonic() - started
            read = await client.get("/api/directives/")
            health = await client.get("/healthz")
        await asyncio.sleep(1.1)  # the health check's write result is reused for a second
        again = await client.post("/api/directives/", json=body)
        healthy = await client.get("/healthz")
    assert refused.status_code == 503, refused.text
    assert refused.json()["detail"] == "database unavailable"
    assert "locked" in refused.json()["reason"]
    assert "INSERT" not in refused.text and "SQL" not in refused.text
    assert refused.headers["retry-after"] == "1"
    assert took < BUSY + 2, took
    assert read.status_code == 200
    assert health.status_code == 503 and health.json()["writes"] == "failing"
    assert again.status_code == 201, again.text
    assert healthy.status_code == 200


async def test_a_full_disk_is_a_503_reads_go_on_and_writes_come_back(
    fleet: Fleet, migrated_template: Path
) -> None:
    with full_tmpfs(size_mb=16) as fs:
        db = Path(fs.path) / "dockfleet.db"
        shutil.copy(migrated_template, db)
        settings = fault_settings(f"sqlite+aiosqlite:///{db}", health_interval_seconds=0)
        async with running_app(settings) as (_app, client):
            first = await client.post("/api/directives/", json={"name": "before-full"})
            fs.fill()
            started = time.monotonic()
            refused = await client.post("/api/directives/", json={"name": "while-full"})
            took = time.monotonic() - started
            read = await client.get("/api/directives/")
            await asyncio.sleep(1.1)
            health = await client.get("/healthz")
            fs.free()
            again = await client.post("/api/directives/", json={"name": "after-full"})
            await asyncio.sleep(1.1)
            healthy = await client.get("/healthz")
            names = [d["name"] for d in (await client.get("/api/directives/")).json()["results"]]
    assert first.status_code == 201
    assert refused.status_code == 503, refused.text
    assert refused.json() == {
        "detail": "database unavailable",
        "code": "database_unavailable",
        "reason": "database or disk is full",
    }
    assert took < 3
    assert read.status_code == 200
    assert health.status_code == 503 and health.json()["writes"] == "failing"
    assert again.status_code == 201, again.text
    assert healthy.status_code == 200
    assert names == ["before-full", "after-full"]  # nothing half-written


async def test_errors_past_the_limit_stop_the_container_and_fail_the_run_cleanly(
    fleet: Fleet, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected error (not the database's, not Docker's) on every try: after
    DOCKFLEET_INTERNAL_ERROR_LIMIT of them the container is stopped and removed and the run
    failed with a clean message (no raw error, no leftover)."""

    async def broken(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("injected: storing the attempt's end fails")

    settings = fault_settings(db_url, db_busy_timeout_seconds=BUSY, internal_error_limit=2)
    async with running_app(settings) as (app, client):
        label = ours(app)
        host_id = await add_host(client, fleet.sock, "db-give-up")
        task = await add_task(client, "db-sleep", "sleep 1; echo stored-never")
        directive = await add_directive(client, "db-give-up", tasks=[task])
        monkeypatch.setattr(RunRecords, "save_attempt", broken)
        try:
            async with EventLog([fleet.sock], label) as log:
                started = time.monotonic()
                run = await launch(client, directive, target_host_id=host_id)
                done, _ = await until(lambda: _final(client, run["id"]), 20, "run ends")
                took = time.monotonic() - started
                left = await containers(fleet.sock, label)
        finally:
            await remove_ours(fleet.sock, app.state.dockfleet.instance_id)
    print(f"given up after {took:.1f}s: {done['status']}: {done['error']}")
    assert log.creates_per_attempt(fleet.sock), "no container was ever created"
    assert list(log.creates_per_attempt(fleet.sock).values()) == [1]
    assert left == []  # given up: the container was stopped and removed
    assert done["status"] == "failed", done
    assert done["error"] == "internal error (RuntimeError); see the server log", done
