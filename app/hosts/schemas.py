"""The worker-host API's schemas: host types, capabilities, SSH/TLS configs, bodies and answers.

Pydantic and the standard library only, so the client and the CLI load no database layer.
"""

from __future__ import annotations

import os
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, Strict, model_validator

from app.limits import (
    MAX_CONCURRENCY,
    MAX_GPUS,
    MAX_LABEL_KEY,
    MAX_LABEL_VALUE,
    MAX_LABELS,
    MAX_NAME,
    MAX_PATH,
)


class HostType(StrEnum):
    """How dockfleet reaches a host's Docker daemon."""

    docker_socket = "docker_socket"
    docker_tcp = "docker_tcp"


class _Strict(BaseModel):
    """Request bodies: JSON types as given (no "5" for 5), unknown fields rejected."""

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


LabelKey = Annotated[str, Field(min_length=1, max_length=MAX_LABEL_KEY)]
LabelValue = Annotated[str, Field(max_length=MAX_LABEL_VALUE)]


# Enums arrive as JSON strings; FastAPI validates in Python mode, so they must be lax.
HostTypeField = Annotated[HostType, Strict(False)]


class Capabilities(_Strict):
    """What a host offers to the scheduler."""

    gpus: bool | Literal["auto"] = Field(
        False,
        description='true: the host has gpu_count GPUs (checked by discovery); "auto": use the '
        "GPUs discovery finds; false: a CPU host.",
    )
    gpu_count: int | None = Field(
        None,
        ge=0,
        le=MAX_GPUS,
        description='GPUs on the host; 1 when gpus is true; left out with "auto".',
    )
    gpu_probe_image: str | None = Field(
        None,
        exclude_if=lambda v: v is None,  # shown (and stored) only when set
        min_length=1,
        max_length=300,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._/:@-]*$",
        description="Image of the GPU probe container (needs sh; nvidia-smi comes from the "
        "NVIDIA runtime); default: the gpu_report task's image.",
    )
    max_concurrency: int = Field(
        1, gt=0, le=MAX_CONCURRENCY, description="Runs this host may hold at once."
    )
    labels: dict[LabelKey, LabelValue] = Field(default_factory=dict, max_length=MAX_LABELS)

    @model_validator(mode="after")
    def _gpus_consistent(self) -> Capabilities:
        if self.gpus == "auto":
            if self.gpu_count is not None:
                raise ValueError('gpus "auto" takes the count discovery finds: leave out gpu_count')
            return self
        count = self.gpu_count if self.gpu_count is not None else int(self.gpus)
        if not self.gpus and count > 0:
            raise ValueError("gpu_count > 0 needs gpus: true")
        if self.gpus and count == 0:
            raise ValueError("gpus: true needs gpu_count ≥ 1")
        # object.__setattr__ keeps the default out of fields_set (PATCH merges on it)
        object.__setattr__(self, "gpu_count", count)
        return self

    def gpu_ids(self) -> list[str]:
        """The device ids the host declares: "0", "1", … (discovered GPUs: app/gpus)."""
        return [str(i) for i in range(self.gpu_count or 0)] if self.gpus is True else []


def _absolute(path: str, field: str) -> str:
    if not path or not os.path.isabs(path):
        raise ValueError(f"{field} must be an absolute path")
    return path


class SSHConfig(_Strict):
    """An SSH server through which the host's Docker is reached (a local port forward)."""

    host: str = Field(min_length=1, max_length=253)
    port: int = Field(22, ge=1, le=65535)
    user: str = Field(min_length=1, max_length=64)
    key_path: str = Field(
        min_length=1, max_length=MAX_PATH, description="Absolute path of the private key."
    )
    known_hosts: str | None = Field(
        None, max_length=MAX_PATH, description="Absolute path; host key checked if given."
    )

    @model_validator(mode="after")
    def _paths(self) -> SSHConfig:
        _absolute(self.key_path, "key_path")
        if self.known_hosts is not None:
            _absolute(self.known_hosts, "known_hosts")
        return self


class TLSConfig(_Strict):
    """Mutual TLS to a Docker daemon on TCP: paths of the CA, client cert and client key."""

    ca_cert: str = Field(max_length=MAX_PATH)
    client_cert: str = Field(max_length=MAX_PATH)
    client_key: str = Field(max_length=MAX_PATH)

    @model_validator(mode="after")
    def _paths(self) -> TLSConfig:
        for name in ("ca_cert", "client_cert", "client_key"):
            _absolute(getattr(self, name), name)
        return self


