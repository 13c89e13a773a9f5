"""AsyncDockfleetClient: the asyncio client (httpx.AsyncClient), same methods as the sync one."""

from __future__ import annotations

import asyncio
import builtins
import functools
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, TypeVar

import httpx

from app.client._core import (
    DEFAULT_TIMEOUT,
    Call,
    DockfleetError,
    Page,
    RunWaitTimeout,
    Waiter,
    auth_headers,
    error_from,
    resolve_url,
    transport_error,
)
from app.client._sse import (
    EVENTS,
    KEEPALIVE,
    OPEN,
    READ_TIMEOUT,
    RECONNECT_SECONDS,
    Decoder,
    Resume,
    retryable,
    stream_params,
)
from app.client.calls import (
    DirectiveCalls,
    EventCalls,
    GpuCalls,
    HostCalls,
    NotifierCalls,
    RunCalls,
    ScheduleCalls,
    TaskCalls,
)
from app.directives.schemas import DirectiveRead
from app.events.schemas import EventPage, EventRead
from app.hosts.schemas import HostRead
from app.notifiers.schemas import DeliveryRead, NotifierRead
from app.runs.schemas import RunRead
from app.schedules.schemas import ScheduleRead
from app.tasks.schemas import TaskRead

P = ParamSpec("P")
T = TypeVar("T")
ItemT = TypeVar("ItemT")


class _Room:
    def __init__(self, client: AsyncDockfleetClient) -> None:
        self._client = client


async def _only_events(stream: AsyncIterator[EventRead | object]) -> AsyncIterator[EventRead]:
    async for item in stream:
        if isinstance(item, EventRead):
            yield item


