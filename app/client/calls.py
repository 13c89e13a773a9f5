"""Every request of the API as a `Call`, built once for both the sync and the async client."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel

from app.client._core import Call, DockfleetError, body_of, model, nothing
from app.directives.schemas import DirectivePage, DirectiveRead
from app.doctor.schemas import DoctorReport
from app.events.schemas import EventPage
from app.gpus.schemas import GpuInventory
from app.hosts.schemas import HostHealth, HostPage, HostRead
from app.notifiers.schemas import DeliveryPage, DeliveryRead, NotifierPage, NotifierRead
from app.runs.schemas import RunLogs, RunPage, RunRead, RunStatus
from app.schedules.schemas import FirePage, RunNowRead, SchedulePage, ScheduleRead
from app.tasks.schemas import TaskPage, TaskRead

Body = BaseModel | Mapping[str, Any] | None

HOSTS = "/api/worker-hosts/"
DIRECTIVES = "/api/directives/"
TASKS = "/api/tasks/"
RUNS = "/api/runs/"
EVENTS = "/api/events/"
SCHEDULES = "/api/schedules/"


def _first(page_cls: type[HostPage] | type[DirectivePage], kind: str, name: str) -> Any:
    """A reader of a one-name list: its only item, or a 404 DockfleetError."""
    read_page = model(page_cls)

    def read(response: Any) -> Any:
        page = read_page(response)
        if not page.results:
            raise DockfleetError(404, f"{kind} {name!r} not found", code="not_found")
        return page.results[0]

    return read


def _params(**values: Any) -> dict[str, Any]:
    """Query parameters without the ones left out (None); booleans as true/false."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        out[key] = ("true" if value else "false") if isinstance(value, bool) else value
    return out