def check_base_url(type_: HostType, base_url: str) -> str | None:
    """Why base_url does not fit the host type, or None when it does."""
    parts = urlsplit(base_url)
    if type_ == HostType.docker_socket:
        if parts.scheme != "unix" or parts.netloc or not parts.path.startswith("/"):
            return "docker_socket needs base_url unix:///absolute/path"
        return None
    if parts.scheme != "tcp" or not parts.hostname or parts.path not in ("", "/"):
        return "docker_tcp needs base_url tcp://host:port"
    try:
        port = parts.port
    except ValueError:
        port = None
    return None if port else "docker_tcp needs base_url tcp://host:port"


class _Named(_Strict):
    """Names are compared and stored without surrounding blanks."""

    @model_validator(mode="before")
    @classmethod
    def _strip_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("name"), str):
            return {**data, "name": data["name"].strip()}
        return data


class HostCreate(_Named):
    """Body of POST /api/worker-hosts/."""

    name: str = Field(min_length=1, max_length=MAX_NAME)
    type: HostTypeField
    base_url: str = Field(min_length=1, max_length=500)
    enabled: bool = True
    capabilities: Capabilities = Field(default_factory=lambda: Capabilities())
    ssh_config: SSHConfig | None = None
    tls_config: TLSConfig | None = None


class HostUpdate(_Named):
    """Body of PATCH /api/worker-hosts/{id}/: only the fields given change."""

    name: str | None = Field(None, min_length=1, max_length=MAX_NAME)
    type: HostTypeField | None = None
    base_url: str | None = Field(None, min_length=1, max_length=500)
    enabled: bool | None = None
    capabilities: Capabilities | None = None
    ssh_config: SSHConfig | None = None
    tls_config: TLSConfig | None = None


class HostRead(BaseModel):
    """A host as the API shows it: secrets replaced by has_* flags, derived numbers added."""

    id: int
    name: str
    type: HostTypeField
    base_url: str
    enabled: bool
    draining: bool
    capabilities: Capabilities
    has_ssh_config: bool
    has_tls_config: bool
    ssh_host_key_fingerprint: str | None = Field(
        description="SSH host key pinned on first use (no known_hosts); a changed key makes the "
        "host unhealthy until accepted."
    )
    healthy: bool
    last_seen_at: datetime | None
    last_check_at: datetime | None
    last_error: str | None
    unhealthy_since: datetime | None = Field(
        description="First failed live check of the current outage (null when healthy)."
    )
    consecutive_failures: int
    is_stale: bool
    active_runs_count: int
    held_slots: int = Field(
        description="Slots taken: active runs plus lingering holds of containers not yet gone."
    )
    lingering_slots: int = Field(
        description="Held slots whose run ended or left, until a sweep finds the container gone."
    )
    gpus_in_use: list[str]
    gpus_total: int = Field(0, description="GPUs found by the last probe (else declared).")
    gpus_free: int = Field(0, description="GPUs that can be given out now.")
    gpus_busy_elsewhere: int = Field(
        0, description="GPUs used by processes dockfleet did not start (not given out)."
    )
    gpus_unhealthy: int = Field(0, description="GPUs held out: unhealthy, or missing.")
    gpus_held: int = Field(0, description="GPUs held by runs of ours.")
    gpu_probe_status: str | None = Field(
        None, description="Last GPU probe: ok, no_runtime, driver_error, error (null: never)."
    )
    gpu_probe_error: str | None = None
    schedulable: bool = Field(description="Can take a run needing no GPUs now.")
    gpu_schedulable: bool = Field(
        False, description="Can take a one-GPU run now (see `unschedulable_reasons`)."
    )
    unschedulable_reasons: list[str] = Field(
        description='Why not; reasons that only stop GPU runs start with "GPU runs: ".'
    )
    docker_version: str | None
    api_version: str | None
    ncpu: int | None
    mem_total: int | None
    runtimes: list[str] | None
    facts_at: datetime | None
    created_at: datetime
    updated_at: datetime


class HostKeyAccept(_Strict):
    """Body of POST /api/worker-hosts/{id}/ssh-host-key/: the fingerprint you checked."""

    fingerprint: str = Field(
        min_length=8,
        max_length=120,
        pattern=r"^SHA256:[A-Za-z0-9+/=]+$",
        description="The new key's SHA256 fingerprint, as `last_error` shows it.",
    )


class HostPage(BaseModel):
    """A page of hosts."""

    count: int
    next: str | None
    previous: str | None
    results: list[HostRead]


class CheckResult(BaseModel):
    """What one live check found."""

    ok: bool
    latency_ms: float | None
    error: str | None
    docker_version: str | None


class HostHealth(BaseModel):
    """The heartbeat's answer (the runbook's keys), plus `check` after a live check."""

    host_id: int
    name: str
    healthy: bool
    last_seen_at: datetime | None
    is_stale: bool
    active_runs_count: int
    check: CheckResult | None = None
