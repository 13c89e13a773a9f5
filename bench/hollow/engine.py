"""The hollow engine's state: hosts, containers that "run" for a set time, and counters.

Nothing here does I/O; `bench/hollow/server.py` puts it behind the Engine API on unix sockets.
Everything runs on one event loop, so plain attributes need no locks.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import signal as _signal
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

API_VERSION = "1.41"
MIN_API_VERSION = "1.12"
ENGINE_VERSION = "20.10.99-hollow"
NEVER = "0001-01-01T00:00:00Z"
KEY_LABELS = ("dockfleet.instance", "dockfleet.run_id", "dockfleet.task_id", "dockfleet.attempt")
_NAME = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
_MAX_EXAMPLES = 20


class ApiError(Exception):
    """An Engine API error answer: HTTP status and Docker's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class NotModified(Exception):
    """304: start of a running container, stop of a stopped one."""


def rfc3339(ns: int) -> str:
    """Docker's timestamp format (RFC 3339 with nanoseconds, UTC)."""
    if not ns:
        return NEVER
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


def normalise_image(ref: str) -> str:
    """`busybox` → `busybox:latest`; `docker.io/library/x:1` → `x:1` (how Docker matches)."""
    for prefix in ("docker.io/library/", "index.docker.io/library/", "docker.io/"):
        if ref.startswith(prefix):
            ref = ref[len(prefix) :]
            break
    if "@" not in ref and ":" not in ref.rsplit("/", 1)[-1]:
        ref += ":latest"
    return ref


def image_id(ref: str) -> str:
    """A stable fake image id for a (normalised) reference."""
    return "sha256:" + hashlib.sha256(normalise_image(ref).encode()).hexdigest()


def signal_number(value: str | None, default: int) -> int:
    """`SIGKILL`, `KILL`, `9` → 9 (Docker accepts all three forms)."""
    if not value:
        return default
    if value.isdigit():
        return int(value)
    name = value.upper()
    name = name if name.startswith("SIG") else "SIG" + name
    try:
        return int(_signal.Signals[name])
    except KeyError as exc:
        raise ApiError(400, f"Invalid signal: {value}") from exc


