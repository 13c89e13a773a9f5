"""Supervisor: drives one run on its host, task after task, one container at a time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from app import clock
from app.deps import AppState
from app.engine import containers
from app.engine.endpoint import Endpoint
from app.errors import EngineError, HostUnreachable
from app.hosts.eligibility import is_stale
from app.hosts.models import WorkerHost
from app.runs import store
from app.runs.models import FINAL, Run, RunStatus, RunTask, TaskStatus
from app.scheduling import records, spec
from app.scheduling.records import Outcome

log = logging.getLogger("dockfleet.supervisor")
POLL_SECONDS = 2.0


class Supervisor:
    """Runs every task of one run in order; survives restarts by finding its containers again."""

    def __init__(self, state: AppState, run_id: int, on_change: Callable[[], None]) -> None:
        self.state = state
        self.run_id = run_id
        self.on_change = on_change
        self.cancel = asyncio.Event()
        self.grace = state.settings.stop_timeout_seconds

    async def drive(self) -> None:
        """Run until the run is final (or sent back to pending); never raises but on shutdown."""
        try:
            await self._drive()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("supervisor of run %s crashed", self.run_id)
            await self._fail_run(f"internal error: {type(exc).__name__}: {exc}")
        finally:
            self.on_change()

    async def _load(self) -> tuple[Run, list[RunTask], WorkerHost | None]:
        async with self.state.db.sessions() as session:
            run = await store.get_or_raise(session, self.run_id)
            tasks = (await store.tasks_of(session, [self.run_id]))[self.run_id]
            host = await session.get(WorkerHost, run.worker_host_id) if run.worker_host_id else None
            return run, tasks, host

    async def _drive(self) -> None:
        while True:
            run, tasks, host = await self._load()
            if RunStatus(run.status) in FINAL or run.status == RunStatus.pending:
                return
            if host is None:
                await self._fail_run("host was removed")
                return
            current = next((t for t in tasks if t.status in ("pending", "running")), None)
            ep = Endpoint.of(host)
            if run.cancel_requested or self.cancel.is_set():
                await self._finish_cancelled(run, current, ep)
                return
            if current is None:
                await self._finish(RunStatus.succeeded)
                return
            outcome = await self._attempt(run, current, ep)
            if not await self._record(current, outcome, ep):
                return

    # -- one attempt ---------------------------------------------------------------------------

    async def _attempt(self, run: Run, task: RunTask, ep: Endpoint) -> Outcome:
        """Start (or adopt) the task's container and wait for it to end."""
        if task.status == TaskStatus.pending:
            await records.begin_attempt(self.state.db, task)
        name = spec.container_name(self.state.instance_id, run.id or 0, task.id or 0, task.attempt)
        try:
            cid = await self._ensure_started(run, task, ep, name)
        except HostUnreachable as exc:
            return await self._host_trouble(ep, str(exc.detail))
        except EngineError as exc:
            await self._remove_quietly(ep, name)
            return Outcome(TaskStatus.failed, error=str(exc.detail))
        if cid is None:  # container gone after it had run: its result is lost
            return Outcome(
                TaskStatus.failed, error="container disappeared before its result was read"
            )
        return await self._await_exit(run, task, ep, cid)

    async def _ensure_started(self, run: Run, task: RunTask, ep: Endpoint, name: str) -> str | None:
        """The id of the running (or already exited) container of this attempt."""
        pool = self.state.pool
        async with pool.docker(ep) as docker:
            found = await containers.state(docker, task.container_id or name)
            if found is not None and found.status != "created":
                await records.set_container(self.state.db, task, found.id)
                await self._mark_running(run)
                return found.id
            if found is None and task.container_id:
                return None
            await containers.ensure_image(docker, task.task_snapshot["image"])
            cid = await containers.create(docker, spec.build(self.state.instance_id, run, task))
        await records.set_container(self.state.db, task, cid)
        async with pool.docker(ep) as docker:
            await containers.start(docker, cid)
        await self._mark_running(run)
        log.info(
            "run %s task %s attempt %s started %s on %s",
            run.id,
            task.task_name,
            task.attempt,
            cid[:12],
            ep.name,
        )
        return cid

    async def _mark_running(self, run: Run) -> None:
        if run.status == RunStatus.starting:
            await records.mark_running(self.state.db, self.run_id)
            run.status = RunStatus.running.value

    async def _await_exit(self, run: Run, task: RunTask, ep: Endpoint, cid: str) -> Outcome:
        """Wait for exit, a timeout, a cancel or the host going away."""
        timeout = task.task_snapshot.get("timeout_seconds")
        deadline = None
        if timeout and task.started_at:
            deadline = task.started_at.timestamp() + timeout
        failures = 0
        while True:
            try:
                code = await self._wait_once(ep, cid, deadline)
            except HostUnreachable as exc:
                failures += 1
                trouble = await self._host_trouble(ep, str(exc.detail), failures)
                if trouble.host_lost:
                    return trouble
                continue
            if code == "vanished":
                return Outcome(TaskStatus.failed, error=f"container {cid[:12]} vanished")
            if code == "cancel":
                return await self._stop_and_collect(ep, cid, TaskStatus.cancelled, "cancelled")
            if code == "timeout":
                return await self._stop_and_collect(
                    ep, cid, TaskStatus.failed, f"timed out after {timeout}s"
                )
            if code is not None:
                return await self._collect(ep, cid, int(code))

    async def _wait_once(self, ep: Endpoint, cid: str, deadline: float | None) -> int | str | None:
        """One bounded wait: an exit code, "timeout", "cancel", or None to wait again."""
        if await self._cancel_requested():
            return "cancel"
        budget = POLL_SECONDS * 5
        if deadline is not None:
            left = deadline - clock.now().timestamp()
            if left <= 0:
                return "timeout"
            budget = min(budget, left)
        async with self.state.pool.docker(ep) as docker:
            # A silent network (no RST, no FIN) must not hang the run: bound the quick call.
            async with asyncio.timeout(self.state.settings.docker_timeout_seconds):
                found = await containers.state(docker, cid)
            if found is None:
                return "vanished"
            if found.exit_code is not None:
                return found.exit_code
            waiter = asyncio.ensure_future(containers.wait(docker, cid))
            stopper = asyncio.ensure_future(self.cancel.wait())
            done, _ = await asyncio.wait(
                {waiter, stopper}, timeout=budget, return_when=asyncio.FIRST_COMPLETED
            )
            for fut in (waiter, stopper):
                if fut not in done:
                    fut.cancel()
            await asyncio.gather(waiter, stopper, return_exceptions=True)
            if waiter in done:
                return waiter.result()
            return "cancel" if stopper in done else None

    async def _cancel_requested(self) -> bool:
        if self.cancel.is_set():
            return True
        async with self.state.db.sessions() as session:
            run = await session.get(Run, self.run_id)
            return bool(run and run.cancel_requested)

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
        try:
            async with self.state.pool.docker(ep) as docker:
                await containers.stop(docker, cid, self.grace)
                found = await containers.state(docker, cid)
        except EngineError as exc:
            return Outcome(status, error=f"{why}; stopping failed: {exc.detail}")
        logs, truncated = await self._logs(ep, cid)
        code = found.exit_code if found else None
        return Outcome(status, exit_code=code, error=why, logs=logs, truncated=truncated)

    async def _logs(self, ep: Endpoint, cid: str) -> tuple[str, bool]:
        try:
            async with self.state.pool.docker(ep) as docker:
                return await containers.logs_tail(docker, cid, self.state.settings.max_log_bytes)
        except EngineError as exc:
            return f"[dockfleet: logs unavailable: {exc.detail}]\n", False

    async def _host_trouble(self, ep: Endpoint, error: str, failures: int = 1) -> Outcome:
        """Retry while the host is merely flaky; past the stale limit it is lost."""
        async with self.state.db.sessions() as session:
            host = await session.get(WorkerHost, ep.host_id)
        stale_after = self.state.settings.stale_after_seconds
        if host is None or is_stale(host.last_seen_at, clock.now(), stale_after):
            return Outcome(TaskStatus.failed, error=f"host unreachable: {error}", host_lost=True)
        log.warning("run %s: %s (retrying)", self.run_id, error)
        await containers.sleep_backoff(failures)
        return Outcome(TaskStatus.running)

    async def _remove_quietly(self, ep: Endpoint, cid: str) -> None:
        try:
            async with self.state.pool.docker(ep) as docker:
                await containers.remove(docker, cid)
        except EngineError:
            log.warning("could not remove container %s on %s", cid[:12], ep.name)

    # -- recording -------------------------------------------------------------------------------

    async def _record(self, task: RunTask, out: Outcome, ep: Endpoint) -> bool:
        """Store an attempt's end; True to go on with the next task (or attempt)."""
        if out.status == TaskStatus.running:
            return True  # host flaky: try the same attempt again
        if out.host_lost:
            await records.host_lost(self.state.db, self.run_id, task, out.error)
            return False
        retry = out.status == TaskStatus.failed and records.retries_left(task)
        await records.save_attempt(self.state.db, task, out, retry)
        if task.container_id:
            await self._remove_quietly(ep, task.container_id)
        if out.status == TaskStatus.cancelled:
            await self._finish(RunStatus.cancelled, error="cancelled")
            return False
        if out.status == TaskStatus.failed and not retry:
            await self._finish(RunStatus.failed, error=f"task {task.task_name} failed: {out.error}")
            return False
        return True

    async def _finish_cancelled(self, run: Run, current: RunTask | None, ep: Endpoint) -> None:
        if current is not None and current.status == TaskStatus.running:
            name = current.container_id or spec.container_name(
                self.state.instance_id, run.id or 0, current.id or 0, current.attempt
            )
            out = await self._stop_and_collect(ep, name, TaskStatus.cancelled, "cancelled")
            await self._record(current, out, ep)
            return
        await self._finish(RunStatus.cancelled, error="cancelled")

    async def _finish(self, status: RunStatus, error: str | None = None) -> None:
        await records.finish(self.state.db, self.run_id, status, error)

    async def _fail_run(self, error: str) -> None:
        try:
            await self._finish(RunStatus.failed, error=error)
        except Exception:
            log.exception("could not mark run %s failed", self.run_id)
