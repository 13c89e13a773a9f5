"""What a container is to dockfleet: the spec it is created from and the state Docker reports."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Any

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
    # Every GPU with these driver capabilities (the GPU probe only: "utility" for nvidia-smi).
    all_gpus: tuple[str, ...] = ()

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
        elif self.all_gpus:
            host["DeviceRequests"] = [
                {"Driver": "nvidia", "Count": -1, "Capabilities": [["gpu", *self.all_gpus]]}
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
    started_at: str | None = None


async def sleep_backoff(attempt: int, cap: float = 5.0) -> None:
    """Wait a little longer after each failed attempt, with jitter (never in lockstep)."""
    delay = min(cap, 0.25 * 2**attempt)
    await asyncio.sleep(delay * random.uniform(0.5, 1.0))
