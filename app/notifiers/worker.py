"""The notifications service: the feed (events → outbox) and the delivery worker (outbox → HTTP).

Delivery is at least once. A row is claimed with a guarded UPDATE (its status and attempt
count as read, to `delivering` with a lease); the attempt's result is written only while this
process still holds that lease. A process killed mid-attempt leaves a lease that lapses
(DOCKFLEET_NOTIFIER_LEASE_SECONDS) and the row is tried again by whoever runs next. Retries:
exponential backoff with full jitter (DOCKFLEET_NOTIFIER_BACKOFF_SECONDS doubling, at most
DOCKFLEET_NOTIFIER_BACKOFF_MAX_SECONDS) until DOCKFLEET_NOTIFIER_MAX_ATTEMPTS; a 4xx other than
408/425/429, or a URL the address policy refuses, fails at once (retrying cannot change it).

Both loops are tasks of their own: nothing here runs inside a launch, a placement or a fire,
and every request has a deadline (DOCKFLEET_NOTIFIER_TIMEOUT_SECONDS, the lookup included).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import re
import socket
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import and_, func, or_, update
from sqlmodel import col, select

from app import clock, logs
from app.deps import AppState
from app.events import store as events
from app.notifiers import address, payloads
from app.notifiers.feed import BATCH, Feed
from app.notifiers.models import Delivery, Notifier
from app.notifiers.schemas import DeliveryStatus, NotifierKind

log = logging.getLogger("dockfleet.notifiers")
# httpx logs every request's full URL at INFO; a notifier's URL carries its token.
for _name in ("httpx", "httpcore"):
    if logging.getLogger(_name).level == logging.NOTSET:  # unless configured on purpose
        logging.getLogger(_name).setLevel(logging.WARNING)

CLAIM = 16  # deliveries claimed per pass
CONCURRENCY = 8  # requests in flight per process
LOG_KEEP = 10  # attempts kept in a delivery's log
FEED_DEBOUNCE = 0.2  # seconds the feed waits after a wake-up, to read a burst of events at once
RETRY_CODES = {408, 425, 429}
_URL = re.compile(r"https?://\S+")


def backoff(attempts: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds before attempt `attempts + 1`: full jitter over min(cap, base * 2^(n-1))."""
    ceiling = min(cap, base * (2 ** max(0, attempts - 1)))
    return (rng or random).uniform(ceiling / 2, ceiling)


def clean_error(exc: BaseException) -> str:
    """An exception in a few words, without any URL (they carry tokens)."""
    text = _URL.sub("<url>", str(exc)).strip()
    name = type(exc).__name__
    return f"{name}: {text}"[:300] if text else name


