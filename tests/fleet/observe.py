"""Observers from the daemons' own view (their /events and `docker ps`), never dockfleet's DB.

Replays of a daemon's /events (strict: `EventsLost` when the replay cannot be complete):

    n = await peak_from_events(daemon, since, until, "dockfleet.managed=true")
    spans = await intervals_from_events(daemon, since, until, "dockfleet.managed=true")
    per = await creates_per_attempt(daemon, since, "dockfleet.managed=true")  # {(run, task, n): k}

dockerd keeps only its last 256 events, in memory: a replay loses events once more than 256 (of
any kind) happened after `since`, and all of them when dockerd restarted after `since`. For
windows with many containers or a dockerd kill, record live instead:

    async with EventLog([fleet.fault], "dockfleet.managed=true") as log:
        ...                                   # follows /events, reconnects after a restart
    log.peak(fleet.fault), log.intervals(fleet.fault), log.creates_per_attempt(fleet.fault)

and poll `docker ps` for what events cannot say (GPU device ids of running containers):

    async with Sampler([fleet.fault], "dockfleet.managed=true") as sampler:
        ...
    sampler[fleet.fault].peak, sampler[fleet.fault].overlaps   # overlaps: same GPU id, same time

A container's interval runs from its `start` event to its `die` event (`kill` is only a signal
being sent, `oom` is always followed by `die`), or to its `destroy` if no `die` came. A container
that exits while its dockerd is dead gets NO `die` event: the restarted dockerd just marks it
exited. `EventLog` therefore ends such intervals itself on exit, at the container's
State.FinishedAt (the event it adds carries `"dfl.synthetic": true`).

Every Docker call of these observers goes to the daemon's unix socket (unaffected by link
faults) and has a timeout (a frozen dockerd never hangs them). Event times are dockerd's: an
exit during a freeze is reported (and dated) after the thaw.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import aiodocker
import aiohttp

from .aio import docker_for
from .daemons import Daemon

EVENTS_LIMIT = 256  # moby daemon/events: eventsLimit, the replay buffer
ATTEMPT_LABELS = ("dockfleet.run_id", "dockfleet.task_id", "dockfleet.attempt")
_ACTIONS = ("create", "start", "die", "destroy")
_STREAM = aiohttp.ClientTimeout()  # no timeout for the /events stream itself


class EventsLost(RuntimeError):
    """A replay of /events cannot be complete (buffer overflow or dockerd restart)."""


@dataclass(frozen=True)
class Interval:
    """One stretch a container ran: from its `start` event to its `die` (epoch seconds).

    start None: it was already running before the window; end None: still running at its end.
    """

    id: str
    start: float | None
    end: float | None
    exit_code: int | None = None
    labels: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    def overlaps(self, other: Interval) -> bool:
        lo = max(self.start or float("-inf"), other.start or float("-inf"))
        hi = min(self.end or float("inf"), other.end or float("inf"))
        return lo < hi


@dataclass(frozen=True)
class GpuOverlap:
    """Two containers holding the same GPU device id at the same time."""

    device: str
    containers: tuple[str, str]
    at: float  # when it was seen (Sampler) or when the overlap began (from intervals)


# --- pure computations over events ----------------------------------------------------------


def _when(event: dict[str, Any]) -> float:
    nano = event.get("timeNano")
    return nano / 1e9 if nano else float(event.get("time", 0))


def _attributes(event: dict[str, Any]) -> dict[str, str]:
    attrs: dict[str, str] = (event.get("Actor") or {}).get("Attributes") or {}
    return attrs


def intervals_of(events: Iterable[dict[str, Any]]) -> list[Interval]:
    """Running intervals from container `start`/`die` events (any order; other actions ignored)."""
    ordered = sorted(
        (e for e in events if e.get("Type", "container") == "container"),
        key=lambda e: (_when(e), e.get("Action") != "die"),
    )
    open_: dict[str, tuple[float | None, dict[str, str]]] = {}
    out: list[Interval] = []
    for event in ordered:
        cid, action, attrs = event.get("id", ""), event.get("Action"), _attributes(event)
        if action == "start" and cid not in open_:
            open_[cid] = (_when(event), attrs)
        elif action == "die":
            start, _ = open_.pop(cid, (None, attrs))  # no start seen: it ran before the window
            code = attrs.get("exitCode")
            out.append(Interval(cid, start, _when(event), int(code) if code else None, attrs))
        elif action == "destroy" and cid in open_:  # removed without a die we saw
            start, attrs = open_.pop(cid)
            out.append(Interval(cid, start, _when(event), None, attrs))
    out += [Interval(cid, start, None, None, attrs) for cid, (start, attrs) in open_.items()]
    return sorted(out, key=lambda i: (i.start or float("-inf"), i.id))


def peak_of(intervals: Iterable[Interval]) -> int:
    """Maximum number of intervals open at one time (an end and a start at one instant: 1)."""
    points = []
    for i in intervals:
        points.append((i.start if i.start is not None else float("-inf"), 1))
        points.append((i.end if i.end is not None else float("inf"), -1))
    peak = running = 0
    for _t, delta in sorted(points):  # -1 sorts before +1 at equal times
        running += delta
        peak = max(peak, running)
    return peak


def creates_of(events: Iterable[dict[str, Any]]) -> dict[tuple[str | None, ...], int]:
    """`create` events per (dockfleet.run_id, dockfleet.task_id, dockfleet.attempt) label triple."""
    counts: Counter[tuple[str | None, ...]] = Counter()
    for event in events:
        if event.get("Action") == "create":
            attrs = _attributes(event)
            counts[tuple(attrs.get(k) for k in ATTEMPT_LABELS)] += 1
    return dict(counts)


def gpu_overlaps(
    intervals: Iterable[Interval], devices: dict[str, Sequence[str]]
) -> list[GpuOverlap]:
    """Exact overlaps: pairs of intervals that overlap in time and share a device id.

    `devices`: container id -> GPU device ids (e.g. from `Sampler[daemon].devices()`).
    """
    spans = [i for i in intervals if devices.get(i.id)]
    out = []
    for n, a in enumerate(spans):
        for b in spans[n + 1 :]:
            if a.id == b.id or not a.overlaps(b):
                continue
            for device in sorted(set(devices[a.id]) & set(devices[b.id])):
                at = max(a.start or float("-inf"), b.start or float("-inf"))
                out.append(GpuOverlap(device, (a.id, b.id), at))
    return out


# --- replays --------------------------------------------------------------------------------


def _filters(labels: Sequence[str], actions: Sequence[str] | None) -> str:
    filters: dict[str, list[str]] = {"type": ["container"]}
    if labels:
        filters["label"] = list(labels)
    if actions:
        filters["event"] = list(actions)
    return json.dumps(filters)


async def _replay(
    docker: aiodocker.Docker, since: float, until: float, filters: str | None
) -> list[dict[str, Any]]:
    params = {"since": f"{since:.9f}", "until": f"{until:.9f}"}
    if filters:
        params["filters"] = filters
    async with docker._query("events", params=params) as resp:
        text = await resp.text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


async def container_events(
    daemon: Daemon,
    since: float,
    until: float | None = None,
    *labels: str,
    actions: Sequence[str] | None = _ACTIONS,
    within: float = 10.0,
) -> list[dict[str, Any]]:
    """Container events in [since, until] (epoch s; default until: now) carrying all `labels`.

    Raises EventsLost when dockerd restarted after `since` or more than 256 events happened
    since then (the replay buffer may have dropped some): use an `EventLog` there.
    """
    if daemon.started_at > since:
        raise EventsLost(f"dockerd {daemon.name} (re)started after `since`: use EventLog")
    end = time.time() + 0.05 if until is None else until
    async with asyncio.timeout(within), docker_for(daemon) as docker:
        everything = await _replay(docker, since, time.time() + 0.05, None)
        if len(everything) >= EVENTS_LIMIT:
            raise EventsLost(
                f"{len(everything)} events on {daemon.name} since `since`: the replay buffer "
                f"holds {EVENTS_LIMIT}, use EventLog"
            )
        return await _replay(docker, since, end, _filters(labels, actions))


async def intervals_from_events(
    daemon: Daemon, since: float, until: float | None, *labels: str
) -> list[Interval]:
    """(container id, start, end) of every run of a labelled container in [since, until]."""
    return intervals_of(await container_events(daemon, since, until, *labels))


async def peak_from_events(daemon: Daemon, since: float, until: float | None, *labels: str) -> int:
    """Most labelled containers running at once in [since, until], from the daemon's events."""
    return peak_of(await intervals_from_events(daemon, since, until, *labels))


