"""Live log streaming: each task's output in order, live while it runs, stored once it ended."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from app.deps import AppState
from app.engine.endpoint import Endpoint
from app.errors import DockerCallFailed, EngineError
from app.events import store as events
from app.hosts.models import WorkerHost
from app.runs import store
from app.runs.models import FINAL, RunStatus, RunTask

POLL = 0.3
_GONE = re.compile(r"\[(404|409)\]")
DONE = ("succeeded", "failed", "skipped", "cancelled")


def _header(task: RunTask) -> str:
    return f"=== {task.task_name} (task {task.position + 1}, attempt {task.attempt}) ===\n"


async def _live(
    state: AppState, host_id: int, task: RunTask, sent: list[int]
) -> AsyncIterator[str]:
    """The container's output as it comes; `sent[0]` counts the chunks that got through.

    A container that is already gone (it ended and was removed before we looked) yields
    nothing: its stored logs are shown once the task is recorded as done."""
    async with state.db.sessions() as session:
        host = await session.get(WorkerHost, host_id)
    if host is None or not task.container_id:
        return
    settings = state.settings
    try:
        async with state.pool.docker(Endpoint.of(host)) as docker:
            stream = docker.follow_logs(
                task.container_id, settings.max_log_bytes * 16, settings.follow_max_seconds
            )
            async for chunk in stream:
                sent[0] += 1
                yield chunk
    except DockerCallFailed as exc:
        if sent[0] or not _GONE.search(str(exc.detail)):
            yield f"[dockfleet: live logs interrupted: {exc.detail}]\n"
    except EngineError as exc:
        yield f"[dockfleet: live logs interrupted: {exc.detail}]\n"


async def follow(state: AppState, run_id: int) -> AsyncIterator[str]:
    """Yield the run's output until it is final and everything was shown."""
    shown: set[tuple[int, int]] = set()  # (position, attempt) already printed
    missed: set[tuple[int, int]] = set()  # headers printed, but the live stream found nothing
    while True:
        async with state.db.sessions() as session:
            run = await store.get_or_raise(session, run_id)
            tasks = (await store.tasks_of(session, [run_id], with_logs=True))[run_id]
        for task in tasks:
            key = (task.position, task.attempt)
            if task.status in DONE:
                if key in missed:
                    missed.discard(key)
                    yield task.logs
                elif key not in shown and task.status != "skipped" and task.attempt:
                    shown.add(key)
                    yield _header(task) + task.logs
                continue
            if (
                task.status == "running"
                and task.container_id
                and run.worker_host_id
                and key not in shown
            ):
                shown.add(key)
                yield _header(task)
                sent = [0]
                async for chunk in _live(state, run.worker_host_id, task, sent):
                    yield chunk
                if not sent[0]:
                    missed.add(key)
            break
        if RunStatus(run.status) in FINAL:
            yield (
                f"=== run {run_id} {run.status}"
                + (f": {run.error}" if run.error else "")
                + " ===\n"
            )
            return
        if events.BUS.closed:  # the server is shutting down
            return
        await events.BUS.wait(POLL)  # a state change of this process wakes it at once
