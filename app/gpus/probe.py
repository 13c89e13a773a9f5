"""GpuProber: runs the GPU probe container on a host and records what it found.

The probe goes through the host's own connector (socket, TLS, SSH tunnel), asks the NVIDIA
runtime for every GPU (`DeviceRequests` Count -1, capabilities gpu+utility, nothing else: no
binds, no network, no env), runs nvidia-smi's queries, and is removed whatever happened. It is
bounded by DOCKFLEET_GPU_PROBE_TIMEOUT_SECONDS (a pull of a missing image by the pull deadline),
is never a run and never holds a slot. Hosts declaring GPUs (or "auto") are probed on every
flip to healthy (the first good check included) and every DOCKFLEET_GPU_PROBE_SECONDS.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from sqlmodel import col, select

from app import clock, logs
from app.deps import AppState
from app.engine.client import DockerClient
from app.engine.containers import ContainerSpec
from app.engine.endpoint import Endpoint
from app.errors import ContainerStartFailed, EngineError, ImageUnavailable
from app.events import store as events
from app.gpus import store
from app.gpus.parse import parse, script
from app.hosts.models import WorkerHost
from app.tasks.models import TaskDefinition

log = logging.getLogger("dockfleet.gpus")
DEFAULT_IMAGE = "nvidia/cuda:12.4.1-base-ubuntu22.04"  # the seeded gpu_report task's image
PROBE_LABEL = "dockfleet.gpu_probe"
NO_DRIVER = "could not select device driver"
CONCURRENCY = 8


def wants_probe(capabilities: Mapping[str, Any] | None) -> bool:
    """Hosts that declare GPUs, or ask for them to be found, are probed on their own."""
    return (capabilities or {}).get("gpus") in (True, "auto")


def cdi_devices(info: Mapping[str, Any]) -> list[str]:
    """CDI device names the daemon advertises (`/info` DiscoveredDevices, Docker 27+)."""
    out = []
    for item in info.get("DiscoveredDevices") or []:
        if isinstance(item, Mapping) and str(item.get("Source", "")).lower() == "cdi":
            out.append(str(item.get("ID")))
    return out


def classify_start_failure(message: str) -> store.Outcome:
    """A probe container that would not start: no NVIDIA runtime, or a broken driver/hook."""
    if NO_DRIVER in message:
        return store.Outcome("no_runtime", "the daemon has no NVIDIA runtime (device driver)")
    return store.Outcome("driver_error", message)


def outcome_of(exit_code: int | None, stdout: str, stderr: str, budget: float) -> store.Outcome:
    """What the probe's output means."""
    if exit_code is None:
        return store.Outcome("error", f"the probe did not finish within {budget:g}s")
    report = parse(stdout)
    if report.error is None:
        return store.Outcome("ok", report=report)
    if report.exit_code == 127 or "not found" in report.error:
        why = "nvidia-smi was not found in the probe container (the NVIDIA runtime provides it)"
        return store.Outcome("error", f"{why}: {report.error}")
    if report.exit_code is None and exit_code != 0:  # the image's sh is missing or broken
        detail = (stderr or stdout).strip()[:300] or f"exit {exit_code}"
        return store.Outcome("error", f"the probe container failed: {detail}")
    return store.Outcome("driver_error", report.error)


