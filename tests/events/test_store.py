"""The event record: written in the caller's transaction, read in order, trimmed, woken."""

from __future__ import annotations

import asyncio
import logging

import pytest

from app.config import Settings
from app.db import Database
from app.events import store
from app.events.schemas import parse_types, type_matches


@pytest.fixture
async def db(settings: Settings) -> Database:
    database = Database(settings.database_url)
    yield database  # type: ignore[misc]
    await database.dispose()


async def test_an_event_commits_with_its_transaction_or_not_at_all(db: Database) -> None:
    async with db.sessions() as session:
        await store.record(session, "run.pending", run_id=1, directive="nightly")
        await session.rollback()
    async with db.sessions() as session:
        assert await store.list_after(session, 0) == []
        await store.record(session, "run.running", run_id=1, host_id=2, host="a")
        await store.record(session, "host.unhealthy", host_id=2, error="boom")
        await session.commit()
    async with db.sessions() as session:
        events = await store.list_after(session, 0)
    assert [(e.type, e.run_id, e.host_id) for e in events] == [
        ("run.running", 1, 2),
        ("host.unhealthy", None, 2),
    ]
    assert events[0].data == {"host": "a"} and events[1].data == {"error": "boom"}
    assert events[0].id < events[1].id


async def test_filters_by_type_prefix_run_and_host(db: Database) -> None:
    async with db.session_scope() as session:
        for type_, run, host in [
            ("run.pending", 1, None),
            ("run.failed", 1, 3),
            ("host.unhealthy", None, 3),
            ("run.succeeded", 2, 4),
        ]:
            await store.record(session, type_, run_id=run, host_id=host)
    async with db.sessions() as session:

        async def types(**kw: object) -> list[str]:
            return [e.type for e in await store.list_after(session, 0, **kw)]  # type: ignore[arg-type]

        assert await types(types=["run.*"]) == ["run.pending", "run.failed", "run.succeeded"]
        assert await types(types=["run.failed", "host.unhealthy"]) == [
            "run.failed",
            "host.unhealthy",
        ]
        assert await types(run_id=1) == ["run.pending", "run.failed"]
        assert await types(host_id=3) == ["run.failed", "host.unhealthy"]
        assert await types(types=["host.*"], host_id=4) == []
        first = (await store.list_after(session, 0, limit=1))[0]
        assert [e.type for e in await store.list_after(session, first.id, limit=2)] == [
            "run.failed",
            "host.unhealthy",
        ]


def test_type_parsing() -> None:
    assert parse_types(" run.failed, host.* ,") == ["run.failed", "host.*"]
    assert parse_types("") is None
    for bad in ("run.", "RUN.failed", "run.*.x", "a b", "x" * 65):
        with pytest.raises(ValueError):
            parse_types(bad)
    assert type_matches("run.failed", ["run.*"]) and not type_matches("runner.x", ["run.*"])
    assert type_matches("anything", None)


async def test_trim_keeps_the_newest_and_bounds_say_what_is_kept(db: Database) -> None:
    async with db.session_scope() as session:
        await store.record_all(
            session, [store.event_row("run.pending", run_id=i) for i in range(10)]
        )
    async with db.session_scope() as session:
        assert await store.bounds(session) == (1, 10)
        assert await store.trim(session, keep=3, keep_days=7) == 7
    async with db.session_scope() as session:
        assert await store.bounds(session) == (8, 10)
        assert await store.trim(session, keep=100, keep_days=0.0) == 2  # all but the newest
        assert await store.bounds(session) == (10, 10)
        await store.record(session, "run.running", run_id=1)
    async with db.sessions() as session:
        assert await store.bounds(session) == (10, 11)  # ids never restart


async def test_a_commit_wakes_waiters_and_logs_one_line(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    waiter = asyncio.create_task(store.BUS.wait(5))
    await asyncio.sleep(0)
    with caplog.at_level(logging.INFO, logger="dockfleet.events"):
        async with db.sessions() as session:
            await store.record(session, "run.failed", run_id=4, host_id=5, error="exit 3")
            await asyncio.sleep(0.05)
            assert not waiter.done() and not caplog.records  # nothing until the commit
            await session.commit()
    assert await asyncio.wait_for(waiter, 1) is True
    (line,) = [r for r in caplog.records if r.name == "dockfleet.events"]
    assert line.getMessage() == "run.failed run 4 host 5 (error=exit 3)"
    assert (line.run_id, line.host_id) == (4, 5)  # type: ignore[attr-defined]
    assert await store.BUS.wait(0.05) is False


async def test_cursor_holds_back_behind_a_gap_until_it_fills_or_expires(db: Database) -> None:
    async with db.session_scope() as session:
        await store.record_all(
            session, [store.event_row("run.pending", run_id=i) for i in range(3)]
        )
    async with db.session_scope() as session:  # id 2 vanishes, as a late or rolled-back writer
        from sqlalchemy import delete

        await (await session.connection()).execute(delete(store.TABLE).where(store.TABLE.c.id == 2))
    cursor = store.Cursor(0, grace=0.3)
    async with db.sessions() as session:
        assert [e.id for e in await cursor.next_batch(session)] == [1]
        assert await cursor.next_batch(session) == []
        await asyncio.sleep(0.35)
        assert [e.id for e in await cursor.next_batch(session)] == [3]


async def test_a_wake_up_between_a_read_and_the_wait_is_not_lost(db: Database) -> None:
    mark = store.BUS.wakes  # a reader reads here...
    async with db.session_scope() as session:  # ...a commit lands before it waits...
        await store.record(session, "host.healthy", host_id=1)
    began = asyncio.get_running_loop().time()
    assert await store.BUS.wait(5, since=mark) is True  # ...and its wait returns at once
    assert asyncio.get_running_loop().time() - began < 0.1


async def test_the_newest_probe_is_shared_and_follows_local_commits(db: Database) -> None:
    probe = store.Newest(every=60)
    assert await probe.get(db.sessions) == 0
    async with db.session_scope() as session:
        await store.record(session, "host.healthy", host_id=1)
    assert await probe.get(db.sessions) == 1  # a local commit: read again at once