class Notifications:
    """The service: `start()` runs the feed and the delivery loops; `test()` sends one now."""

    def __init__(self, state: AppState) -> None:
        self.state = state
        self.settings = state.settings
        self.feed = Feed(state.db)
        self.me = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(self.settings.notifier_timeout_seconds),
            follow_redirects=False,  # a redirect could lead outside the address policy
            trust_env=False,  # no proxy from the environment: the address checked is the peer
        )
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._slots = asyncio.Semaphore(CONCURRENCY)

    def networks(self) -> list[Any]:
        """The notifier address policy (its own setting, else the hosts')."""
        return self.settings.notifier_networks()

    def wake(self) -> None:
        """Look at the outbox now."""
        self._wake.set()

    # -- claiming ------------------------------------------------------------------------------

    async def claim(self, limit: int = CLAIM, only: int | None = None) -> list[int]:
        """Claim due deliveries (pending and due, or delivering with a lapsed lease)."""
        now = clock.now()
        due = or_(
            and_(
                col(Delivery.status) == DeliveryStatus.pending.value,
                col(Delivery.next_attempt_at) <= now,
            ),
            and_(
                col(Delivery.status) == DeliveryStatus.delivering.value,
                col(Delivery.lease_expires_at) < now,
            ),
        )
        query = (
            select(Delivery.id, Delivery.status, Delivery.attempts)
            .join(Notifier, col(Notifier.id) == col(Delivery.notifier_id))
            .where(col(Notifier.enabled))
            .where(due)
            .order_by(col(Delivery.next_attempt_at), col(Delivery.id))
            .limit(limit)
        )
        if only is not None:
            query = query.where(col(Delivery.id) == only)
        lease = now + timedelta(seconds=self.settings.notifier_lease_seconds)
        claimed: list[int] = []
        async with self.state.db.sessions() as session:
            for delivery_id, status, attempts in (await session.exec(query)).all():
                result = await session.exec(
                    update(Delivery)
                    .where(col(Delivery.id) == delivery_id)
                    .where(col(Delivery.status) == status)
                    .where(col(Delivery.attempts) == attempts)
                    .values(
                        status=DeliveryStatus.delivering.value,
                        lease_owner=self.me,
                        lease_expires_at=lease,
                        attempts=attempts + 1,
                    )
                )
                if result.rowcount == 1 and delivery_id is not None:
                    claimed.append(delivery_id)
            await session.commit()
        return claimed

    # -- one attempt ---------------------------------------------------------------------------

    async def _send(self, notifier: Notifier, delivery: Delivery) -> tuple[int | None, str | None]:
        """(status code, error): one request under the deadline, to the checked address."""
        assert delivery.id is not None
        timeout = self.settings.notifier_timeout_seconds
        try:
            async with asyncio.timeout(timeout + 1):
                target = await address.resolve(notifier.url, self.networks(), timeout)
                body, headers = payloads.request(
                    NotifierKind(notifier.kind),
                    delivery.message,
                    notifier.secret,
                    clock.now(),
                    delivery.id,
                )
                headers["Host"] = target.host_header
                extensions = {"sni_hostname": target.sni} if target.sni else None
                response = await self.http.post(
                    target.url, content=body, headers=headers, extensions=extensions
                )
                await response.aclose()
                return response.status_code, None
        except address.AddressError as exc:
            return None, f"refused: {exc}"
        except TimeoutError:
            return None, f"timed out after {timeout:g}s"
        except (httpx.HTTPError, OSError) as exc:
            return None, clean_error(exc)

    async def attempt(self, delivery_id: int) -> Delivery | None:
        """Send one claimed delivery and record the result (if we still hold its lease)."""
        async with self.state.db.sessions() as session:
            delivery = await session.get(Delivery, delivery_id)
            notifier = await session.get(Notifier, delivery.notifier_id) if delivery else None
            await session.commit()
        if delivery is None or notifier is None or delivery.lease_owner != self.me:
            return None
        started = time.monotonic()
        async with self._slots:
            code, error = await self._send(notifier, delivery)
        ms = int((time.monotonic() - started) * 1000)
        now = clock.now()
        entry = {"at": now.isoformat(), "status_code": code, "error": error, "ms": ms}
        values: dict[str, Any] = {
            "last_status_code": code,
            "last_error": error if error else (None if code and code < 300 else f"HTTP {code}"),
            "log": [*delivery.log, entry][-LOG_KEEP:],
            "lease_owner": None,
            "lease_expires_at": None,
        }
        refused = error is not None and error.startswith("refused:")
        if code is not None and 200 <= code < 300:
            values |= {"status": DeliveryStatus.delivered.value, "delivered_at": now}
            values["next_attempt_at"] = None
        elif (
            refused
            or (code is not None and code < 500 and code not in RETRY_CODES)
            or delivery.attempts >= self.settings.notifier_max_attempts
        ):
            values |= {"status": DeliveryStatus.failed.value, "next_attempt_at": None}
        else:
            wait = backoff(
                delivery.attempts,
                self.settings.notifier_backoff_seconds,
                self.settings.notifier_backoff_max_seconds,
            )
            values |= {
                "status": DeliveryStatus.pending.value,
                "next_attempt_at": now + timedelta(seconds=wait),
            }
        async with self.state.db.sessions() as session:
            result = await session.exec(
                update(Delivery)
                .where(col(Delivery.id) == delivery_id)
                .where(col(Delivery.lease_owner) == self.me)
                .where(col(Delivery.attempts) == delivery.attempts)
                .values(**values)
            )
            await session.commit()
            if result.rowcount != 1:  # our lease lapsed and another took the row over
                return None
            fresh = await session.get(Delivery, delivery_id)
            if fresh is not None:
                await session.refresh(fresh)
            await session.commit()
        log.info(
            "notifier %s delivery %s: %s (attempt %d)",
            notifier.id,
            delivery_id,
            values["status"],
            delivery.attempts,
        )
        return fresh

    async def deliver_due(self) -> int:
        """Claim what is due and send it (bounded concurrency); how many were tried."""
        claimed = await self.claim()
        if claimed:
            await asyncio.gather(*(self.attempt(i) for i in claimed), return_exceptions=True)
        return len(claimed)

    async def test(self, notifier: Notifier) -> Delivery | None:
        """Queue a `notifier.test` delivery and try it at once (retried later like any other)."""
        assert notifier.id is not None
        now = clock.now()
        event = {
            "id": 0,
            "created_at": now.isoformat(),
            "type": "notifier.test",
            "run_id": None,
            "host_id": None,
            "data": {"notifier": notifier.name},
        }
        msg = payloads.message(event, {})
        msg["text"] = f"dockfleet: test notification from notifier {notifier.name}"
        delivery = Delivery(
            notifier_id=notifier.id, event_type="notifier.test", message=msg, next_attempt_at=now
        )
        async with self.state.db.sessions() as session:
            session.add(delivery)
            await session.commit()
            await session.refresh(delivery)
        assert delivery.id is not None
        if not notifier.enabled:
            return delivery
        claimed = await self.claim(limit=1, only=delivery.id)
        if not claimed:
            return delivery
        return await self.attempt(delivery.id) or delivery

    # -- loops ---------------------------------------------------------------------------------

    async def seconds_to_next(self) -> float:
        """Until the soonest pending delivery is due (the poll interval at most)."""
        poll = self.settings.notifier_poll_seconds
        async with self.state.db.sessions() as session:
            soonest = (
                await session.exec(
                    select(func.min(Delivery.next_attempt_at)).where(
                        col(Delivery.status) == DeliveryStatus.pending.value
                    )
                )
            ).one()
        if soonest is None:
            return poll
        if isinstance(soonest, datetime) and soonest.tzinfo is None:
            soonest = soonest.replace(tzinfo=UTC)
        return max(0.0, min(poll, (soonest - clock.now()).total_seconds()))

    async def _delivering(self) -> None:
        while not self._stopping:
            delay = self.settings.notifier_poll_seconds
            try:
                if await self.deliver_due() >= CLAIM:
                    continue
                delay = await self.seconds_to_next()
            except Exception:
                logs.pass_failed(log, "notification delivery pass failed")
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that
            # arrives as the event is set, and the loop would outlive stop().
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.05, delay)):
                    await self._wake.wait()
            self._wake.clear()

    async def _feeding(self) -> None:
        while not self._stopping:  # (BUS.wait may swallow a cancel: the flag ends the loop)
            handled = 0
            try:
                handled = await self.feed.step()
            except Exception:
                logs.pass_failed(log, "notification feed pass failed")
            if self.feed.queued:
                self.wake()
            if handled >= BATCH:
                continue
            # Woken at once by an event committed here (other replicas' within the poll), then
            # a short pause: the events of one state change come in a burst, read them at once.
            if await events.BUS.wait(self.settings.notifier_poll_seconds):
                await asyncio.sleep(FEED_DEBOUNCE)

    def start(self) -> None:
        """Start the feed and the delivery loops."""
        if not self._tasks:
            self._stopping = False
            loop = asyncio.get_running_loop()
            self._tasks = [
                loop.create_task(self._feeding(), name="notifier-feed"),
                loop.create_task(self._delivering(), name="notifier-delivery"),
            ]

    async def stop(self) -> None:
        """Stop the loops (a delivery in flight is tried again once its lease lapses)."""
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self.http.aclose()