class GpuProber:
    """Probes hosts' GPUs: on demand, after a host turns healthy, and on a timer."""

    def __init__(self, state: AppState) -> None:
        self.state = state
        settings = state.settings
        self.every = settings.gpu_probe_seconds
        self.timeout = settings.gpu_probe_timeout_seconds
        self.limits = store.Limits(settings.gpu_busy_mb, settings.gpu_max_temperature_c)
        self._limit = asyncio.Semaphore(CONCURRENCY)
        self._inflight: dict[int, asyncio.Task[store.Outcome | None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.Task[None] | None = None
        # Called with (host id, changes) after a probe changed GPUs' conditions.
        self.on_changes: list[Callable[[int, list[store.Change]], Any]] = []

    # -- one probe --------------------------------------------------------------------------------

    def probe(self, host_id: int) -> asyncio.Task[store.Outcome | None]:
        """Probe the host now (callers share a probe already running); None if it is gone."""
        task = self._inflight.get(host_id)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._probe(host_id))
            self._inflight[host_id] = task
            task.add_done_callback(lambda _t: self._inflight.pop(host_id, None))
        return task

    def probing(self, host_id: int) -> bool:
        """A probe of the host is running."""
        return host_id in self._inflight

    async def _image(self, host: WorkerHost) -> str:
        image = (host.capabilities or {}).get("gpu_probe_image")
        if image:
            return str(image)
        async with self.state.db.sessions() as session:
            query = select(TaskDefinition.image).where(col(TaskDefinition.name) == "gpu_report")
            seeded = (await session.exec(query)).first()
        return seeded or DEFAULT_IMAGE

    async def _probe(self, host_id: int) -> store.Outcome | None:
        async with self.state.db.sessions() as session:
            host = await session.get(WorkerHost, host_id)
            if host is None:
                return None
            ep = Endpoint.of(host)
            held = set(await store.held_ids(session, host_id))
        image = await self._image(host)
        started = time.perf_counter()
        async with self._limit:
            outcome = await self._run(ep, image)
        outcome.image = image
        outcome.duration_ms = round((time.perf_counter() - started) * 1000, 1)
        async with self.state.db.session_scope() as session:
            if await session.get(WorkerHost, host_id) is None:
                return None
            held |= set(await store.held_ids(session, host_id))
            changes = await store.record(session, host_id, outcome, held, self.limits)
            for change in changes:  # in the same transaction as the inventory
                await events.record(
                    session,
                    f"gpu.{change.condition}",
                    host_id=host_id,
                    host=ep.name,
                    uuid=change.uuid,
                    index=change.index,
                    reason=change.reason,
                )
        level = logging.INFO if outcome.status in ("ok", "no_runtime") else logging.WARNING
        log.log(level, "GPU probe of %s: %s %s", ep.name, outcome.status, outcome.error or "")
        scheduler = self.state.services.get("scheduler")
        if scheduler is not None:
            scheduler.gpus_changed(host_id)
        if changes:
            for listener in self.on_changes:
                listener(host_id, changes)
        return outcome

    def _spec(self, image: str, host_id: int) -> ContainerSpec:
        instance = self.state.instance_id
        return ContainerSpec(
            name=f"dockfleet-{instance}-gpuprobe-h{host_id}-{secrets.token_hex(4)}",
            image=image,
            command=["sh", "-c", script()],
            env={},
            labels={PROBE_LABEL: instance, f"{PROBE_LABEL}.host": str(host_id)},
            network_mode="none",
            all_gpus=("utility",),
        )

    async def _run(self, ep: Endpoint, image: str) -> store.Outcome:
        """The probe container through the host's connector; every failure becomes an outcome."""
        try:
            async with self.state.pool.docker(ep) as docker:
                return await self._in(docker, ep, image)
        except ContainerStartFailed as exc:
            return classify_start_failure(str(exc.detail))
        except ImageUnavailable as exc:
            return store.Outcome("error", f"probe image unavailable: {exc.detail}")
        except EngineError as exc:
            return store.Outcome("error", str(exc.detail))
        except TimeoutError:
            return store.Outcome("error", f"the probe did not finish within {self.timeout:g}s")

    async def _in(self, docker: DockerClient, ep: Endpoint, image: str) -> store.Outcome:
        labels = [f"{PROBE_LABEL}={self.state.instance_id}", f"{PROBE_LABEL}.host={ep.host_id}"]
        await docker.remove_labelled(labels, 2 * (self.timeout + docker.deadlines.call))
        facts = await docker.facts()
        await docker.ensure_image(image)  # bounded by the pull deadline
        async with asyncio.timeout(self.timeout + docker.deadlines.call):
            done = await docker.run_to_end(self._spec(image, ep.host_id), self.timeout)
        outcome = outcome_of(done.exit_code, done.stdout, done.stderr, self.timeout)
        outcome.cdi_devices = cdi_devices(facts.info)
        return outcome

    # -- when to probe ----------------------------------------------------------------------------

    def _spawn(self, host_id: int) -> None:
        async def guarded() -> None:
            try:
                await self.probe(host_id)
            except Exception:
                log.exception("GPU probe of host %s crashed", host_id)

        task = asyncio.get_running_loop().create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def host_changed(self, host_id: int) -> None:
        """A host's health flipped (monitor hook): probe it if it is healthy now and wants it."""

        async def maybe() -> None:
            async with self.state.db.sessions() as session:
                host = await session.get(WorkerHost, host_id)
                due = host is not None and host.enabled and host.healthy
                due = due and host is not None and wants_probe(host.capabilities)
            if due:
                await self.probe(host_id)

        task = asyncio.get_running_loop().create_task(maybe())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def due(self) -> list[int]:
        """Enabled healthy hosts that want probing and were not probed for an interval."""
        horizon = clock.now() - timedelta(seconds=self.every)
        async with self.state.db.sessions() as session:
            query = select(WorkerHost.id, WorkerHost.capabilities).where(
                col(WorkerHost.enabled), col(WorkerHost.healthy)
            )
            hosts = [(i, caps) for i, caps in (await session.exec(query)).all() if i is not None]
            probes = await store.probe_times(session)
        return [
            host_id
            for host_id, caps in hosts
            if wants_probe(caps) and (probes.get(host_id) is None or probes[host_id] < horizon)
        ]

    async def tick(self) -> dict[int, store.Outcome | None]:
        """Probe every due host once, concurrently (what tests call)."""
        ids = await self.due()
        results = await asyncio.gather(*(self.probe(i) for i in ids), return_exceptions=True)
        out: dict[int, store.Outcome | None] = {}
        for host_id, result in zip(ids, results, strict=True):
            if isinstance(result, BaseException):
                log.error("GPU probe of host %s crashed", host_id, exc_info=result)
                out[host_id] = None
            else:
                out[host_id] = result
        return out

    async def run(self) -> None:
        """Probe due hosts, forever (a round every few seconds; each host per interval)."""
        pause = min(self.every, 5.0)
        while True:
            try:
                for host_id in await self.due():
                    if not self.probing(host_id):
                        self._spawn(host_id)
            except Exception:
                logs.pass_failed(log, "GPU probe round failed")
            await asyncio.sleep(pause)

    def start(self) -> None:
        """Start the timer (off when DOCKFLEET_GPU_PROBE_SECONDS is 0)."""
        if self.every > 0 and self._loop is None:
            self._loop = asyncio.get_running_loop().create_task(self.run(), name="gpu-prober")

    async def stop(self) -> None:
        """Stop the timer and any probe still running (their containers are removed)."""
        tasks = [t for t in [self._loop, *self._tasks, *self._inflight.values()] if t]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._loop = None
