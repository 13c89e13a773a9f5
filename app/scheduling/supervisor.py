"""Supervisor: drives one run on its host, task after task, one container at a time.

It never polls the database while a container runs: it waits on Docker and on its `cancel`
event (set in-process by a cancel, or by the lease loop for a cancel made elsewhere). An
unexpected error never ends a run while its container may run: the supervisor backs off and
drives the run again from the database; after `internal_error_limit` errors in a row it stops
and removes the container, then fails the run with a clean message. A database that cannot
answer (locked, out of connections, away) is not such an error: it is waited for, never a
reason to fail a run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

from app import clock, logs
from app.db import unavailable_reason
from app.deps import AppState
from app.engine.containers import sleep_backoff
from app.engine.endpoint import Endpoint
from app.errors import ContainerStartFailed, EngineError, HostUnreachable, ImageUnavailable
from app.hosts.eligibility import is_lost
from app.hosts.models import WorkerHost
from app.runs.models import FINAL, Run, RunStatus, RunTask, TaskStatus
from app.scheduling import spec
from app.scheduling.ownership import LostOwnership
from app.scheduling.placement import Need
from app.scheduling.records import Outcome, RunRecords, retries_left
from app.tasks.policy import env_problems

log = logging.getLogger("dockfleet.supervisor")
WAIT_BUDGET = 10.0  # one Docker wait long-poll at most this long, then look again
STOP_TRIES = 5
T = TypeVar("T")


class _Cancelled(Exception):
    """A cancel arrived while the container was being prepared (pull, create)."""


class Supervisor:
    """Runs every task of one run in order; survives restarts by finding its containers again."""

    def __init__(
        self,
        state: AppState,
        run_id: int,
        me: str,
        on_left: Callable[[int, int | None, Need | None], None],
    ):
        self.state = state
        self.run_id = run_id
        self.on_left = on_left  # (run id, its host, the need again if it was re-queued)
        self.requeued: Need | None = None
        self.cancel = asyncio.Event()
        # Set when the host's checks fail: look at the container now, not after the wait.
        self.poke = asyncio.Event()
        self.host_id: int | None = None
        self.gpu_need = 0
        self.gpu_filters: tuple[int, str | None] = (0, None)
        self.target_host_id: int | None = None
        # Set once a cancel has an answer: the stop was confirmed, or it cannot be done yet.
        self.settled = asyncio.Event()
        self.grace = state.settings.stop_timeout_seconds
        self.records = RunRecords(state.db, run_id, me, state.settings.lease_seconds)
        self.leftover = False  # a container of this run could not be removed
        # An attempt's end decided here but not yet stored (its write failed): the retry
        # stores it instead of looking for the container again (it may be removed already).
        self.decided: tuple[int, int, Outcome] | None = None

    async def drive(self) -> None:
        """Run until the run is final, re-queued, or no longer ours; never raises but on
        shutdown (an unexpected error is retried, then the run is failed cleanly)."""
        logs.RUN_ID.set(self.run_id)  # this task's log lines say which run they are about
        errors = unavailable = 0
        try:
            while True:
                try:
                    await self._drive()
                    return
                except LostOwnership as exc:
                    log.warning("%s; letting go", exc)
                    return
                except Exception as exc:
                    reason = unavailable_reason(exc)
                    if reason is not None:
                        # The database is locked, out of connections or away: nothing is wrong
                        # with the run, so it is never failed for it (that write could not be
                        # made either). Its container goes on; the drive resumes from the
                        # database once it answers, fenced by the lease like every write.
                        unavailable += 1
                        log.warning(
                            "supervisor of run %s: database unavailable (%s), try %d",
                            self.run_id,
                            reason,
                            unavailable,
                        )
                        await sleep_backoff(min(unavailable, 5))
                        continue
                    errors += 1
                    log.exception("supervisor of run %s: internal error %s", self.run_id, errors)
                    if errors >= self.state.settings.internal_error_limit:
                        await self._give_up(exc)
                        return
                    await sleep_backoff(errors)
        finally:
            self.settled.set()
            self.on_left(self.run_id, self.host_id, self.requeued)

    async def _host(self, run: Run) -> WorkerHost | None:
        async with self.state.db.sessions() as session:
            return await session.get(WorkerHost, run.worker_host_id) if run.worker_host_id else None

    def _cancel_wanted(self, run: Run) -> bool:
        return self.cancel.is_set() or run.cancel_requested or run.status == RunStatus.cancelling

    async def _drive(self) -> None:
        while True:
            run, tasks = await self.records.load()
            if RunStatus(run.status) in FINAL or run.status == RunStatus.pending:
                return
            if run.supervisor != self.records.me:
                raise LostOwnership(f"run {self.run_id} is now driven by {run.supervisor}")
            host = await self._host(run)
            if host is None:
                await self.records.finish(RunStatus.failed, "host was removed", False, _SKIP)
                return
            ep = Endpoint.of(host)
            self.host_id = host.id
            self.gpu_need, self.target_host_id = run.gpu_need, run.target_host_id
            self.gpu_filters = (run.gpu_memory_mb or 0, run.gpu_name)
            ended = next((t for t in tasks if t.status in ("failed", "cancelled")), None)
            if ended is not None:  # a task's end was stored, the run's was not (write failed)
                cancelled = ended.status == TaskStatus.cancelled or self._cancel_wanted(run)
                await self._conclude(ep, ended, cancelled)
                return
            current = next((t for t in tasks if t.status in ("pending", "running")), None)
            if self._cancel_wanted(run):
                await self._cancel(run, current, ep)
                return
            if current is None:
                await self.records.finish(RunStatus.succeeded, None, not self.leftover, _SKIP)
                return
            key = (current.id or 0, current.attempt)
            if (
                self.decided is not None
                and self.decided[:2] == key
                and current.status == TaskStatus.running
            ):
                outcome = self.decided[2]
            else:
                outcome = await self._attempt(run, current, ep)
                self.decided = (current.id or 0, current.attempt, outcome)
            going_on = await self._record(current, outcome, ep)
            self.decided = None
            if not going_on:
                return

    # -- one attempt ---------------------------------------------------------------------------

    def _name(self, run: Run, task: RunTask) -> str:
        return spec.container_name(self.state.instance_id, run.id or 0, task.id or 0, task.attempt)

    async def _attempt(self, run: Run, task: RunTask, ep: Endpoint) -> Outcome:
        """Start (or adopt) the task's container and wait for it to end."""
        fresh = task.status == TaskStatus.pending
        if fresh:
            await self.records.begin_attempt(task)
        name = self._name(run, task)
        try:
            cid = await self._ensure_started(run, task, ep, name, fresh)
        except _Cancelled:
            gone = await self._remove(ep, task.container_id or name)
            self.leftover = self.leftover or not gone
            return Outcome(TaskStatus.cancelled, error="cancelled")
        except HostUnreachable as exc:
            return await self._host_trouble(ep, str(exc.detail))
        except EngineError as exc:
            gone = await self._remove(ep, task.container_id or name)
            self.leftover = self.leftover or not gone
            return Outcome(TaskStatus.failed, error=str(exc.detail))
        if cid is None:  # container gone after it had run: its result is lost
            return Outcome(
                TaskStatus.failed, error="container disappeared before its result was read"
            )
        return await self._await_exit(task, ep, cid, just_started=fresh)

    async def _until_cancel(self, work: Awaitable[T], poked: bool = False) -> T:
        """`work`'s result, or _Cancelled as soon as a cancel arrives (or, with `poked`, the
        host's checks fail); the work is then abandoned."""
        job = asyncio.ensure_future(work)
        stoppers = [asyncio.ensure_future(self.cancel.wait())]
        if poked:
            self.poke.clear()
            stoppers.append(asyncio.ensure_future(self.poke.wait()))
        try:
            await asyncio.wait({job, *stoppers}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for fut in (job, *stoppers):
                if not fut.done():
                    fut.cancel()
            await asyncio.gather(job, *stoppers, return_exceptions=True)
        if job.done() and not job.cancelled():
            return job.result()
        raise _Cancelled

    async def _ensure_started(
        self, run: Run, task: RunTask, ep: Endpoint, name: str, fresh: bool
    ) -> str | None:
        """The id of the running (or already exited) container of this attempt.

        A `fresh` attempt (just recorded here) can have no container yet: nothing is looked up.
        """
        async with self.state.pool.docker(ep) as docker:
            found = None if fresh else await docker.inspect(task.container_id or name)
            if found is not None and found.status != "created":  # started before a restart
                if task.container_id != found.id:
                    await self.records.set_container(task, found.id)
                if task.started_at is None:
                    await self.records.started(task, _parse(found.started_at) or clock.now())
                return found.id
            if found is None and task.container_id:
                return None
            self._check_policy(run, task)
            image = task.task_snapshot["image"]
            if not self.state.pool.has_image(ep.host_id, image):
                await self._until_cancel(docker.ensure_image(image))
                self.state.pool.saw_image(ep.host_id, image)
            cid = found.id if found else await self._create(docker, run, task, ep.host_id)
        if found is None:
            # Recorded before it starts: from here on, a container not found again is one that
            # may have run (its result is lost), never one to create again.
            await self.records.set_container(task, cid)
        if self.cancel.is_set():
            raise _Cancelled
        async with self.state.pool.docker(ep) as docker:
            await docker.start(cid)
        # Recorded once started: a container created but not started is found again by name.
        await self.records.started(task, clock.now(), cid)
        log.info(
            "run %s task %s attempt %s started %s on %s",
            run.id,
            task.task_name,
            task.attempt,
            cid[:12],
            ep.name,
        )
        return cid

    def _check_policy(self, run: Run, task: RunTask) -> None:
        """The task policy once more, as the container is made (it may have changed)."""
        problems = self.state.policy.task_problems(task.task_snapshot)
        problems += env_problems((run.directive_snapshot or {}).get("env") or {})
        if problems:
            loc, why = problems[0]
            raise ContainerStartFailed(
                f"refused by the task policy: {'.'.join(map(str, loc))}: {why}"
            )

    async def _create(self, docker: Any, run: Run, task: RunTask, host_id: int) -> str:
        """Create the attempt's container; an image thought present but gone is pulled."""
        config = spec.build(self.state.instance_id, run, task)
        try:
            return str(await self._until_cancel(docker.create(config)))
        except ImageUnavailable:
            self.state.pool.forget_image(host_id, config.image)
            await self._until_cancel(docker.ensure_image(config.image))
            return str(await self._until_cancel(docker.create(config)))

    async def _await_exit(
        self, task: RunTask, ep: Endpoint, cid: str, just_started: bool = False
    ) -> Outcome:
        """Wait for exit, a timeout (counted from the container's start), a cancel, or the
        host going away."""
        timeout = task.task_snapshot.get("timeout_seconds")
        started = task.started_at or clock.now()
        failures = 0
        while True:
            if self.cancel.is_set():
                return await self._stop_and_collect(ep, cid, TaskStatus.cancelled, "cancelled")
            budget = WAIT_BUDGET
            if timeout:
                left = started.timestamp() + timeout - clock.now().timestamp()
                if left <= 0:
                    why = f"timed out after {timeout}s"
                    return await self._stop_and_collect(ep, cid, TaskStatus.failed, why)
                budget = min(budget, left)
            try:
                code = await self._wait_once(ep, cid, budget, look=not just_started)
                just_started = False
            except HostUnreachable as exc:
                failures += 1
                trouble = await self._host_trouble(ep, str(exc.detail), failures)
                if trouble.host_lost:
                    return trouble
                continue
            failures = 0
            if code == "vanished":
                return Outcome(TaskStatus.failed, error=f"container {cid[:12]} vanished")
            if isinstance(code, int):
                return await self._collect(ep, cid, code)

    async def _wait_once(
        self, ep: Endpoint, cid: str, budget: float, look: bool = True
    ) -> int | str | None:
        """One bounded wait: an exit code, "vanished", or None (budget passed or a cancel).
        `look`: inspect first (not needed right after this supervisor started it)."""
        async with self.state.pool.docker(ep) as docker:
            if look:
                found = await docker.inspect(cid)
                if found is None:
                    return "vanished"
                if found.exit_code is not None:
                    return int(found.exit_code)
            try:
                return await self._until_cancel(docker.wait(cid, budget), poked=True)
            except _Cancelled:
                return None

    async def _collect(self, ep: Endpoint, cid: str, code: int) -> Outcome:
        logs, truncated = await self._logs(ep, cid)
        ok = code == 0
        return Outcome(
            TaskStatus.succeeded if ok else TaskStatus.failed,
            exit_code=code,
            error=None if ok else f"exited with code {code}",
            logs=logs,
            truncated=truncated,
        )

    async def _stop_and_collect(
        self, ep: Endpoint, cid: str, status: TaskStatus, why: str
    ) -> Outcome:
        """Stop the container and read its end; retried while the host is merely flaky."""
        failures = 0
        while True:
            try:
                async with self.state.pool.docker(ep) as docker:
                    await docker.stop(cid, self.grace)
                    found = await docker.inspect(cid)
                break
            except HostUnreachable as exc:
                self.settled.set()  # a cancel answers now: the stop cannot be confirmed yet
                failures += 1
                trouble = await self._host_trouble(ep, str(exc.detail), failures)
                if trouble.host_lost:
                    return Outcome(status, error=f"{why}; {trouble.error}", host_lost=True)
            except EngineError as exc:
                self.settled.set()
                failures += 1
                if failures >= STOP_TRIES:
                    self.leftover = True
                    return Outcome(status, error=f"{why}; stopping failed: {exc.detail}")
                await sleep_backoff(failures)
        logs, truncated = await self._logs(ep, cid)
        code = found.exit_code if found else None
        return Outcome(status, exit_code=code, error=why, logs=logs, truncated=truncated)

    async def _logs(self, ep: Endpoint, cid: str) -> tuple[str, bool]:
        try:
            async with self.state.pool.docker(ep) as docker:
                return await docker.logs_tail(cid, self.state.settings.max_log_bytes)
        except EngineError as exc:
            return f"[dockfleet: logs unavailable: {exc.detail}]\n", False

    async def _host_trouble(self, ep: Endpoint, error: str, failures: int = 1) -> Outcome:
        """Ask for a live check of the host: lost (checks failing for longer than the bound)
        → the run leaves it; merely flaky → retry the same step after a back-off."""
        assert self.state.monitor is not None
        await self.state.monitor.check(ep.host_id)
        async with self.state.db.sessions() as session:
            host = await session.get(WorkerHost, ep.host_id)
        lost_after = self.state.settings.host_lost_after_seconds
        now = clock.now()
        if host is None or is_lost(host.healthy, host.unhealthy_since, now, lost_after):
            return Outcome(TaskStatus.failed, error=f"host unreachable: {error}", host_lost=True)
        log.warning("run %s: %s (retrying)", self.run_id, error)
        cap = 5.0
        if host.unhealthy_since is not None:  # look again right when it would count as lost
            cap = max(0.2, lost_after - (now - host.unhealthy_since).total_seconds() + 0.1)
        await sleep_backoff(failures, cap=min(5.0, cap))
        return Outcome(TaskStatus.running)

    async def _remove(self, ep: Endpoint, cid: str) -> bool:
        """Remove a container; True when it is known gone."""
        for attempt in range(3):
            try:
                async with self.state.pool.docker(ep) as docker:
                    await docker.remove(cid)
                return True
            except EngineError as exc:
                log.warning(
                    "could not remove container %s on %s: %s", cid[:12], ep.name, exc.detail
                )
                await sleep_backoff(attempt)
        return False

    # -- recording -------------------------------------------------------------------------------

    async def _record(self, task: RunTask, out: Outcome, ep: Endpoint) -> bool:
        """Store an attempt's end; True to go on with the next task (or attempt)."""
        if out.status == TaskStatus.running:
            return True  # host flaky: try the same attempt again
        if out.host_lost:
            if await self.records.host_lost(task, out.error) == RunStatus.pending:
                self.requeued = Need(
                    self.run_id, self.gpu_need, self.target_host_id, False, *self.gpu_filters
                )
            return False
        cancelled = out.status == TaskStatus.cancelled or self.cancel.is_set()
        retry = out.status == TaskStatus.failed and retries_left(task) and not cancelled
        await self.records.save_attempt(task, out, retry)
        if cancelled or (out.status == TaskStatus.failed and not retry):
            await self._conclude(ep, task, cancelled)
            return False
        if task.container_id and not await self._remove(ep, task.container_id):
            self.leftover = True
        return True

    async def _conclude(self, ep: Endpoint, task: RunTask, cancelled: bool) -> None:
        """End the run after its `task` ended it (cancelled, or failed for good): remove the
        task's container, then the run is cancelled or failed, never `succeeded`, and no later
        task runs. Also the way on when the task's end was stored but the run's was not."""
        if task.container_id and not await self._remove(ep, task.container_id):
            self.leftover = True
        if cancelled:
            await self.records.finish(RunStatus.cancelled, "cancelled", not self.leftover, _SKIP)
        else:
            error = f"task {task.task_name} failed: {task.error}"
            await self.records.finish(RunStatus.failed, error, not self.leftover, _SKIP)

    async def _cancel(self, run: Run, current: RunTask | None, ep: Endpoint) -> None:
        if current is not None and current.status == TaskStatus.running:
            cid = current.container_id or self._name(run, current)
            out = await self._stop_and_collect(ep, cid, TaskStatus.cancelled, "cancelled")
            await self._record(current, out, ep)
            return
        await self.records.finish(RunStatus.cancelled, "cancelled", not self.leftover, _SKIP)

    async def _give_up(self, exc: Exception) -> None:
        """Too many internal errors: stop and remove the container, then fail the run."""
        error = f"internal error ({type(exc).__name__}); see the server log"
        try:
            run, tasks = await self.records.load()
            host = await self._host(run)
            current = next((t for t in tasks if t.status == "running"), None)
            gone = not self.leftover
            if host is not None and current is not None:
                ep = Endpoint.of(host)
                cid = current.container_id or self._name(run, current)
                try:
                    async with self.state.pool.docker(ep) as docker:
                        await docker.stop(cid, self.grace)
                except EngineError:
                    pass
                gone = await self._remove(ep, cid) and gone
            await self.records.finish(RunStatus.failed, error, gone, _SKIP)
        except Exception:  # still failing: the run stays ours; the scheduler drives it again
            log.exception("supervisor of run %s could not fail the run cleanly", self.run_id)


_SKIP = TaskStatus.skipped


def _parse(value: str | None) -> datetime | None:
    """Docker's RFC 3339 time (nanoseconds, Z) as an aware datetime."""
    if not value or value.startswith("0001-"):
        return None
    head, _, frac = value.rstrip("Z").partition(".")
    try:
        parsed = datetime.fromisoformat(head + ("." + frac[:6] if frac else "") + "+00:00")
    except ValueError:
        return None
    return parsed
