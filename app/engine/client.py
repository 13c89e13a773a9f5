"""DockerClient: every Docker call dockfleet makes, each under an explicit deadline.

A silent network (no RST, no FIN) or a frozen daemon must never hang a caller: quick calls are
bounded by `Deadlines.call`, a pull by `Deadlines.pull`, a stop by its grace plus `call`, a wait
by the budget the caller gives, log reads by bytes and time. A deadline that passes raises
`TimeoutError`, which the pool translates into HostUnreachable (a pull's into PullTimedOut).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiodocker
import aiohttp

from app.engine.containers import MANAGED, ContainerSpec, ContainerState
from app.errors import ContainerStartFailed, ImageUnavailable, PullTimedOut


@dataclass(frozen=True)
class Deadlines:
    """How long each kind of Docker call may take, in seconds."""

    call: float = 10.0
    pull: float = 1800.0

    def client_timeout(self) -> aiohttp.ClientTimeout:
        """aiohttp's timeout for the client: quick calls end within `call`."""
        return aiohttp.ClientTimeout(total=self.call, connect=self.call, sock_connect=self.call)


@dataclass
class DockerFacts:
    """What `version` and `info` tell about a daemon."""

    docker_version: str | None
    api_version: str | None
    ncpu: int | None
    mem_total: int | None
    runtimes: list[str]
    info: Mapping[str, Any]


def _state(data: Mapping[str, Any]) -> ContainerState:
    st = data.get("State") or {}
    status = str(st.get("Status"))
    running = status in ("running", "restarting", "paused")
    return ContainerState(
        id=str(data["Id"]),
        status=status,
        exit_code=None if running or status == "created" else st.get("ExitCode"),
        error=st.get("Error") or None,
        labels=(data.get("Config") or {}).get("Labels") or {},
        started_at=st.get("StartedAt"),
    )


@dataclass
class Finished:
    """A short container's end: its exit code (None: still running at the deadline) and output."""

    exit_code: int | None
    stdout: str
    stderr: str


