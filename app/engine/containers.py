"""Container operations for the supervisor and reconciler: pull, create, start, wait, logs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiodocker

from app.errors import ContainerStartFailed, ImageUnavailable

LABEL_PREFIX = "dockfleet."
MANAGED = "dockfleet.managed"


@dataclass
class ContainerSpec:
    """Everything one task's container needs."""

    name: str
    image: str
    command: list[str] | None
    env: dict[str, str]
    labels: dict[str, str]
    binds: list[str] = field(default_factory=list)
    network_mode: str | None = None
    cpu_limit: float | None = None
    memory_limit_mb: int | None = None
    gpu_ids: list[str] = field(default_factory=list)

    def config(self) -> dict[str, Any]:
        """The Docker API body of containers/create."""
        host: dict[str, Any] = {}
        if self.binds:
            host["Binds"] = self.binds
        if self.network_mode:
            host["NetworkMode"] = self.network_mode
        if self.cpu_limit:
            host["NanoCpus"] = int(self.cpu_limit * 1e9)
        if self.memory_limit_mb:
            host["Memory"] = self.memory_limit_mb * 1024 * 1024
        if self.gpu_ids:
            host["DeviceRequests"] = [
                {"Driver": "nvidia", "DeviceIDs": list(self.gpu_ids), "Capabilities": [["gpu"]]}
            ]
        config: dict[str, Any] = {
            "Image": self.image,
            "Env": [f"{k}={v}" for k, v in sorted(self.env.items())],
            "Labels": self.labels,
            "HostConfig": host,
        }
        if self.command:
            config["Cmd"] = self.command
        return config


@dataclass
class ContainerState:
    """What Docker says about one container now."""

    id: str
    status: str  # created, running, exited, dead, ...
    exit_code: int | None
    error: str | None
    labels: dict[str, str]


async def ensure_image(docker: aiodocker.Docker, image: str) -> None:
    """Pull the image if the daemon does not have it; ImageUnavailable when that fails."""
    try:
        await docker.images.inspect(image)
        return
    except aiodocker.DockerError as exc:
        if exc.status != 404:
            raise
    try:
        await docker.images.pull(image)
    except aiodocker.DockerError as exc:
        raise ImageUnavailable(
            f"image {image} is missing and could not be pulled: {exc.message}"
        ) from exc


async def create(docker: aiodocker.Docker, spec: ContainerSpec) -> str:
    """Create the container (idempotent by name: an existing one is returned)."""
    try:
        container = await docker.containers.create(spec.config(), name=spec.name)
        return str(container.id)
    except aiodocker.DockerError as exc:
        if exc.status == 409:  # already created by an earlier attempt of ours
            data = await docker.containers.get(spec.name)
            return str(data.id)
        if exc.status == 404:
            raise ImageUnavailable(f"image {spec.image} not found: {exc.message}") from exc
        if exc.status in (400, 500):
            raise ContainerStartFailed(f"container could not be created: {exc.message}") from exc
        raise


async def start(docker: aiodocker.Docker, container_id: str) -> None:
    """Start a created container; ContainerStartFailed with Docker's reason."""
    try:
        await docker.containers.container(container_id).start()
    except aiodocker.DockerError as exc:
        if exc.status in (400, 500):
            raise ContainerStartFailed(f"container did not start: {exc.message}") from exc
        raise


async def state(docker: aiodocker.Docker, container_id: str) -> ContainerState | None:
    """The container's state, or None when it no longer exists."""
    try:
        data = await docker.containers.container(container_id).show()
    except aiodocker.DockerError as exc:
        if exc.status == 404:
            return None
        raise
    st = data.get("State") or {}
    running = st.get("Status") in ("running", "restarting", "paused")
    return ContainerState(
        id=str(data["Id"]),
        status=str(st.get("Status")),
        exit_code=None if running or st.get("Status") == "created" else st.get("ExitCode"),
        error=st.get("Error") or None,
        labels=(data.get("Config") or {}).get("Labels") or {},
    )


async def wait(docker: aiodocker.Docker, container_id: str) -> int:
    """Block until the container exits; its exit code."""
    result = await docker.containers.container(container_id).wait()
    return int(result.get("StatusCode", -1))


async def stop(docker: aiodocker.Docker, container_id: str, grace: int) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds (Docker does the kill)."""
    try:
        await docker.containers.container(container_id).stop(t=grace)
    except aiodocker.DockerError as exc:
        if exc.status not in (304, 404):  # already stopped / gone
            raise


async def logs_tail(
    docker: aiodocker.Docker, container_id: str, max_bytes: int
) -> tuple[str, bool]:
    """The last `max_bytes` of stdout+stderr, and whether older output was dropped."""
    lines = max(100, max_bytes // 40)
    try:
        chunks = await docker.containers.container(container_id).log(
            stdout=True, stderr=True, tail=str(lines)
        )
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


async def follow_logs(docker: aiodocker.Docker, container_id: str) -> AsyncIterator[str]:
    """Stream the container's output from the start until it exits."""
    stream = docker.containers.container(container_id).log(stdout=True, stderr=True, follow=True)
    async for chunk in stream:
        yield chunk


async def remove(docker: aiodocker.Docker, container_id: str) -> None:
    """Remove the container (forcefully); gone already is fine."""
    try:
        await docker.containers.container(container_id).delete(force=True)
    except aiodocker.DockerError as exc:
        if exc.status not in (404, 409):
            raise


async def list_ours(docker: aiodocker.Docker, instance: str) -> list[ContainerState]:
    """Every container carrying our labels for this instance, running or not."""
    items = await docker.containers.list(
        all=True, filters={"label": [f"{MANAGED}=true", f"dockfleet.instance={instance}"]}
    )
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


async def sleep_backoff(attempt: int, cap: float = 5.0) -> None:
    """Wait a little longer after each failed attempt."""
    await asyncio.sleep(min(cap, 0.25 * 2**attempt))