async def creates_per_attempt(
    daemon: Daemon, since: float, *labels: str, until: float | None = None
) -> dict[tuple[str | None, ...], int]:
    """How many containers were created per (run_id, task_id, attempt) label triple."""
    return creates_of(await container_events(daemon, since, until, *labels, actions=("create",)))


# --- live event recording -------------------------------------------------------------------


class _Follow:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.events: list[dict[str, Any]] = []
        self.keys: set[tuple[Any, ...]] = set()
        self.last = 0.0  # time of the newest event (replay cursor after a reconnect)
        self.connects = 0
        self.errors: list[str] = []  # the last reasons the stream broke (debugging)
        self.subscribed = asyncio.Event()

    def add(self, event: dict[str, Any]) -> None:
        key = (event.get("id"), event.get("Action"), event.get("timeNano"))
        if key not in self.keys:
            self.keys.add(key)
            self.events.append(event)
            self.last = max(self.last, _when(event))


class EventLog:
    """Live recorder of container events (filtered by labels) on several daemons, for a block.

    Subscribes on entry (replaying from the entry time, so nothing is missed), reconnects while
    dockerd is dead or frozen (each connect attempt bounded by `call_timeout`), and catches up
    with one final replay on exit. Results: `events/intervals/peak/creates_per_attempt(daemon)`.
    """

    def __init__(
        self,
        daemons: Iterable[Daemon],
        *labels: str,
        call_timeout: float = 2.0,
        retry: float = 0.1,
    ) -> None:
        self.labels = labels
        self.call_timeout = call_timeout
        self.retry = retry
        self._follows = {d.name: _Follow(d) for d in daemons}
        self._tasks: list[asyncio.Task[None]] = []
        self._since = 0.0

    async def __aenter__(self) -> EventLog:
        self._since = time.time()
        for follow in self._follows.values():
            follow.last = self._since
            self._tasks.append(asyncio.create_task(self._run(follow)))
        waits = [f.subscribed.wait() for f in self._follows.values()]
        with contextlib.suppress(TimeoutError):  # a dead/frozen daemon: recorded when back
            async with asyncio.timeout(self.call_timeout):
                await asyncio.gather(*waits)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(self._catch_up(f) for f in self._follows.values()))
        await asyncio.gather(*(self._close_silent_exits(f) for f in self._follows.values()))

    async def _run(self, follow: _Follow) -> None:
        params = {"since": "", "filters": _filters(self.labels, None)}
        while True:
            try:
                async with docker_for(follow.daemon) as docker:
                    params["since"] = f"{follow.last:.9f}"
                    async with asyncio.timeout(self.call_timeout):
                        resp = await docker._do_query(
                            "events", "GET", params=params, timeout=_STREAM
                        )
                    try:  # aiodocker leaves closing a streamed response to us
                        follow.connects += 1
                        follow.subscribed.set()
                        async for line in resp.content:
                            if line.strip():
                                follow.add(json.loads(line))
                    finally:
                        resp.close()
            except Exception as exc:  # dockerd gone, frozen or restarting: try again
                follow.errors.append(f"{time.time():.3f} {exc!r}")
                del follow.errors[:-20]
            await asyncio.sleep(self.retry)

    async def _catch_up(self, follow: _Follow) -> None:
        with contextlib.suppress(OSError, TimeoutError, aiohttp.ClientError, aiodocker.DockerError):
            async with asyncio.timeout(self.call_timeout), docker_for(follow.daemon) as docker:
                filters = _filters(self.labels, None)
                for event in await _replay(docker, follow.last, time.time() + 0.05, filters):
                    follow.add(event)

    async def _close_silent_exits(self, follow: _Follow) -> None:
        """Add a `die` for intervals still open whose container is not running any more."""
        open_ids = [i.id for i in intervals_of(follow.events) if i.end is None]
        if not open_ids:
            return
        with contextlib.suppress(OSError, TimeoutError, aiohttp.ClientError, aiodocker.DockerError):
            async with asyncio.timeout(self.call_timeout * 2), docker_for(follow.daemon) as docker:
                for cid in open_ids:
                    try:
                        state = (await docker._query_json(f"containers/{cid}/json"))["State"]
                    except aiodocker.DockerError:
                        continue  # removed: its destroy event ended the interval
                    if state.get("Running"):
                        continue
                    follow.add(_synthetic_die(cid, state))

    def _follow(self, daemon: Daemon | str) -> _Follow:
        return self._follows[daemon if isinstance(daemon, str) else daemon.name]

    def events(self, daemon: Daemon | str) -> list[dict[str, Any]]:
        return sorted(self._follow(daemon).events, key=_when)

    def connects(self, daemon: Daemon | str) -> int:
        """How often the stream was (re)established (> 1: it dropped, e.g. a dockerd kill)."""
        return self._follow(daemon).connects

    def intervals(self, daemon: Daemon | str) -> list[Interval]:
        return intervals_of(self.events(daemon))

    def peak(self, daemon: Daemon | str) -> int:
        return peak_of(self.intervals(daemon))

    def creates_per_attempt(self, daemon: Daemon | str) -> dict[tuple[str | None, ...], int]:
        return creates_of(self.events(daemon))