class DockerClient:
    """One daemon's Docker API, as the supervisor, reconciler and monitor use it."""

    def __init__(self, docker: aiodocker.Docker, deadlines: Deadlines) -> None:
        self.raw = docker
        self.deadlines = deadlines

    # -- liveness and facts ---------------------------------------------------------------------

    async def ping(self) -> None:
        """HEAD /_ping (GET where HEAD is refused): the cheapest proof the daemon answers."""
        async with asyncio.timeout(self.deadlines.call):
            async with self.raw._query("_ping", method="HEAD", versioned_api=False) as resp:
                if resp.status == 405:
                    async with self.raw._query("_ping", versioned_api=False) as again:
                        await again.read()
                else:
                    await resp.read()

    async def facts(self) -> DockerFacts:
        """Version and info (refreshed on (re)connect and every few minutes, not every check)."""
        async with asyncio.timeout(self.deadlines.call):
            version: Mapping[str, Any] = await self.raw.version()
            info: Mapping[str, Any] = await self.raw.system.info()
        return DockerFacts(
            docker_version=version.get("Version"),
            api_version=version.get("ApiVersion"),
            ncpu=info.get("NCPU"),
            mem_total=info.get("MemTotal"),
            runtimes=sorted((info.get("Runtimes") or {}).keys()),
            info=info,
        )

    # -- images ---------------------------------------------------------------------------------

    async def has_image(self, image: str) -> bool:
        """Whether the daemon has the image locally."""
        try:
            async with asyncio.timeout(self.deadlines.call):
                await self.raw.images.inspect(image)
            return True
        except aiodocker.DockerError as exc:
            if exc.status == 404:
                return False
            raise

    async def ensure_image(self, image: str) -> None:
        """Pull the image if missing, within the pull deadline (ImageUnavailable/PullTimedOut)."""
        if await self.has_image(image):
            return
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.deadlines.pull):
                items = await self.raw.images.pull(image)
        except TimeoutError:
            raise PullTimedOut(
                f"pull of image {image} did not finish within {self.deadlines.pull:g}s"
            ) from None
        except aiodocker.DockerError as exc:
            if exc.status == 900:  # the connection failed: the host's trouble, not the image's
                raise
            raise ImageUnavailable(
                f"image {image} is missing and could not be pulled: {exc.message}"
            ) from exc
        errors = [str(i["error"]) for i in items or [] if isinstance(i, dict) and i.get("error")]
        if errors:
            raise ImageUnavailable(f"image {image} is missing and could not be pulled: {errors[0]}")
        if not await self.has_image(image):
            took = time.monotonic() - started
            raise ImageUnavailable(f"image {image} is still missing after a pull ({took:.1f}s)")

    async def can_pull(self, image: str) -> str | None:
        """None when the daemon's registry answers for the image (it could be pulled; nothing
        is downloaded), else why not."""
        try:
            async with asyncio.timeout(self.deadlines.call):
                await self.raw._query_json(f"distribution/{image}/json")
        except aiodocker.DockerError as exc:
            if exc.status == 900:
                raise
            return str(exc.message)
        except TimeoutError:
            return f"no answer from the registry within {self.deadlines.call:g}s"
        return None

    # -- containers -----------------------------------------------------------------------------

    async def create(self, spec: ContainerSpec) -> str:
        """Create the container (idempotent by name: an existing one is returned)."""
        try:
            async with asyncio.timeout(self.deadlines.call):
                container = await self.raw.containers.create(spec.config(), name=spec.name)
            return str(container.id)
        except aiodocker.DockerError as exc:
            if exc.status == 409:  # already created by an earlier attempt of ours
                async with asyncio.timeout(self.deadlines.call):
                    data = await self.raw.containers.get(spec.name)
                return str(data.id)
            if exc.status == 404:
                raise ImageUnavailable(f"image {spec.image} not found: {exc.message}") from exc
            if exc.status in (400, 500):
                raise ContainerStartFailed(
                    f"container could not be created: {exc.message}"
                ) from exc
            raise

    async def start(self, container_id: str) -> None:
        """Start a created container; ContainerStartFailed with Docker's reason."""
        try:
            async with asyncio.timeout(self.deadlines.call):
                await self.raw.containers.container(container_id).start()
        except aiodocker.DockerError as exc:
            if exc.status in (400, 500):
                raise ContainerStartFailed(f"container did not start: {exc.message}") from exc
            raise

    async def inspect(self, container_id: str) -> ContainerState | None:
        """The container's state, or None when it no longer exists."""
        try:
            async with asyncio.timeout(self.deadlines.call):
                data = await self.raw.containers.container(container_id).show()
        except aiodocker.DockerError as exc:
            if exc.status == 404:
                return None
            raise
        return _state(data)

    async def wait(self, container_id: str, budget: float) -> int | None:
        """The exit code once the container exits, or None if it still runs after `budget`."""
        container = self.raw.containers.container(container_id)
        try:
            async with asyncio.timeout(budget):
                result = await container.wait(timeout=aiohttp.ClientTimeout(total=budget + 1))
        except TimeoutError:
            return None
        return int(result.get("StatusCode", -1))

    async def stop(self, container_id: str, grace: int) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds (Docker does the kill)."""
        container = self.raw.containers.container(container_id)
        limit = grace + self.deadlines.call
        try:
            async with asyncio.timeout(limit):
                await container.stop(t=grace, timeout=aiohttp.ClientTimeout(total=limit))
        except aiodocker.DockerError as exc:
            if exc.status not in (304, 404):  # already stopped / gone
                raise

    async def remove(self, container_id: str) -> None:
        """Remove the container (forcefully); gone already is fine."""
        try:
            async with asyncio.timeout(self.deadlines.call):
                await self.raw.containers.container(container_id).delete(force=True)
        except aiodocker.DockerError as exc:
            if exc.status == 409 and "already in progress" in str(exc.message):
                return
            if exc.status != 404:
                raise

    async def logs_tail(self, container_id: str, max_bytes: int) -> tuple[str, bool]:
        """The last `max_bytes` of stdout+stderr, and whether older output was dropped."""
        lines = max(100, max_bytes // 40)
        container = self.raw.containers.container(container_id)
        try:
            async with asyncio.timeout(self.deadlines.call * 3):
                chunks = await container.log(stdout=True, stderr=True, tail=str(lines))
        except aiodocker.DockerError as exc:
            if exc.status == 404:
                return "", False
            raise
        text = "".join(chunks)
        data = text.encode("utf-8", "replace")
        truncated = len(chunks) >= lines or len(data) > max_bytes
        if len(data) > max_bytes:
            text = data[-max_bytes:].decode("utf-8", "ignore")
        return text, truncated

    async def follow_logs(
        self, container_id: str, max_bytes: int, max_seconds: float
    ) -> AsyncIterator[str]:
        """The container's output as it comes, until it exits, `max_bytes` or `max_seconds`."""
        stream = self.raw.containers.container(container_id).log(
            stdout=True, stderr=True, follow=True
        )
        sent = 0
        try:
            async with asyncio.timeout(max_seconds):
                async for chunk in stream:
                    sent += len(chunk)
                    if sent > max_bytes:
                        yield f"\n[dockfleet: live output stopped after {max_bytes} bytes]\n"
                        return
                    yield chunk
        except TimeoutError:
            yield f"\n[dockfleet: live output stopped after {max_seconds:g}s]\n"
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()

    async def run_to_end(self, spec: ContainerSpec, budget: float) -> Finished:
        """Create, start and wait for a short container (at most `budget` seconds), read its
        output, and remove it whatever happened (a container still running is killed)."""
        container_id = await self.create(spec)
        try:
            await self.start(container_id)
            code = await self.wait(container_id, budget)
            async with asyncio.timeout(self.deadlines.call):
                container = self.raw.containers.container(container_id)
                out = await container.log(stdout=True, stderr=False)
                err = await container.log(stdout=False, stderr=True)
            return Finished(exit_code=code, stdout="".join(out), stderr="".join(err))
        finally:
            await asyncio.shield(self.remove(container_id))

    async def remove_labelled(self, labels: list[str], older_than: float) -> int:
        """Remove the containers carrying every label (key=value) created more than
        `older_than` seconds ago, running or not (leftovers of a crash); how many."""
        async with asyncio.timeout(self.deadlines.call):
            items = await self.raw.containers.list(all=True, filters={"label": labels})
        old = [
            c for c in items if time.time() - float(c._container.get("Created") or 0) > older_than
        ]
        for c in old:
            await self.remove(str(c._container["Id"]))
        return len(old)

    async def list_ours(self, instance: str) -> list[ContainerState]:
        """Every container carrying our labels for this instance, running or not."""
        filters = {"label": [f"{MANAGED}=true", f"dockfleet.instance={instance}"]}
        async with asyncio.timeout(self.deadlines.call):
            items = await self.raw.containers.list(all=True, filters=filters)
        out = []
        for c in items:
            raw: dict[str, Any] = c._container
            out.append(
                ContainerState(
                    id=str(raw["Id"]),
                    status=str(raw.get("State")),
                    exit_code=None,
                    error=None,
                    labels=raw.get("Labels") or {},
                )
            )
        return out
