"""Launch and cancel: the use-cases that coordinate directives, tasks, hosts and runs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Protocol

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app import clock
from app.config import Settings
from app.directives.models import Directive
from app.errors import Conflict, InvalidField, NoAvailableHosts, TargetIneligible, not_found
from app.events import store as events
from app.gpus import store as gpus_store
from app.gpus.offer import GpuAsk, GpuState, GpuUse, units_of
from app.hosts import store as hosts_store
from app.hosts.eligibility import HostLoad, ineligible_reasons
from app.hosts.models import WorkerHost
from app.runs import store
from app.runs.models import FINAL, LaunchRequest, Run, RunStatus, RunTask
from app.tasks.models import TaskDefinition
from app.tasks.policy import TaskPolicy, env_problems, refuse


class SchedulerPort(Protocol):
    """What the runs room needs of the scheduler (which lives in a room that imports us)."""

    def wake(self) -> None: ...
    def request_cancel(self, run_id: int) -> asyncio.Event | None: ...
    def forget(self, run_id: int) -> None: ...
    def submit(
        self,
        run_id: int,
        gpu_need: int,
        target_host_id: int | None,
        gpu_memory_mb: int = 0,
        gpu_name: str | None = None,
    ) -> asyncio.Future[Any]: ...
    def known(self) -> tuple[list[Any], dict[int, HostLoad]] | None: ...
    def known_gpus(self) -> dict[int, GpuState] | None: ...


async def resolve_tasks(
    session: AsyncSession, requested: list[str] | None, directive: Directive
) -> list[TaskDefinition]:
    """The request's tasks, else the directive's, else every enabled task; 422 on bad names."""
    if requested is not None and not requested:
        raise InvalidField("tasks", "give at least one task, or leave tasks out for the defaults")
    names = requested if requested is not None else (directive.tasks or None)
    if names is None:
        query = (
            select(TaskDefinition)
            .where(col(TaskDefinition.enabled))
            .order_by(col(TaskDefinition.id))
        )
        found = list((await session.exec(query)).all())
        if not found:
            raise InvalidField("tasks", "there are no enabled task definitions")
        return found
    names = list(dict.fromkeys(names))  # duplicates keep the first
    query = select(TaskDefinition).where(col(TaskDefinition.name).in_(names))
    by_name = {t.name: t for t in (await session.exec(query)).all()}
    unknown = [n for n in names if n not in by_name]
    disabled = [n for n in names if n in by_name and not by_name[n].enabled]
    if unknown or disabled:
        parts = []
        if unknown:
            parts.append("unknown tasks: " + ", ".join(unknown))
        if disabled:
            parts.append("disabled tasks: " + ", ".join(disabled))
        field = "tasks" if requested is not None else "directive_id"
        raise InvalidField(field, "; ".join(parts))
    return [by_name[n] for n in names]


def _anyone_eligible(
    hosts: Iterable[Any],
    ask: GpuAsk,
    target_id: int | None,
    now: datetime,
    stale: float,
    gpus: dict[int, GpuState],
) -> bool:
    return any(
        not ineligible_reasons(h, now, stale, ask.count, gpus.get(h.id), ask)
        for h in hosts
        if target_id is None or h.id == target_id
    )


def gpu_ask(tasks: list[TaskDefinition]) -> GpuAsk:
    """What the run asks of GPUs: the most any task needs, the most memory, the one name."""
    gpu_tasks = [t for t in tasks if t.gpus_needed()]
    if not gpu_tasks:
        return GpuAsk()
    names = list(dict.fromkeys(t.gpu_name for t in gpu_tasks if t.gpu_name))
    if len(names) > 1:
        raise InvalidField(
            "tasks",
            f"the tasks ask for GPUs named differently ({', '.join(names)}): one run "
            "uses one set of GPUs",
        )
    return GpuAsk(
        count=max(t.gpus_needed() for t in gpu_tasks),
        memory_mb=max(t.gpu_memory_mb or 0 for t in gpu_tasks),
        name=names[0] if names else None,
    )


async def check_hosts(
    session: AsyncSession,
    settings: Settings,
    gpu_need: int,
    target: WorkerHost | None,
    known: Iterable[Any] | None = None,
    ask: GpuAsk | None = None,
    known_gpus: dict[int, GpuState] | None = None,
) -> None:
    """503 when no host could ever take the run; 409 when the target cannot (never a fallback).

    `known`: the scheduler's view of the hosts (`known_gpus`: of their GPUs); when some host
    there can take the run the database is not read at all (a refusal is always confirmed
    from the database).
    """
    now, stale_after = clock.now(), settings.stale_after_seconds
    ask = ask or GpuAsk(gpu_need)
    target_id = target.id if target is not None else None
    if known is not None and _anyone_eligible(
        known, ask, target_id, now, stale_after, known_gpus or {}
    ):
        return
    gpus = await gpus_store.states(session) if ask.count else {}
    if target is not None:
        reasons = ineligible_reasons(
            target, now, stale_after, ask.count, gpus.get(target.id or 0), ask
        )
        if reasons:
            raise TargetIneligible(
                f"worker host {target.id} ({target.name}) cannot take this run: "
                + "; ".join(reasons),
                host_id=target.id,
                reasons=reasons,
            )
        return
    hosts = (await session.exec(select(WorkerHost).order_by(col(WorkerHost.id)))).all()
    rejections = [
        {"host_id": h.id, "name": h.name, "reasons": r}
        for h in hosts
        if (r := ineligible_reasons(h, now, stale_after, ask.count, gpus.get(h.id or 0), ask))
    ]
    if len(rejections) == len(hosts):
        raise NoAvailableHosts("No available hosts found", hosts=rejections, gpu_need=gpu_need)


def check_policy(policy: TaskPolicy, directive: Directive, tasks: list[TaskDefinition]) -> None:
    """The task policy again at launch: one tightened since a task was defined applies."""
    problems = env_problems(directive.env, "directive.env")
    for task in tasks:
        for loc, why in policy.task_problems(task.snapshot()):
            problems.append((["tasks"], f"task {task.name}: {'.'.join(map(str, loc))}: {why}"))
    refuse(problems)


async def launch(
    session: AsyncSession,
    settings: Settings,
    body: LaunchRequest,
    policy: TaskPolicy,
    known: Iterable[Any] | None = None,
    known_gpus: dict[int, GpuState] | None = None,
    *,
    schedule_id: int | None = None,
) -> tuple[Run, list[RunTask]]:
    """Validate everything, then create the run and its tasks as pending (caller commits).

    Every refusal is raised before anything is written (a schedule's fire relies on it)."""
    directive = await session.get(Directive, body.directive_id)
    if directive is None:
        raise not_found("directive", body.directive_id)
    target = None
    if body.target_host_id is not None:
        target = await session.get(WorkerHost, body.target_host_id)
        if target is None:
            raise not_found("worker host", body.target_host_id)
    tasks = await resolve_tasks(session, body.tasks, directive)
    check_policy(policy, directive, tasks)
    ask = gpu_ask(tasks)
    await check_hosts(session, settings, ask.count, target, known, ask, known_gpus)
    run = Run(
        directive_id=directive.id,
        directive_snapshot=directive.snapshot(),
        target_host_id=body.target_host_id,
        schedule_id=schedule_id,
        gpu_need=ask.count,
        gpu_memory_mb=ask.memory_mb,
        gpu_name=ask.name,
    )
    session.add(run)
    await session.flush()
    assert run.id is not None
    rows = [
        RunTask(run_id=run.id, position=i, task_name=t.name, task_snapshot=t.snapshot())
        for i, t in enumerate(tasks)
    ]
    session.add_all(rows)
    await session.flush()
    await events.record_all(session, [store.run_event(run)])
    return run, rows


async def cancel(
    session: AsyncSession, settings: Settings, scheduler: SchedulerPort | None, run_id: int
) -> Run:
    """Pending: cancelled at once. Active: `cancelling` until its container is confirmed
    stopped (grace, then kill), then `cancelled`. Waits for that only while the stop can be
    done now (bounded); a host that cannot be reached answers `cancelling` at once."""
    run = await store.get_or_raise(session, run_id)
    for _ in range(5):  # the run may move (placed, started) between our read and our write
        if RunStatus(run.status) in FINAL:
            raise Conflict(f"run {run_id} is already {run.status}")
        if run.status == RunStatus.pending:
            done = await store.cancel_pending(session, [run_id])
            await session.commit()
            if done and scheduler is not None:
                scheduler.forget(run_id)
            await session.refresh(run)
            if done:
                return run
            continue
        if run.status == RunStatus.cancelling or await store.transition(
            session, run, RunStatus.cancelling, cancel_requested=True
        ):
            break
        await session.refresh(run)
    await session.commit()
    settled = scheduler.request_cancel(run_id) if scheduler is not None else None
    limit = settings.stop_timeout_seconds + 3
    if run.worker_host_id is not None and not await _host_healthy(session, run.worker_host_id):
        limit = 0  # the stop cannot be confirmed now: say `cancelling` at once
    await session.commit()  # hold no connection while the stop is waited for
    if settled is not None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(limit):
                await settled.wait()
        await session.refresh(run)
        return run
    return await _wait_final(session, run, limit)


async def _host_healthy(session: AsyncSession, host_id: int) -> bool:
    host = await session.get(WorkerHost, host_id)
    return bool(host and host.healthy)


async def _wait_final(session: AsyncSession, run: Run, limit: float) -> Run:
    """Wait (bounded) for a run to reach a final state, then return it as it is."""
    deadline = asyncio.get_running_loop().time() + limit
    while True:
        await session.refresh(run)
        await session.commit()
        if RunStatus(run.status) in FINAL or asyncio.get_running_loop().time() >= deadline:
            return run
        await asyncio.sleep(0.2)


def _slot_text(host: Any, load: HostLoad | None, gpu_need: int, gpus: GpuState | None) -> str:
    caps = host.caps()
    held = load.held if load else 0
    text = f"{host.name} {held}/{caps.max_concurrency}"
    if gpu_need:
        use = GpuUse(units_of(caps, gpus), set(load.gpus_in_use) if load else set())
        t = use.totals()
        text += f", GPUs in use {t['gpus_held']}/{t['gpus_total']}"
        if t["gpus_busy_elsewhere"]:
            text += f", {t['gpus_busy_elsewhere']} busy elsewhere"
        if t["gpus_unhealthy"]:
            text += f", {t['gpus_unhealthy']} held out"
    return text


SHOWN = 5  # hosts named in a `waiting_for`


async def explain_pending(
    session: AsyncSession,
    settings: Settings,
    runs: list[Run],
    view: tuple[list[Any], dict[int, HostLoad]] | None = None,
    known_gpus: dict[int, GpuState] | None = None,
) -> dict[int, str]:
    """For each pending run, what it waits for: a free slot on its eligible hosts, or a host.

    `view`: the scheduler's hosts and loads, `known_gpus` its GPUs (else they are read from
    the database)."""
    pending = [r for r in runs if r.status == RunStatus.pending and r.id is not None]
    if not pending:
        return {}
    if view is not None:
        hosts, loads = sorted(view[0], key=lambda h: h.id), view[1]
    else:
        hosts = list((await session.exec(select(WorkerHost).order_by(col(WorkerHost.id)))).all())
        loads = await hosts_store.loads(session)
    if known_gpus is None or view is None:
        known_gpus = await gpus_store.states(session)
    now, stale_after = clock.now(), settings.stale_after_seconds
    out: dict[int, str] = {}
    for run in pending:
        assert run.id is not None
        ask = GpuAsk(run.gpu_need, run.gpu_memory_mb or 0, run.gpu_name)
        mine = [h for h in hosts if run.target_host_id in (None, h.id)]
        able = [
            h
            for h in mine
            if not ineligible_reasons(h, now, stale_after, ask.count, known_gpus.get(h.id), ask)
        ]
        if able:
            shown = able[:SHOWN]
            slots = "; ".join(
                _slot_text(h, loads.get(h.id or 0), run.gpu_need, known_gpus.get(h.id))
                for h in shown
            )
            more = f"; and {len(able) - SHOWN} more hosts" if len(able) > SHOWN else ""
            out[run.id] = f"a free slot on {slots}{more}"
        elif run.target_host_id is not None and mine:
            gpus = known_gpus.get(mine[0].id)
            why = ", ".join(ineligible_reasons(mine[0], now, stale_after, ask.count, gpus, ask))
            out[run.id] = f"its target host {mine[0].name} to become eligible ({why})"
        else:
            out[run.id] = "an eligible host (none is enabled, healthy, fresh and undrained now)"
    return out
