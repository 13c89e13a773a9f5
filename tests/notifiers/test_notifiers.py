"""Notifiers against a loopback receiver: secrets never shown, the address policy, signatures,
each kind's payload, retries after a 500 (backoff), give-ups, on_change_only, filters, two
workers claiming each delivery once, and launches never waiting for a slow receiver."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from app.events import store as events
from app.notifiers.models import Delivery
from app.notifiers.worker import Notifications, backoff
from app.runs.models import Run
from tests.builders import app_client, assert_field_error, directive_payload
from tests.conftest import make_settings
from tests.notifiers.receiver import Receiver

FAST = {
    "notifier_backoff_seconds": 0.1,
    "notifier_backoff_max_seconds": 0.4,
    "notifier_poll_seconds": 0.1,
    "notifier_timeout_seconds": 5,
}
TOKEN = "tok3n-in-the-path"  # a secret inside a URL
SECRET = "hmac-s3cret"


@pytest.fixture
def rx() -> Iterator[Receiver]:
    with Receiver() as receiver:
        yield receiver


@pytest.fixture
async def api(db_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(make_settings(db_url, **FAST)) as client:
        yield client


async def notifier(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    r = await client.post("/api/notifiers/", json=body)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


async def deliveries(client: httpx.AsyncClient, key: int | str) -> list[dict[str, Any]]:
    r = await client.get(f"/api/notifiers/{key}/deliveries/")
    assert r.status_code == 200, r.text
    out: list[dict[str, Any]] = r.json()["results"]
    return out


async def settled(client: httpx.AsyncClient, key: int | str, n: int) -> list[dict[str, Any]]:
    """The deliveries once `n` of them are delivered or failed (bounded wait)."""
    deadline = time.monotonic() + 15
    while True:
        found = await deliveries(client, key)
        done = [d for d in found if d["status"] in ("delivered", "failed")]
        if len(done) >= n or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.1)


async def schedule_refusal(client: httpx.AsyncClient, name: str) -> dict[str, Any]:
    """A schedule whose run-now is refused (no hosts): one `schedule.failed` event."""
    d = await client.post("/api/directives/", json=directive_payload(tasks=["log_triage"]))
    s = await client.post(
        "/api/schedules/", json={"name": name, "directive_id": d.json()["id"], "cron": "@daily"}
    )
    assert s.status_code == 201, s.text
    r = await client.post(f"/api/schedules/{name}/run-now/")
    assert r.status_code == 503, r.text
    out: dict[str, Any] = s.json()
    return out


def verify(secret: str, received: Any) -> bool:
    """What a receiver does: recompute the signature over timestamp + "." + body."""
    ts = received.headers["x-dockfleet-timestamp"]
    mac = hmac.new(secret.encode(), ts.encode() + b"." + received.body, hashlib.sha256)
    given = received.headers["x-dockfleet-signature"]
    return hmac.compare_digest(f"sha256={mac.hexdigest()}", given) and (
        abs(time.time() - int(ts)) < 300
    )


async def test_secrets_are_never_shown_and_the_policy_applies(
    api: httpx.AsyncClient, rx: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)  # httpx would log request URLs at INFO
    caplog.set_level(logging.DEBUG, logger="dockfleet")
    url = rx.url(f"/hook/{TOKEN}?key={TOKEN}")
    n = await notifier(api, name="ha", kind="webhook", url=url, secret=SECRET)
    assert n["url_masked"] == f"http://127.0.0.1:{rx.port}/…" and n["has_secret"] is True
    assert n["event_types"] == ["run.failed", "schedule.failed", "host.unhealthy"]
    r = await api.post("/api/notifiers/ha/test/")
    assert r.status_code == 200 and r.json()["status"] == "delivered", r.text
    answers = [
        r.text,
        (await api.get("/api/notifiers/")).text,
        (await api.get("/api/notifiers/ha/")).text,
        (await api.get("/api/notifiers/ha/deliveries/")).text,
        (await api.patch("/api/notifiers/ha/", json={"enabled": True})).text,
    ]
    for text in [*answers, caplog.text]:
        assert TOKEN not in text and SECRET not in text
    [got] = rx.at(f"/hook/{TOKEN}")
    assert verify(SECRET, got)
    r = await api.patch("/api/notifiers/ha/", json={"secret": ""})
    assert r.json()["has_secret"] is False
    # Bad input names the field; addresses outside the policy are refused (never contacted).
    base = {"name": "bad", "kind": "webhook", "url": rx.url()}
    for change, field in [
        ({"url": "ftp://127.0.0.1/x"}, "url"),
        ({"url": "http://8.8.8.8/hook"}, "url"),
        ({"url": "http://169.254.169.254/latest"}, "url"),
        ({"url": f"http://user:{TOKEN}@127.0.0.1/"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"kind": "email"}, "kind"),
        ({"event_types": ["Run Failed"]}, "event_types"),
        ({"event_types": []}, "event_types"),
        ({"host_ids": [0]}, "host_ids"),
        ({"url": rx.url(f"/{TOKEN}" * 200)}, "url"),
        ({"secret": TOKEN * 500}, "secret"),
    ]:
        r = await api.post("/api/notifiers/", json={**base, **change})
        assert_field_error(r, field)
        assert TOKEN not in r.text
    assert (await api.post("/api/notifiers/", json={**base, "name": "ha"})).status_code == 409
    assert (await api.post("/api/notifiers/nope/test/")).status_code == 404
    assert (await api.delete("/api/notifiers/ha/")).status_code == 204
    assert (await api.get("/api/notifiers/ha/deliveries/")).status_code == 404


async def test_a_name_is_checked_on_what_it_resolves_to(db_url: str, rx: Receiver) -> None:
    settings = make_settings(db_url, notifier_allowed_networks="10.0.0.0/8", **FAST)
    async with app_client(settings) as client:
        n = await notifier(client, name="lan", kind="ntfy", url=f"http://localhost:{rx.port}/t")
        r = await client.post(f"/api/notifiers/{n['id']}/test/")
        body = r.json()
        assert body["status"] == "failed" and body["attempts"] == 1, body
        assert "resolves outside DOCKFLEET_NOTIFIER_ALLOWED_NETWORKS" in body["last_error"]
        r = await client.post(
            "/api/notifiers/", json={"name": "x", "kind": "ntfy", "url": rx.url()}
        )
        assert_field_error(r, "url")
    assert rx.requests == []


async def test_each_kind_gets_its_native_payload(api: httpx.AsyncClient, rx: Receiver) -> None:
    types = ["schedule.failed"]
    await notifier(
        api, name="w", kind="webhook", url=rx.url("/w"), secret=SECRET, event_types=types
    )
    await notifier(
        api, name="n", kind="ntfy", url=rx.url("/n"), secret="ntfy-tk", event_types=types
    )
    await notifier(api, name="d", kind="discord", url=rx.url("/d"), event_types=types)
    await notifier(api, name="s", kind="slack", url=rx.url("/s"), event_types=types)
    await notifier(api, name="other", kind="slack", url=rx.url("/o"), event_types=["host.*"])
    schedule = await schedule_refusal(api, "nightly")
    for path in ("/w", "/n", "/d", "/s"):
        assert len(await rx.until(1, path)) == 1, path
    [w] = rx.at("/w")
    assert verify(SECRET, w) and w.headers["content-type"] == "application/json"
    assert w.headers["x-dockfleet-event"] == "schedule.failed"
    body = w.json()
    assert body["event"]["type"] == "schedule.failed" and body["severity"] == "error"
    assert body["schedule_id"] == schedule["id"] and body["schedule"] == "nightly"
    assert body["event"]["data"]["status_code"] == 503
    assert "schedule nightly failed" in body["text"] and "No available hosts" in body["text"]
    [n] = rx.at("/n")
    assert n.headers["title"] == "dockfleet: schedule nightly failed"
    assert n.headers["priority"] == "high" and n.headers["authorization"] == "Bearer ntfy-tk"
    assert n.body.decode().startswith("schedule nightly failed")
    [d] = rx.at("/d")
    embed = d.json()["embeds"][0]
    assert d.json()["content"] == "dockfleet: schedule nightly failed"
    assert embed["color"] == 0xD83C3E and "No available hosts" in embed["description"]
    assert d.json()["allowed_mentions"] == {"parse": []}
    [s] = rx.at("/s")
    assert s.json()["text"].startswith("schedule nightly failed")
    assert [b["type"] for b in s.json()["blocks"]] == ["header", "section"]
    assert "x-dockfleet-signature" not in s.headers and rx.at("/o") == []
    [delivered] = await settled(api, "w", 1)  # recorded just after the receiver answered
    assert delivered["status"] == "delivered" and delivered["last_status_code"] == 200
    assert delivered["event_type"] == "schedule.failed" and delivered["event_id"] is not None


async def test_retry_after_a_500_with_backoff_and_give_up(
    api: httpx.AsyncClient, rx: Receiver
) -> None:
    rx.statuses.extend([500, 502])
    await notifier(api, name="flaky", kind="webhook", url=rx.url("/flaky"), secret=SECRET)
    first = (await api.post("/api/notifiers/flaky/test/")).json()
    assert first["status"] == "pending" and first["last_status_code"] == 500
    assert first["next_attempt_at"] is not None
    [d] = await settled(api, "flaky", 1)
    assert d["status"] == "delivered" and d["attempts"] == 3, d
    assert [a["status_code"] for a in d["log"]] == [500, 502, 200]
    got = rx.at("/flaky")
    assert len(got) == 3 and all(verify(SECRET, g) for g in got)
    assert {g.headers["x-dockfleet-delivery"] for g in got} == {str(d["id"])}
    gaps = [b.at - a.at for a, b in itertools.pairwise(got)]
    assert all(gap >= 0.04 for gap in gaps), gaps  # backed off (0.05-0.1 s, then 0.1-0.2 s)
    # A 404 cannot get better: failed at once.
    rx.statuses.extend([404])
    await notifier(api, name="gone", kind="slack", url=rx.url("/gone"))
    body = (await api.post("/api/notifiers/gone/test/")).json()
    assert body["status"] == "failed" and body["attempts"] == 1 and body["last_error"] == "HTTP 404"
    # A receiver down for good: given up after the attempts allowed.
    rx.default = 503
    await notifier(api, name="down", kind="discord", url=rx.url("/down"))
    await api.post("/api/notifiers/down/test/")
    [d] = await settled(api, "down", 1)
    assert d["status"] == "failed" and d["attempts"] == 8 and len(d["log"]) == 8, d


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    import random

    rng = random.Random(7)
    for attempts, ceiling in [(1, 2), (2, 4), (3, 8), (4, 16), (10, 60), (30, 60)]:
        waits = [backoff(attempts, 2, 60, rng) for _ in range(50)]
        assert all(ceiling / 2 <= w <= ceiling for w in waits), (attempts, waits)
        assert len(set(waits)) > 40  # jittered


async def _fake_runs(api: httpx.AsyncClient, app_state: Any, schedule_id: int, n: int) -> list[int]:
    ids = []
    async with app_state.db.session_scope() as session:
        for _ in range(n):
            run = Run(directive_id=None, schedule_id=schedule_id, status="failed")
            session.add(run)
            await session.flush()
            assert run.id is not None
            ids.append(run.id)
    return ids


async def test_on_change_only_tells_when_runs_start_failing_and_recover(
    db_url: str, rx: Receiver
) -> None:
    from app.main import create_app

    settings = make_settings(db_url, **FAST)
    application = create_app(settings, migrate=False)
    state = application.state.dockfleet
    service = Notifications(state)
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
        d = (await api.post("/api/directives/", json=directive_payload())).json()
        s1 = (
            await api.post(
                "/api/schedules/", json={"name": "s1", "directive_id": d["id"], "cron": "@daily"}
            )
        ).json()
        s2 = (
            await api.post(
                "/api/schedules/", json={"name": "s2", "directive_id": d["id"], "cron": "@daily"}
            )
        ).json()
        kinds = ["run.failed", "run.succeeded"]
        await service.feed.step()  # the cursor starts at the newest event
        changes = await notifier(
            api,
            name="changes",
            kind="webhook",
            url=rx.url("/c"),
            event_types=kinds,
            on_change_only=True,
        )
        every = await notifier(
            api,
            name="every",
            kind="webhook",
            url=rx.url("/e"),
            event_types=kinds,
            schedule_ids=[s1["id"]],
        )
        runs = await _fake_runs(api, state, s1["id"], 6)
        [other] = await _fake_runs(api, state, s2["id"], 1)
        story = ["run.succeeded", "run.failed", "run.failed", "run.succeeded", "run.succeeded",
                 "run.failed"]  # fmt: skip
        async with state.db.session_scope() as session:
            for run_id, kind in zip(runs, story, strict=True):
                await events.record(session, kind, run_id=run_id, status=kind[4:])
            await events.record(session, "run.failed", run_id=other, status="failed")
        for _ in range(3):
            await service.feed.step()
        while await service.deliver_due():
            pass
        await service.http.aclose()
        told = [(r.json()["event"]["type"], r.json()["event"]["run_id"]) for r in rx.at("/c")]
        # First success: nothing changed (a new subject is assumed fine); then the first
        # failure, the recovery, the next failure; the other schedule's failure on its own.
        assert sorted(told) == sorted(
            [("run.failed", runs[1]), ("run.succeeded", runs[3]), ("run.failed", runs[5]),
             ("run.failed", other)]
        ), told  # fmt: skip
        assert sorted(r.json()["event"]["run_id"] for r in rx.at("/e")) == runs  # only s1
        assert len(await deliveries(api, changes["id"])) == 4
        assert len(await deliveries(api, every["id"])) == 6
    await state.db.dispose()


async def left(state: Any) -> int:
    """Deliveries not delivered yet."""
    from sqlalchemy import func
    from sqlmodel import col, select

    async with state.db.sessions() as session:
        query = (
            select(func.count()).select_from(Delivery).where(col(Delivery.status) != "delivered")
        )
        return int((await session.exec(query)).one())


async def test_two_workers_claim_each_delivery_once(db_url: str, rx: Receiver) -> None:
    from app.main import create_app

    application = create_app(make_settings(db_url, **FAST), migrate=False)
    state = application.state.dockfleet
    rx.delay = 0.02
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
        n = await notifier(api, name="pair", kind="webhook", url=rx.url("/p"))
    async with state.db.session_scope() as session:
        for i in range(40):
            session.add(
                Delivery(
                    notifier_id=n["id"],
                    event_id=10_000 + i,
                    event_type="run.failed",
                    message={
                        "event": {"type": "run.failed", "id": i},
                        "title": "t",
                        "text": "t",
                        "severity": "error",
                    },
                )
            )
    one, two = Notifications(state), Notifications(state)

    async def drain(worker: Notifications) -> int:
        tried, deadline = 0, time.monotonic() + 30
        while time.monotonic() < deadline:
            got = await worker.deliver_due()
            tried += got
            if not got:
                if not await left(state):
                    return tried
                await asyncio.sleep(0.01)  # the other worker holds the rest
        return tried

    tried = await asyncio.gather(drain(one), drain(two))
    await one.http.aclose()
    await two.http.aclose()
    seen = Counter(r.headers["x-dockfleet-delivery"] for r in rx.at("/p"))
    assert len(seen) == 40 and set(seen.values()) == {1}, seen
    assert sum(tried) == 40 and all(t > 0 for t in tried), tried
    await state.db.dispose()


async def test_a_slow_receiver_never_delays_a_launch_or_a_fire(
    api: httpx.AsyncClient, rx: Receiver
) -> None:
    rx.delay = 2.0
    await notifier(
        api, name="slow", kind="webhook", url=rx.url("/slow"), event_types=["schedule.*"]
    )
    await schedule_refusal(api, "first")
    await rx.until(0)
    started = time.monotonic()
    for _ in range(5):
        r = await api.post("/api/schedules/first/run-now/")
        assert r.status_code == 503
    assert time.monotonic() - started < 2.0  # five refused launches, none waited on a request
    got = await rx.until(6, "/slow", limit=20)
    assert len(got) == 6


async def test_a_lapsed_lease_is_taken_over_and_the_late_writer_fenced(
    db_url: str, rx: Receiver
) -> None:
    from datetime import timedelta

    from app import clock
    from app.main import create_app

    fake = clock.FakeClock()
    application = create_app(make_settings(db_url, **FAST), migrate=False)
    state = application.state.dockfleet
    transport = httpx.ASGITransport(app=application)
    with clock.use(fake):
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
            n = await notifier(api, name="lease", kind="webhook", url=rx.url("/l"))
        async with state.db.session_scope() as session:
            session.add(
                Delivery(
                    notifier_id=n["id"],
                    event_id=1,
                    event_type="run.failed",
                    message={
                        "event": {"type": "run.failed"},
                        "title": "t",
                        "text": "t",
                        "severity": "error",
                    },
                    next_attempt_at=fake.current,
                )
            )
        dead, alive = Notifications(state), Notifications(state)
        [claimed] = await dead.claim()  # ... and then its process "dies" before sending
        assert await alive.claim() == []  # the lease holds
        fake.advance(state.settings.notifier_lease_seconds + 1)
        assert await alive.claim() == [claimed]
        delivered = await alive.attempt(claimed)
        assert delivered is not None and delivered.status == "delivered"
        assert delivered.attempts == 2
        assert await dead.attempt(claimed) is None  # not its lease any more: nothing written
        fake.advance(timedelta(minutes=5).total_seconds())
        assert await dead.claim() == []  # delivered stays delivered
        await dead.http.aclose()
        await alive.http.aclose()
    assert len(rx.at("/l")) == 1
    await state.db.dispose()
