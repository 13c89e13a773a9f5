"""The task policy: what a task definition may ask of a worker host.

Whoever defines a task decides what runs on every host, so a task may not take the host: no
`container:*` or (unless allowed) `host` network, binds only from DOCKFLEET_ALLOWED_BIND_SOURCES
and read-only unless the rule says `rw`, never the Docker socket, no privileged mode, added
capabilities or devices, and no env names dockfleet reserves for the GPUs it assigns. Checked
when a task (or a directive's env) is written, again at launch and again when the container is
made — so a policy tightened later applies to tasks defined before it.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from app.errors import InvalidField

RESERVED_ENV = re.compile(r"^(NVIDIA_.*|CUDA_VISIBLE_DEVICES|DOCKER_.*)$")
DOCKER_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock")
NETWORK_MODES = ("none", "bridge", "host")
# A task definition has no fields for privileged mode, capabilities or devices (its schema
# refuses them by name, tasks/schemas.py FORBIDDEN), and the container spec never sets them.

Loc = list[str | int]


@dataclass(frozen=True)
class BindRule:
    """A host path (and everything below it) tasks may bind, read-only unless `writable`."""

    source: str
    writable: bool

    def covers(self, path: str) -> bool:
        return path == self.source or path.startswith(self.source.rstrip("/") + "/")

    def __str__(self) -> str:
        return f"{self.source}:{'rw' if self.writable else 'ro'}"


def parse_bind_rules(text: str) -> tuple[BindRule, ...]:
    """DOCKFLEET_ALLOWED_BIND_SOURCES: a comma list of `/abs/path[:ro|:rw]` (ro by default)."""
    rules = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        path, _, mode = part.partition(":")
        if mode not in ("", "ro", "rw"):
            raise ValueError(f"{part!r}: the mode must be ro or rw")
        if not path.startswith("/") or ".." in path.split("/"):
            raise ValueError(f"{part!r}: give an absolute path without '..'")
        norm = posixpath.normpath(path)
        if _holds_docker_socket(norm):
            raise ValueError(
                f"{part!r}: the Docker socket (or a directory holding it) is never bound"
            )
        rules.append(BindRule(norm, mode == "rw"))
    return tuple(rules)


def parse_network_modes(text: str) -> frozenset[str]:
    """DOCKFLEET_TASK_NETWORK_MODES: a comma list out of none, bridge, host."""
    modes = frozenset(p.strip() for p in text.split(",") if p.strip())
    unknown = sorted(modes - set(NETWORK_MODES))
    if unknown:
        raise ValueError(f"unknown network modes {unknown}; use none, bridge and/or host")
    return modes


def _holds_docker_socket(path: str) -> bool:
    return any(sock == path or sock.startswith(path.rstrip("/") + "/") for sock in DOCKER_SOCKETS)


@dataclass(frozen=True)
class TaskPolicy:
    """The rules, built once from the settings."""

    network_modes: frozenset[str]
    bind_rules: tuple[BindRule, ...]

    @classmethod
    def of(cls, settings: Any) -> TaskPolicy:
        """The policy of these settings."""
        return cls(
            parse_network_modes(settings.task_network_modes),
            parse_bind_rules(settings.allowed_bind_sources),
        )

    def _bind(self, i: int, bind: str) -> str | None:
        parts = bind.split(":")
        source, mode = parts[0], parts[2] if len(parts) == 3 else "rw"
        rules = ", ".join(map(str, self.bind_rules)) or "none"
        if not source.startswith("/"):
            return "only host paths may be bound (named volumes are not allowed by the policy)"
        if ".." in source.split("/"):
            return "a bind source may not contain '..'"
        path = posixpath.normpath(source)
        if _holds_docker_socket(path):
            return "the Docker socket (or a directory holding it) is never bound"
        rule = next((r for r in self.bind_rules if r.covers(path)), None)
        if rule is None:
            return f"{path} is not in DOCKFLEET_ALLOWED_BIND_SOURCES ({rules})"
        if mode != "ro" and not rule.writable:
            return f"{path} may only be bound read-only (rule {rule}): end the bind with :ro"
        return None

    def task_problems(self, fields: Mapping[str, Any]) -> list[tuple[Loc, str]]:
        """What in a task's fields breaks the policy, as (field path, rule) pairs."""
        out: list[tuple[Loc, str]] = []
        mode = fields.get("network_mode")
        if mode is not None:
            if str(mode).startswith("container:"):
                out.append(
                    (["network_mode"], "joining another container's network is never allowed")
                )
            elif mode not in self.network_modes:
                allowed = ", ".join(sorted(self.network_modes))
                out.append((["network_mode"], f"must be one of {allowed} (task policy)"))
        for i, bind in enumerate(fields.get("binds") or []):
            problem = self._bind(i, str(bind))
            if problem:
                out.append((["binds", i], problem))
        out += env_problems(fields.get("env") or {})
        return out


def refuse(problems: list[tuple[Loc, str]], prefix: Loc | None = None) -> None:
    """A 422 naming every field that breaks the policy, and the rule it breaks; or nothing."""
    if not problems:
        return
    errors: list[Any] = []
    for loc, message in problems:
        err = InvalidField([*(prefix or []), *loc], message)
        errors += err.detail
    first = InvalidField("", "")
    first.detail = errors
    raise first


def env_problems(
    env: Mapping[str, Any] | Iterable[str], field: str = "env"
) -> list[tuple[Loc, str]]:
    """Env names dockfleet reserves (it sets them for the GPUs it assigns, or for Docker)."""
    return [
        (
            [field, name],
            f"{name} is reserved: NVIDIA_*, CUDA_VISIBLE_DEVICES and DOCKER_* are "
            "set by dockfleet for the GPUs it assigns, never by a task",
        )
        for name in env
        if RESERVED_ENV.match(str(name))
    ]