class HostCalls:
    """/api/worker-hosts/: the registry, heartbeat, live check and drain."""

    @staticmethod
    def list(
        *,
        enabled: bool | None = None,
        healthy: bool | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> Call[HostPage]:
        """One page of hosts (filters: enabled, healthy)."""
        params = _params(enabled=enabled, healthy=healthy, limit=limit, offset=offset)
        return Call("GET", HOSTS, model(HostPage), params=params)

    @staticmethod
    def by_name(name: str) -> Call[HostRead]:
        """The host with this name (404 DockfleetError when there is none)."""
        read = _first(HostPage, "worker host", name)
        return Call("GET", HOSTS, read, params={"name": name})

    @staticmethod
    def get(host_id: int) -> Call[HostRead]:
        """One host by id."""
        return Call("GET", f"{HOSTS}{host_id}/", model(HostRead))

    @staticmethod
    def create(body: Body = None, /, **fields: Any) -> Call[HostRead]:
        """Register a host: a HostCreate, a dict (the runbook's JSON), and/or keyword fields."""
        return Call("POST", HOSTS, model(HostRead), json=body_of(body, fields))

    @staticmethod
    def update(host_id: int, body: Body = None, /, **fields: Any) -> Call[HostRead]:
        """Change the fields given (e.g. `enabled=False`)."""
        return Call("PATCH", f"{HOSTS}{host_id}/", model(HostRead), json=body_of(body, fields))

    @staticmethod
    def delete(host_id: int, force: bool = False) -> Call[None]:
        """Remove a host (409 while it has active runs); `force` also releases slots held for
        containers never confirmed gone (a host gone for good)."""
        params = _params(force=True) if force else None
        return Call("DELETE", f"{HOSTS}{host_id}/", nothing, params=params)

    @staticmethod
    def accept_host_key(host_id: int, fingerprint: str) -> Call[HostRead]:
        """Accept the SSH host key the server offers now (its SHA256 fingerprint)."""
        body = {"fingerprint": fingerprint}
        return Call("POST", f"{HOSTS}{host_id}/ssh-host-key/", model(HostRead), json=body)

    @staticmethod
    def health(host_id: int, check: bool = False) -> Call[HostHealth]:
        """The heartbeat (sets last_seen_at), or a live Docker check with `check=True`."""
        params = _params(check=True) if check else None
        return Call("GET", f"{HOSTS}{host_id}/health/", model(HostHealth), params=params)

    @staticmethod
    def doctor(host_id: int) -> Call[DoctorReport]:
        """Check the host now: reachable, Docker, images, NVIDIA runtime, GPUs, disk, clock."""
        return Call("POST", f"{HOSTS}{host_id}/doctor/", model(DoctorReport))

    @staticmethod
    def drain(host_id: int) -> Call[HostRead]:
        """The host takes no new runs; running ones finish."""
        return Call("POST", f"{HOSTS}{host_id}/drain/", model(HostRead))

    @staticmethod
    def undrain(host_id: int) -> Call[HostRead]:
        """The host takes new runs again."""
        return Call("POST", f"{HOSTS}{host_id}/undrain/", model(HostRead))


class GpuCalls:
    """/api/worker-hosts/{id}/gpus/: what a host's GPU probe found, and a probe now."""

    @staticmethod
    def get(host_id: int) -> Call[GpuInventory]:
        """The host's GPU inventory as its last probe found it."""
        return Call("GET", f"{HOSTS}{host_id}/gpus/", model(GpuInventory))

    @staticmethod
    def probe(host_id: int) -> Call[GpuInventory]:
        """Probe the host's GPUs now (`probing` is true when it was still running)."""
        return Call("POST", f"{HOSTS}{host_id}/gpus/probe/", model(GpuInventory))


class DirectiveCalls:
    """/api/directives/: named defaults (tasks, env) runs are launched from."""

    @staticmethod
    def list(*, limit: int | None = None, offset: int | None = None) -> Call[DirectivePage]:
        """One page of directives."""
        params = _params(limit=limit, offset=offset)
        return Call("GET", DIRECTIVES, model(DirectivePage), params=params)

    @staticmethod
    def by_name(name: str) -> Call[DirectiveRead]:
        """The directive with this name (404 DockfleetError when there is none)."""
        read = _first(DirectivePage, "directive", name)
        return Call("GET", DIRECTIVES, read, params={"name": name})

    @staticmethod
    def get(directive_id: int) -> Call[DirectiveRead]:
        """One directive by id."""
        return Call("GET", f"{DIRECTIVES}{directive_id}/", model(DirectiveRead))

    @staticmethod
    def create(body: Body = None, /, **fields: Any) -> Call[DirectiveRead]:
        """Create a directive: `name`, and optionally `description`, `tasks`, `env`."""
        return Call("POST", DIRECTIVES, model(DirectiveRead), json=body_of(body, fields))

    @staticmethod
    def update(directive_id: int, body: Body = None, /, **fields: Any) -> Call[DirectiveRead]:
        """Change the fields given."""
        path = f"{DIRECTIVES}{directive_id}/"
        return Call("PATCH", path, model(DirectiveRead), json=body_of(body, fields))

    @staticmethod
    def delete(directive_id: int) -> Call[None]:
        """Delete a directive (its runs keep their snapshot)."""
        return Call("DELETE", f"{DIRECTIVES}{directive_id}/", nothing)


def _task_path(key: int | str) -> str:
    return f"{TASKS}{quote(str(key), safe='')}/"


class TaskCalls:
    """/api/tasks/: task definitions, by id or by name."""

    @staticmethod
    def list(
        *, enabled: bool | None = None, limit: int | None = None, offset: int | None = None
    ) -> Call[TaskPage]:
        """One page of task definitions (filter: enabled)."""
        params = _params(enabled=enabled, limit=limit, offset=offset)
        return Call("GET", TASKS, model(TaskPage), params=params)

    @staticmethod
    def get(key: int | str) -> Call[TaskRead]:
        """One task definition by id or name."""
        return Call("GET", _task_path(key), model(TaskRead))

    @staticmethod
    def create(body: Body = None, /, **fields: Any) -> Call[TaskRead]:
        """Define a task: `name`, `image`, and optionally `command`, `env`, GPUs, limits…"""
        return Call("POST", TASKS, model(TaskRead), json=body_of(body, fields))

    @staticmethod
    def update(key: int | str, body: Body = None, /, **fields: Any) -> Call[TaskRead]:
        """Change the fields given (e.g. `enabled=False`)."""
        return Call("PATCH", _task_path(key), model(TaskRead), json=body_of(body, fields))

    @staticmethod
    def delete(key: int | str) -> Call[None]:
        """Delete a task definition (runs keep their snapshot)."""
        return Call("DELETE", _task_path(key), nothing)


def _statuses(status: str | RunStatus | Iterable[str | RunStatus] | None) -> str | None:
    if status is None or isinstance(status, str):  # RunStatus is a str too
        return status or None
    return ",".join(str(s) for s in status) or None


class RunCalls:
    """/api/runs/: launch, list, show, cancel, logs."""

    @staticmethod
    def launch(
        directive_id: int, tasks: list[str] | None = None, target_host_id: int | None = None
    ) -> Call[RunRead]:
        """Launch a run: the directive's (or the given) tasks, anywhere or on one host."""
        body: dict[str, Any] = {"directive_id": directive_id}
        if tasks is not None:
            body["tasks"] = list(tasks)
        if target_host_id is not None:
            body["target_host_id"] = target_host_id
        return Call("POST", f"{RUNS}launch/", model(RunRead), json=body)

    @staticmethod
    def list(
        *,
        status: str | RunStatus | Iterable[str | RunStatus] | None = None,
        worker_host_id: int | None = None,
        directive_id: int | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> Call[RunPage]:
        """One page of runs, newest first; `status` is one status, a comma list or a list."""
        params = _params(
            status=_statuses(status),
            worker_host_id=worker_host_id,
            directive_id=directive_id,
            limit=limit,
            offset=offset,
        )
        return Call("GET", RUNS, model(RunPage), params=params)

    @staticmethod
    def get(run_id: int) -> Call[RunRead]:
        """One run with its tasks, host, timings and errors."""
        return Call("GET", f"{RUNS}{run_id}/", model(RunRead))

    @staticmethod
    def cancel(run_id: int) -> Call[RunRead]:
        """Cancel a run (409 when it already finished)."""
        return Call("POST", f"{RUNS}{run_id}/cancel/", model(RunRead))

    @staticmethod
    def logs(run_id: int) -> Call[RunLogs]:
        """The stored logs of every task of a run."""
        return Call("GET", f"{RUNS}{run_id}/logs/", model(RunLogs))

    @staticmethod
    def follow_logs(run_id: int) -> Call[None]:
        """The live log stream (read as text chunks by the clients, not by `read`)."""
        return Call("GET", f"{RUNS}{run_id}/logs/", nothing, params={"follow": "true"})


class EventCalls:
    """/api/events/: host and run state changes (the stream itself is read by the clients)."""

    @staticmethod
    def recent(
        *,
        types: str | Iterable[str] | None = None,
        run_id: int | None = None,
        host_id: int | None = None,
        after: int | None = None,
        limit: int | None = None,
    ) -> Call[EventPage]:
        """Events after `after` (default: the oldest kept), oldest first, as JSON."""
        joined = types if types is None or isinstance(types, str) else ",".join(types)
        params = _params(types=joined, run_id=run_id, host_id=host_id, after=after, limit=limit)
        return Call("GET", f"{EVENTS}recent/", model(EventPage), params=params)


def _schedule_path(key: int | str) -> str:
    return f"{SCHEDULES}{quote(str(key), safe='')}/"


class ScheduleCalls:
    """/api/schedules/: cron schedules that launch runs, by id or by name."""

    @staticmethod
    def list(
        *, enabled: bool | None = None, limit: int | None = None, offset: int | None = None
    ) -> Call[SchedulePage]:
        """One page of schedules (filter: enabled)."""
        params = _params(enabled=enabled, limit=limit, offset=offset)
        return Call("GET", SCHEDULES, model(SchedulePage), params=params)

    @staticmethod
    def get(key: int | str, fires: int | None = None) -> Call[ScheduleRead]:
        """One schedule with `next_fire_at` and its last `fires` (default 20)."""
        return Call("GET", _schedule_path(key), model(ScheduleRead), params=_params(fires=fires))

    @staticmethod
    def create(body: Body = None, /, **fields: Any) -> Call[ScheduleRead]:
        """Create a schedule: `name`, `directive_id`, `cron`, optionally `timezone`, `tasks`,
        `target_host_id`, `overlap` (skip/queue/allow), `catch_up` (none/latest), `enabled`."""
        return Call("POST", SCHEDULES, model(ScheduleRead), json=body_of(body, fields))

    @staticmethod
    def update(key: int | str, body: Body = None, /, **fields: Any) -> Call[ScheduleRead]:
        """Change the fields given (e.g. `enabled=False`)."""
        return Call("PATCH", _schedule_path(key), model(ScheduleRead), json=body_of(body, fields))

    @staticmethod
    def delete(key: int | str) -> Call[None]:
        """Delete a schedule and its history (its runs stay)."""
        return Call("DELETE", _schedule_path(key), nothing)

    @staticmethod
    def run_now(key: int | str) -> Call[RunNowRead]:
        """Fire once now (a refused launch raises as runs.launch would, and is recorded)."""
        return Call("POST", f"{_schedule_path(key)}run-now/", model(RunNowRead))

    @staticmethod
    def fires(
        key: int | str, *, limit: int | None = None, offset: int | None = None
    ) -> Call[FirePage]:
        """One page of the schedule's fires, newest first."""
        params = _params(limit=limit, offset=offset)
        return Call("GET", f"{_schedule_path(key)}fires/", model(FirePage), params=params)


NOTIFIERS = "/api/notifiers/"


def _notifier_path(key: int | str) -> str:
    return f"{NOTIFIERS}{quote(str(key), safe='')}/"


class NotifierCalls:
    """/api/notifiers/: where events are sent (webhook, ntfy, discord, slack), by id or name."""

    @staticmethod
    def list(*, limit: int | None = None, offset: int | None = None) -> Call[NotifierPage]:
        """One page of notifiers (URLs masked, secrets never shown)."""
        params = _params(limit=limit, offset=offset)
        return Call("GET", NOTIFIERS, model(NotifierPage), params=params)

    @staticmethod
    def get(key: int | str) -> Call[NotifierRead]:
        """One notifier."""
        return Call("GET", _notifier_path(key), model(NotifierRead))

    @staticmethod
    def create(body: Body = None, /, **fields: Any) -> Call[NotifierRead]:
        """Create a notifier: `name`, `kind`, `url`, optionally `secret`, `event_types`,
        `directive_ids`, `schedule_ids`, `host_ids`, `on_change_only`, `enabled`."""
        return Call("POST", NOTIFIERS, model(NotifierRead), json=body_of(body, fields))

    @staticmethod
    def update(key: int | str, body: Body = None, /, **fields: Any) -> Call[NotifierRead]:
        """Change the fields given."""
        return Call("PATCH", _notifier_path(key), model(NotifierRead), json=body_of(body, fields))

    @staticmethod
    def delete(key: int | str) -> Call[None]:
        """Delete a notifier and its deliveries."""
        return Call("DELETE", _notifier_path(key), nothing)

    @staticmethod
    def test(key: int | str) -> Call[DeliveryRead]:
        """Send a test notification now; the delivery says how it went."""
        return Call("POST", f"{_notifier_path(key)}test/", model(DeliveryRead))

    @staticmethod
    def deliveries(
        key: int | str,
        *,
        status: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> Call[DeliveryPage]:
        """One page of the notifier's deliveries, newest first."""
        params = _params(status=status, limit=limit, offset=offset)
        return Call("GET", f"{_notifier_path(key)}deliveries/", model(DeliveryPage), params=params)