def _env_dict(env: Iterable[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in env or []:
        key, _, value = str(item).partition("=")
        out[key] = value
    return out


def _ago(ns: int) -> str:
    """Docker's humanised duration ("Less than a second", "2 seconds", "About a minute")."""
    secs = max(0.0, (time.time_ns() - ns) / 1e9)
    if secs < 1:
        return "Less than a second"
    if secs < 60:
        return f"{int(secs)} second{'s' if int(secs) != 1 else ''}"
    if secs < 120:
        return "About a minute"
    if secs < 3600:
        return f"{int(secs // 60)} minutes"
    if secs < 7200:
        return "About an hour"
    return f"{int(secs // 3600)} hours"


@dataclass
class Settings:
    """How the hollow daemons behave; changeable at run time through /_hollow/config."""

    latency_s: float = 0.002
    run_s: float = 0.2
    images: set[str] = field(default_factory=lambda: {"busybox:1.36", "busybox:latest"})
    pull: bool = True  # a missing image can be pulled (then it is present on that host)
    pull_s: float = 0.0
    ncpu: int = 4
    mem_total: int = 8 * 1024**3
    runtimes: list[str] = field(default_factory=lambda: ["runc"])

    def as_dict(self) -> dict[str, Any]:
        return {
            "latency_ms": self.latency_s * 1000,
            "run_ms": self.run_s * 1000,
            "images": sorted(self.images),
            "pull": self.pull,
            "pull_ms": self.pull_s * 1000,
            "ncpu": self.ncpu,
            "mem_total": self.mem_total,
            "runtimes": self.runtimes,
        }

    def update(self, values: dict[str, Any]) -> None:
        """Apply a /_hollow/config body (same keys as as_dict)."""
        for key, value in values.items():
            if key == "latency_ms":
                self.latency_s = float(value) / 1000
            elif key == "run_ms":
                self.run_s = float(value) / 1000
            elif key == "pull_ms":
                self.pull_s = float(value) / 1000
            elif key == "images":
                self.images = {normalise_image(str(i)) for i in value}
            elif key in ("pull", "ncpu", "mem_total", "runtimes"):
                setattr(self, key, value)
            else:
                raise ApiError(400, f"unknown setting {key!r}")


class Container:
    """One container: its config as given, its state, and the output it "printed"."""

    def __init__(self, host: Host, cid: str, name: str, body: dict[str, Any]) -> None:
        self.host = host
        self.id = cid
        self.name = name
        self.image = str(body.get("Image") or "")
        self.host_config: dict[str, Any] = dict(body.get("HostConfig") or {})
        config = {k: v for k, v in body.items() if k not in ("HostConfig", "NetworkingConfig")}
        self.config: dict[str, Any] = {
            "Hostname": cid[:12],
            "Domainname": "",
            "User": "",
            "AttachStdin": False,
            "AttachStdout": True,
            "AttachStderr": True,
            "Tty": False,
            "OpenStdin": False,
            "StdinOnce": False,
            "Env": [],
            "Cmd": None,
            "Image": self.image,
            "Volumes": None,
            "WorkingDir": "",
            "Entrypoint": None,
            "OnBuild": None,
            "Labels": {},
            **config,
        }
        self.labels: dict[str, str] = dict(self.config.get("Labels") or {})
        self.config["Labels"] = self.labels
        self.env = _env_dict(self.config.get("Env"))
        self.tty = bool(self.config.get("Tty"))
        key = tuple(self.labels.get(k) for k in KEY_LABELS)
        has_key = any(k is not None for k in key[1:])
        self.key: tuple[str | None, ...] | None = key if has_key else None
        self.created_ns = time.time_ns()
        self.status = "created"
        self.exit_code = 0
        self.error = ""
        self.pid = 0
        self.started_ns = 0
        self.finished_ns = 0
        self.exits = 0
        self.removed = False
        self.frames: list[tuple[int, int, bytes]] = []  # (stream 1|2, time ns, one line)
        self._timer: asyncio.TimerHandle | None = None
        self._ticker: asyncio.TimerHandle | None = None
        self._watchers: list[asyncio.Future[None]] = []

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def cmd(self) -> list[str]:
        entry = self.config.get("Entrypoint") or []
        cmd = self.config.get("Cmd") or ([] if entry else ["sh"])
        return [*([entry] if isinstance(entry, str) else entry), *cmd]

    def changed(self) -> asyncio.Future[None]:
        """A future resolved at the next change: new output, exit, removal."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._watchers.append(fut)
        return fut

    def notify(self) -> None:
        watchers, self._watchers = self._watchers, []
        for fut in watchers:
            if not fut.done():
                fut.set_result(None)

    def write(self, stream: int, text: str) -> None:
        """Append output, one frame per line (as Docker's log driver stores it)."""
        now = time.time_ns()
        for line in text.splitlines(keepends=True):
            self.frames.append((stream, now, line.encode()))
        self.notify()

    def cancel_timers(self) -> None:
        for handle in (self._timer, self._ticker):
            if handle is not None:
                handle.cancel()
        self._timer = self._ticker = None

    # -- the API's views -----------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "Status": self.status,
            "Running": self.running,
            "Paused": False,
            "Restarting": False,
            "OOMKilled": False,
            "Dead": False,
            "Pid": self.pid if self.running else 0,
            "ExitCode": self.exit_code,
            "Error": self.error,
            "StartedAt": rfc3339(self.started_ns),
            "FinishedAt": rfc3339(self.finished_ns),
        }

    def inspect(self) -> dict[str, Any]:
        cmd = self.cmd
        return {
            "Id": self.id,
            "Created": rfc3339(self.created_ns),
            "Path": cmd[0] if cmd else "",
            "Args": cmd[1:],
            "State": self.state(),
            "Image": image_id(self.image),
            "ResolvConfPath": "",
            "HostnamePath": "",
            "HostsPath": "",
            "LogPath": "",
            "Name": "/" + self.name,
            "RestartCount": 0,
            "Driver": "hollow",
            "Platform": "linux",
            "MountLabel": "",
            "ProcessLabel": "",
            "AppArmorProfile": "",
            "ExecIDs": None,
            "HostConfig": self.host_config,
            "GraphDriver": {"Data": None, "Name": "hollow"},
            "Mounts": [],
            "Config": self.config,
            "NetworkSettings": {"Networks": {}},
        }

    def summary(self) -> dict[str, Any]:
        if self.running:
            status = f"Up {_ago(self.started_ns)}"
        elif self.status == "exited":
            status = f"Exited ({self.exit_code}) {_ago(self.finished_ns)} ago"
        else:
            status = "Created"
        return {
            "Id": self.id,
            "Names": ["/" + self.name],
            "Image": self.image,
            "ImageID": image_id(self.image),
            "Command": " ".join(self.cmd),
            "Created": self.created_ns // 1_000_000_000,
            "Ports": [],
            "Labels": self.labels,
            "State": self.status,
            "Status": status,
            "HostConfig": {"NetworkMode": self.host_config.get("NetworkMode", "default")},
            "NetworkSettings": {"Networks": {}},
            "Mounts": [],
        }


_COUNTERS = ("creates", "starts", "duplicate_starts", "exits", "removes", "pulls", "requests")


class Host:
    """One simulated Docker daemon (one unix socket)."""

    def __init__(self, engine: Engine, index: int, name: str, path: str) -> None:
        self.engine = engine
        self.index = index
        self.name = name
        self.path = path
        self.containers: dict[str, Container] = {}
        self.names: dict[str, Container] = {}
        self.pulled: set[str] = set()
        self.subscribers: list[tuple[asyncio.Queue[dict[str, Any]], dict[str, list[str]]]] = []
        self.running = 0
        self.reset()

    def reset(self) -> None:
        """Zero the counters; peak running restarts from what runs now."""
        self.creates = self.starts = self.duplicate_starts = self.exits = 0
        self.removes = self.pulls = self.requests = self.start_failures = 0
        self.peak_running = self.running

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: getattr(self, k) for k in _COUNTERS}
        out.update(
            name=self.name,
            running=self.running,
            peak_running=self.peak_running,
            start_failures=self.start_failures,
            containers=len(self.containers),
        )
        return out

    # -- lookup --------------------------------------------------------------------------------

    def has_image(self, ref: str) -> bool:
        ref = normalise_image(ref)
        return ref in self.engine.settings.images or ref in self.pulled

    def images(self) -> list[str]:
        return sorted(self.engine.settings.images | self.pulled)

    def lookup(self, ref: str) -> Container:
        """By full id, then name, then unique id prefix (Docker's order)."""
        found = self.containers.get(ref) or self.names.get(ref.lstrip("/"))
        if found is not None:
            return found
        if ref and all(c in "0123456789abcdef" for c in ref):
            matches = [c for cid, c in self.containers.items() if cid.startswith(ref)]
            if len(matches) == 1:
                return matches[0]
            if matches:
                raise ApiError(404, f"multiple IDs found with provided prefix: {ref}")
        raise ApiError(404, f"No such container: {ref}")

    def list(
        self, all_: bool, filters: dict[str, list[str]], limit: int | None
    ) -> list[dict[str, Any]]:
        out = []
        for c in reversed(self.containers.values()):  # newest first, like Docker
            if (all_ or c.running or "status" in filters) and _matches(c, filters):
                out.append(c.summary())
                if limit is not None and len(out) >= limit:
                    break
        return out

    # -- lifecycle -----------------------------------------------------------------------------

    def create(self, name: str | None, body: dict[str, Any]) -> Container:
        image = str(body.get("Image") or "")
        if not image:
            raise ApiError(400, "Config cannot be empty in order to create a container")
        if name is not None:
            if not _NAME.match(name):
                raise ApiError(
                    400,
                    f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed",
                )
            name = name.lstrip("/")
            taken = self.names.get(name)
            if taken is not None:
                raise ApiError(
                    409,
                    f'Conflict. The container name "/{name}" is already in use by container '
                    f'"{taken.id}". You have to remove (or rename) that container to be able '
                    "to reuse that name.",
                )
        if not self.has_image(image):
            raise ApiError(404, f"No such image: {normalise_image(image)}")
        cid = os.urandom(32).hex()
        container = Container(self, cid, name or f"hollow_{cid[:10]}", body)
        self.containers[cid] = container
        self.names[container.name] = container
        self.creates += 1
        self.emit(container, "create")
        return container

    def start(self, c: Container) -> None:
        if c.running:
            raise NotModified
        failure = c.env.get("HOLLOW_START_FAIL")
        if failure:
            c.error, c.exit_code = failure, 128
            self.start_failures += 1
            raise ApiError(500, failure)
        self.starts += 1
        engine = self.engine
        if c.key is not None:
            first = engine.started.get(c.key)
            if first is None:
                engine.started[c.key] = self.name
            else:  # started before, here or on another host: the same (run, task, attempt) twice
                self.duplicate_starts += 1
                if len(engine.duplicates) < _MAX_EXAMPLES:
                    engine.duplicates.append(
                        {"host": self.name, "first_host": first, "labels": dict(c.labels)}
                    )
        engine.pids += 1
        c.status, c.pid, c.error, c.exit_code = "running", engine.pids, "", 0
        c.started_ns, c.finished_ns = time.time_ns(), 0
        self.running += 1
        self.peak_running = max(self.peak_running, self.running)
        loop = asyncio.get_running_loop()
        run_s = _ms(c.env.get("HOLLOW_RUN_MS"), engine.settings.run_s)
        code = int(c.env.get("HOLLOW_EXIT_CODE") or 0)
        c._timer = loop.call_later(run_s, self.exit, c, code)
        tick_s = _ms(c.env.get("HOLLOW_TICK_MS"), 0.0)
        if tick_s > 0:
            c._ticker = loop.call_later(tick_s, self._tick, c, tick_s, 1)
        out = c.env.get("HOLLOW_STDOUT")
        if out is None:
            out = f"hollow {self.name}: {c.name} running {' '.join(c.cmd)}\n"
        lines = int(c.env.get("HOLLOW_LOG_LINES") or 0)
        out += "".join(f"line {i}\n" for i in range(1, lines + 1))
        if out:
            c.write(1, out.replace("\\n", "\n"))
        err = c.env.get("HOLLOW_STDERR")
        if err:
            c.write(2, err.replace("\\n", "\n"))
        self.emit(c, "start")

    def _tick(self, c: Container, every: float, n: int) -> None:
        if c.running:
            c.write(1, f"tick {n}\n")
            c._ticker = asyncio.get_running_loop().call_later(every, self._tick, c, every, n + 1)

    def exit(self, c: Container, code: int) -> None:
        """The container's process ended with `code`."""
        if not c.running:
            return
        c.cancel_timers()
        c.status, c.exit_code, c.finished_ns = "exited", code, time.time_ns()
        c.exits += 1
        self.running -= 1
        self.exits += 1
        self.emit(c, "die", exitCode=str(code))
        c.notify()

    async def stop(self, c: Container, grace: float, signal: str | None) -> None:
        if not c.running:
            raise NotModified
        sig = signal_number(signal or c.config.get("StopSignal"), int(_signal.SIGTERM))
        self.emit(c, "kill", signal=str(sig))
        if sig == _signal.SIGKILL or not c.env.get("HOLLOW_IGNORE_SIGTERM"):
            self.exit(c, 128 + sig)
        else:
            try:
                async with asyncio.timeout(max(0.0, grace)):
                    while c.running:
                        await c.changed()
            except TimeoutError:
                self.emit(c, "kill", signal=str(int(_signal.SIGKILL)))
                self.exit(c, 128 + int(_signal.SIGKILL))
        self.emit(c, "stop")

    def kill(self, c: Container, signal: str | None) -> None:
        if not c.running:
            raise ApiError(409, f"Cannot kill container: {c.id}: Container {c.id} is not running")
        sig = signal_number(signal, int(_signal.SIGKILL))
        self.emit(c, "kill", signal=str(sig))
        if sig == _signal.SIGKILL or not c.env.get("HOLLOW_IGNORE_SIGTERM"):
            self.exit(c, 128 + sig)

    def remove(self, c: Container, force: bool) -> None:
        if c.running:
            if not force:
                raise ApiError(
                    409,
                    f"You cannot remove a running container {c.id}. Stop the container before "
                    "attempting removal or force remove",
                )
            self.emit(c, "kill", signal=str(int(_signal.SIGKILL)))
            self.exit(c, 128 + int(_signal.SIGKILL))
        c.cancel_timers()
        c.removed = True
        self.containers.pop(c.id, None)
        if self.names.get(c.name) is c:
            del self.names[c.name]
        self.removes += 1
        self.emit(c, "destroy")
        c.notify()

    async def wait(self, c: Container, condition: str) -> int:
        """Block until the condition holds; the exit code."""
        if condition in ("", "not-running"):
            while c.running:
                await c.changed()
        elif condition == "next-exit":
            seen = c.exits
            while c.exits == seen and not c.removed:
                await c.changed()
        elif condition == "removed":
            while not c.removed:
                await c.changed()
        else:
            raise ApiError(400, f"invalid condition: {condition!r}")
        return c.exit_code

    # -- events --------------------------------------------------------------------------------

    def emit(self, c: Container, action: str, **extra: str) -> None:
        if not self.subscribers:
            return
        now = time.time_ns()
        event = {
            "status": action,
            "id": c.id,
            "from": c.image,
            "Type": "container",
            "Action": action,
            "Actor": {
                "ID": c.id,
                "Attributes": {**c.labels, "image": c.image, "name": c.name, **extra},
            },
            "scope": "local",
            "time": now // 1_000_000_000,
            "timeNano": now,
        }
        for queue, filters in self.subscribers:
            if _event_matches(event, c, filters):
                queue.put_nowait(event)


def _ms(value: str | None, default_s: float) -> float:
    try:
        return float(value) / 1000 if value else default_s
    except ValueError:
        return default_s


def _label_ok(labels: dict[str, str], wanted: list[str]) -> bool:
    for item in wanted:
        key, eq, value = item.partition("=")
        if key not in labels or (eq and labels[key] != value):
            return False
    return True


FILTERS = ("label", "status", "name", "id", "ancestor", "exited")


def _matches(c: Container, filters: dict[str, list[str]]) -> bool:
    for key, wanted in filters.items():
        if not wanted:
            continue
        if key == "label":
            if not _label_ok(c.labels, wanted):
                return False
        elif key == "status":
            if c.status not in wanted:
                return False
        elif key == "name":
            if not any(re.search(w.lstrip("/"), c.name) for w in wanted):
                return False
        elif key == "id":
            if not any(c.id.startswith(w) for w in wanted):
                return False
        elif key == "ancestor":
            if normalise_image(c.image) not in {normalise_image(w) for w in wanted}:
                return False
        elif key == "exited":
            if c.status != "exited" or str(c.exit_code) not in wanted:
                return False
    return True


def _event_matches(event: dict[str, Any], c: Container, filters: dict[str, list[str]]) -> bool:
    for key, wanted in filters.items():
        if not wanted:
            continue
        if key == "type" and "container" not in wanted:
            return False
        if key == "event" and event["Action"] not in wanted:
            return False
        if key == "label" and not _label_ok(c.labels, wanted):
            return False
        if (
            key == "container"
            and not ({c.id, c.name} & set(wanted))
            and not any(c.id.startswith(w) for w in wanted)
        ):
            return False
    return True


class Engine:
    """Every simulated host of one process, and the counters across them."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.hosts: list[Host] = []
        self.by_name: dict[str, Host] = {}
        self.calls: Counter[str] = Counter()
        self.started: dict[tuple[str | None, ...], str] = {}  # (run, task, attempt) → first host
        self.duplicates: list[dict[str, Any]] = []
        self.pids = 1000
        self.reset_at = time.time()

    def add_host(self, name: str, path: str) -> Host:
        host = Host(self, len(self.hosts), name, path)
        self.hosts.append(host)
        self.by_name[name] = host
        return host

    def reset(self, containers: bool = False) -> None:
        """Zero every counter; with `containers`, also remove every container (killed first)."""
        if containers:
            for host in self.hosts:
                for c in list(host.containers.values()):
                    host.remove(c, force=True)
        for host in self.hosts:
            host.reset()
        self.calls.clear()
        self.started.clear()
        self.duplicates.clear()
        self.reset_at = time.time()

    def stats(self, per_host: bool = True) -> dict[str, Any]:
        hosts = [h.stats() for h in self.hosts]
        totals: dict[str, Any] = {k: sum(h[k] for h in hosts) for k in _COUNTERS}
        totals.update(
            hosts=len(hosts),
            running=sum(h["running"] for h in hosts),
            containers=sum(h["containers"] for h in hosts),
            start_failures=sum(h["start_failures"] for h in hosts),
            max_peak_running=max((h["peak_running"] for h in hosts), default=0),
            seconds_since_reset=round(time.time() - self.reset_at, 3),
        )
        out: dict[str, Any] = {
            "totals": totals,
            "calls": dict(self.calls.most_common()),
            "duplicate_examples": self.duplicates,
            "settings": self.settings.as_dict(),
        }
        if per_host:
            out["hosts"] = {h["name"]: h for h in hosts}
        return out