def _synthetic_die(cid: str, state: dict[str, Any]) -> dict[str, Any]:
    """A `die` event for a container that exited unreported, dated at its State.FinishedAt."""
    finished = _parse_time(state.get("FinishedAt") or "") or time.time()
    attrs = {"exitCode": str(state.get("ExitCode", "")), "dfl.synthetic": "true"}
    return {
        "Type": "container",
        "Action": "die",
        "id": cid,
        "Actor": {"ID": cid, "Attributes": attrs},
        "time": int(finished),
        "timeNano": int(finished * 1e9),
        "dfl.synthetic": True,
    }


def _parse_time(text: str) -> float | None:
    """Docker's RFC 3339 time with nanoseconds -> epoch seconds (None for zero/unknown)."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z", text)
    if not m or text.startswith("0001-"):
        return None
    whole = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    return whole.timestamp() + float(f"0.{m.group(2) or 0}")


# --- docker ps sampling ---------------------------------------------------------------------


@dataclass
class Seen:
    """One container the sampler saw running."""

    id: str
    labels: dict[str, str]
    first_seen: float
    last_seen: float
    device_ids: tuple[str, ...] | None = None  # None: not inspected (yet)


@dataclass
class Samples:
    """What the sampler saw on one daemon."""

    peak: int = 0
    peak_at: float | None = None
    polls: int = 0  # successful `docker ps` calls
    failures: int = 0  # calls that failed or timed out (dead or frozen daemon)
    seen: dict[str, Seen] = field(default_factory=dict)
    overlaps: list[GpuOverlap] = field(default_factory=list)  # one per sample and device

    def devices(self) -> dict[str, tuple[str, ...]]:
        """container id -> GPU device ids, for the inspected containers."""
        return {cid: s.device_ids for cid, s in self.seen.items() if s.device_ids is not None}

    @property
    def uninspected(self) -> list[str]:
        """Containers seen running whose device ids are unknown (gone before the inspect)."""
        return [cid for cid, s in self.seen.items() if s.device_ids is None]


def device_ids(inspect: dict[str, Any]) -> tuple[str, ...]:
    """GPU device ids a container asked for (HostConfig.DeviceRequests[].DeviceIDs)."""
    requests = (inspect.get("HostConfig") or {}).get("DeviceRequests") or []
    return tuple(str(i) for r in requests for i in (r.get("DeviceIDs") or []))


class Sampler:
    """Polls running labelled containers (containers/json) on several daemons every `interval`.

    Per daemon: the peak running count, every container seen (inspected once for its GPU device
    ids and labels) and every sample in which two running containers held the same device id.
    Each Docker call is bounded by `call_timeout`; a failed poll only counts in `failures`.
    """

    def __init__(
        self,
        daemons: Iterable[Daemon],
        *labels: str,
        interval: float = 0.05,
        call_timeout: float = 1.0,
    ) -> None:
        self.labels = labels
        self.interval = interval
        self.call_timeout = call_timeout
        self._daemons = {d.name: d for d in daemons}
        self.results = {name: Samples() for name in self._daemons}
        self._tasks: list[asyncio.Task[None]] = []
        self._first: dict[str, asyncio.Event] = {}

    def __getitem__(self, daemon: Daemon | str) -> Samples:
        return self.results[daemon if isinstance(daemon, str) else daemon.name]

    async def __aenter__(self) -> Sampler:
        for name, daemon in self._daemons.items():
            self._first[name] = asyncio.Event()
            self._tasks.append(asyncio.create_task(self._run(daemon)))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.call_timeout * 2):
                await asyncio.gather(*(e.wait() for e in self._first.values()))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for task in self._tasks:
            task.cancel()
        results = await asyncio.gather(*self._tasks, return_exceptions=True)
        errors = [r for r in results if not isinstance(r, asyncio.CancelledError | type(None))]
        if errors and exc_type is None:
            raise RuntimeError(f"sampler failed: {errors!r}")

    async def _run(self, daemon: Daemon) -> None:
        result = self.results[daemon.name]
        params = {"filters": json.dumps({"label": list(self.labels), "status": ["running"]})}
        async with docker_for(daemon) as docker:
            while True:
                t0 = time.monotonic()
                try:
                    async with asyncio.timeout(self.call_timeout):
                        running = await docker._query_json("containers/json", params=params)
                except (OSError, TimeoutError, aiohttp.ClientError, aiodocker.DockerError):
                    result.failures += 1
                else:
                    await self._record(docker, result, running, time.time())
                self._first[daemon.name].set()
                await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - t0)))

    async def _record(
        self,
        docker: aiodocker.Docker,
        result: Samples,
        running: list[dict[str, Any]],
        now: float,
    ) -> None:
        result.polls += 1
        if len(running) > result.peak:
            result.peak, result.peak_at = len(running), now
        for item in running:
            cid = item["Id"]
            seen = result.seen.get(cid)
            if seen is None:
                seen = result.seen[cid] = Seen(cid, dict(item.get("Labels") or {}), now, now)
            seen.last_seen = now
            if seen.device_ids is None:
                try:
                    async with asyncio.timeout(self.call_timeout):
                        info = await docker._query_json(f"containers/{cid}/json")
                except (OSError, TimeoutError, aiohttp.ClientError, aiodocker.DockerError):
                    continue  # gone already, or the daemon is stuck: retried next poll
                seen.device_ids = device_ids(info)
                seen.labels = dict((info.get("Config") or {}).get("Labels") or {})
        holders: dict[str, list[str]] = {}
        for item in running:
            for device in result.seen[item["Id"]].device_ids or ():
                holders.setdefault(device, []).append(item["Id"])
        for device, ids in sorted(holders.items()):
            if len(ids) > 1:
                result.overlaps.append(GpuOverlap(device, (ids[0], ids[1]), now))