def _bind(
    build: Callable[P, Call[T]],
) -> Callable[Concatenate[_Room, P], Coroutine[Any, Any, T]]:
    """A coroutine method that sends the call `build` makes and returns what its answer reads as."""

    @functools.wraps(build)
    async def method(self: _Room, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._client.send(build(*args, **kwargs))

    return method


class Hosts(_Room):
    """client.hosts: worker hosts."""

    get = _bind(HostCalls.get)
    get_by_name = _bind(HostCalls.by_name)
    create = _bind(HostCalls.create)
    update = _bind(HostCalls.update)
    delete = _bind(HostCalls.delete)
    health = _bind(HostCalls.health)
    drain = _bind(HostCalls.drain)
    undrain = _bind(HostCalls.undrain)
    accept_host_key = _bind(HostCalls.accept_host_key)
    doctor = _bind(HostCalls.doctor)
    list = _bind(HostCalls.list)

    def iter(
        self,
        *,
        enabled: bool | None = None,
        healthy: bool | None = None,
        page_size: int | None = None,
    ) -> AsyncIterator[HostRead]:
        """Every host, page after page."""
        call = HostCalls.list(enabled=enabled, healthy=healthy, limit=page_size)
        return self._client.pages(call)


class Gpus(_Room):
    """client.gpus: each host's GPUs as probes found them."""

    get = _bind(GpuCalls.get)
    probe = _bind(GpuCalls.probe)


class Directives(_Room):
    """client.directives: named defaults runs are launched from."""

    get = _bind(DirectiveCalls.get)
    get_by_name = _bind(DirectiveCalls.by_name)
    create = _bind(DirectiveCalls.create)
    update = _bind(DirectiveCalls.update)
    delete = _bind(DirectiveCalls.delete)
    list = _bind(DirectiveCalls.list)

    def iter(self, *, page_size: int | None = None) -> AsyncIterator[DirectiveRead]:
        """Every directive, page after page."""
        return self._client.pages(DirectiveCalls.list(limit=page_size))


class Tasks(_Room):
    """client.tasks: task definitions, by id or name."""

    get = _bind(TaskCalls.get)
    create = _bind(TaskCalls.create)
    update = _bind(TaskCalls.update)
    delete = _bind(TaskCalls.delete)
    list = _bind(TaskCalls.list)

    def iter(
        self, *, enabled: bool | None = None, page_size: int | None = None
    ) -> AsyncIterator[TaskRead]:
        """Every task definition, page after page."""
        return self._client.pages(TaskCalls.list(enabled=enabled, limit=page_size))


class Runs(_Room):
    """client.runs: launch, list, show, cancel, logs, wait."""

    launch = _bind(RunCalls.launch)
    get = _bind(RunCalls.get)
    cancel = _bind(RunCalls.cancel)
    logs = _bind(RunCalls.logs)
    list = _bind(RunCalls.list)

    def iter(self, *, page_size: int | None = None, **filters: Any) -> AsyncIterator[RunRead]:
        """Every run matching the filters of `list` (status, worker_host_id, directive_id)."""
        return self._client.pages(RunCalls.list(limit=page_size, **filters))

    def follow_logs(self, run_id: int) -> AsyncIterator[str]:
        """Text chunks of the run's output as it is written, until the run ends."""
        return self._client.stream_text(RunCalls.follow_logs(run_id))

    async def wait_for_run(
        self,
        run_id: int,
        timeout: float | None = None,  # noqa: ASYNC109 - RunWaitTimeout keeps the run
        *,
        interval: float = 1.0,
        on_update: Callable[[RunRead], object] | None = None,
    ) -> RunRead:
        """Until the run is succeeded, failed or cancelled; RunWaitTimeout after `timeout`.

        Woken by the run's events (GET /api/events/?run_id=); a server without the event
        stream is polled every `interval` seconds instead."""
        seen: builtins.list[RunRead] = []
        try:
            async with asyncio.timeout(timeout):
                return await self._watch(run_id, interval, on_update, seen)
        except TimeoutError as exc:
            if isinstance(exc, DockfleetError):
                raise
            assert timeout is not None
            raise RunWaitTimeout(seen[-1] if seen else await self.get(run_id), timeout) from None

    async def _watch(
        self,
        run_id: int,
        interval: float,
        on_update: Callable[[RunRead], object] | None,
        seen: builtins.list[RunRead],
    ) -> RunRead:
        stream = self._client.event_stream(stream_params("run.*", run_id, None, None), Resume(None))
        try:
            async for item in stream:
                if item is KEEPALIVE:
                    continue
                run = await self.get(run_id)  # subscribed (or an event came): read it now
                seen.append(run)
                if on_update is not None:
                    on_update(run)
                if Waiter.done(run):
                    return run
        except DockfleetError as exc:
            if exc.status != 404:
                raise
        finally:
            await stream.aclose()
        return await self._poll(run_id, interval, on_update, seen)

    async def _poll(
        self,
        run_id: int,
        interval: float,
        on_update: Callable[[RunRead], object] | None,
        seen: builtins.list[RunRead],
    ) -> RunRead:
        """For a server without /api/events/."""
        while True:
            run = await self.get(run_id)
            seen.append(run)
            if on_update is not None:
                on_update(run)
            if Waiter.done(run):
                return run
            await asyncio.sleep(interval)


class Schedules(_Room):
    """client.schedules: cron schedules that launch runs, their fires, run-now."""

    get = _bind(ScheduleCalls.get)
    create = _bind(ScheduleCalls.create)
    update = _bind(ScheduleCalls.update)
    delete = _bind(ScheduleCalls.delete)
    run_now = _bind(ScheduleCalls.run_now)
    fires = _bind(ScheduleCalls.fires)
    list = _bind(ScheduleCalls.list)

    def iter(
        self, *, enabled: bool | None = None, page_size: int | None = None
    ) -> AsyncIterator[ScheduleRead]:
        """Every schedule, page after page."""
        return self._client.pages(ScheduleCalls.list(enabled=enabled, limit=page_size))


class Notifiers(_Room):
    """client.notifiers: webhook, ntfy, Discord and Slack targets, their deliveries, a test."""

    get = _bind(NotifierCalls.get)
    create = _bind(NotifierCalls.create)
    update = _bind(NotifierCalls.update)
    delete = _bind(NotifierCalls.delete)
    test = _bind(NotifierCalls.test)
    deliveries = _bind(NotifierCalls.deliveries)
    list = _bind(NotifierCalls.list)

    def iter(self, *, page_size: int | None = None) -> AsyncIterator[NotifierRead]:
        """Every notifier, page after page."""
        return self._client.pages(NotifierCalls.list(limit=page_size))

    def iter_deliveries(
        self, key: int | str, *, status: str | None = None, page_size: int | None = None
    ) -> AsyncIterator[DeliveryRead]:
        """Every delivery of a notifier, newest first."""
        return self._client.pages(NotifierCalls.deliveries(key, status=status, limit=page_size))


class AsyncDockfleetClient:
    """Asyncio client: `async with AsyncDockfleetClient() as fleet: await fleet.hosts.list()`.

    Same arguments, methods and errors as DockfleetClient; iterators are async iterators.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.url = resolve_url(url)
        self.timeout = timeout
        self._http = http or httpx.AsyncClient(
            base_url=self.url, headers=auth_headers(token), timeout=timeout
        )
        self.hosts = Hosts(self)
        self.gpus = Gpus(self)
        self.directives = Directives(self)
        self.tasks = Tasks(self)
        self.runs = Runs(self)
        self.schedules = Schedules(self)
        self.notifiers = Notifiers(self)

    async def __aenter__(self) -> AsyncDockfleetClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def send(self, call: Call[T]) -> T:
        """Send one call and read its answer."""
        try:
            response = await self._http.request(
                call.method, call.path, params=call.params, json=call.json
            )
        except httpx.TransportError as exc:
            raise transport_error(self.url, exc) from None
        return call.read(response)

    async def pages(self, call: Call[Page[ItemT]]) -> AsyncIterator[ItemT]:
        """The items of a list call, following `next` until the last page."""
        while True:
            page = await self.send(call)
            for item in page.results:
                yield item
            if not page.next:
                return
            call = call.follow(page.next)

    async def stream_text(self, call: Call[Any]) -> AsyncIterator[str]:
        """Text chunks of a streamed answer (no read timeout: it lasts as long as the run)."""
        timeout = httpx.Timeout(self.timeout, read=None)
        try:
            async with self._http.stream(
                call.method, call.path, params=call.params, timeout=timeout
            ) as response:
                if response.is_error:
                    await response.aread()
                    raise error_from(response)
                async for chunk in response.aiter_text():
                    yield chunk
        except httpx.TransportError as exc:
            raise transport_error(self.url, exc) from None

    def events(
        self,
        *,
        types: str | list[str] | None = None,
        run_id: int | None = None,
        host_id: int | None = None,
        after: int | None = None,
        reconnect_seconds: float = RECONNECT_SECONDS,
    ) -> AsyncIterator[EventRead]:
        """Host and run state changes as they happen (GET /api/events/), forever: reconnects
        with Last-Event-ID after a drop; DockfleetError once the server is away longer than
        `reconnect_seconds`. `after`: replay from this id (default: from now). A `stream.reset`
        event means events were missed (no longer kept): re-read the state."""
        params = stream_params(types, run_id, host_id, after)
        return _only_events(self.event_stream(params, Resume(after, reconnect_seconds)))

    async def recent_events(self, **filters: Any) -> EventPage:
        """A page of events after `after` (JSON; filters as `events`, and `limit`)."""
        return await self.send(EventCalls.recent(**filters))

    async def event_stream(
        self, params: dict[str, Any], resume: Resume
    ) -> AsyncGenerator[EventRead | object, None]:
        """Events, KEEPALIVE for keep-alives and OPEN on each connection, reconnecting."""
        timeout = httpx.Timeout(self.timeout, read=READ_TIMEOUT)
        while True:
            try:
                async with self._http.stream(
                    "GET", EVENTS, params=params, headers=resume.headers(), timeout=timeout
                ) as response:
                    if response.is_error:
                        await response.aread()
                        raise error_from(response)
                    resume.connected()
                    yield OPEN
                    decoder = Decoder()
                    async for line in response.aiter_lines():
                        item = decoder.line(line)
                        if isinstance(item, EventRead):
                            resume.seen(item)
                        if item is not None:
                            yield item
                error = DockfleetError(None, "the event stream ended")
            except httpx.TransportError as exc:
                error = transport_error(self.url, exc)
            except DockfleetError as exc:
                if not retryable(exc.status):
                    raise
                error = exc
            await asyncio.sleep(resume.retry_in(error))

    async def wait_for_run(
        self,
        run_id: int,
        timeout: float | None = None,  # noqa: ASYNC109 - see Runs.wait_for_run
        **kwargs: Any,
    ) -> RunRead:
        """Same as `client.runs.wait_for_run`."""
        return await self.runs.wait_for_run(run_id, timeout, **kwargs)

    def follow_logs(self, run_id: int) -> AsyncIterator[str]:
        """Same as `client.runs.follow_logs`."""
        return self.runs.follow_logs(run_id)
