"""WorkerHost: the table (its request/response schemas live in schemas.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from app import clock
from app.db import UTCDateTime
from app.hosts.schemas import (
    Capabilities,
    CheckResult,
    HostCreate,
    HostHealth,
    HostKeyAccept,
    HostPage,
    HostRead,
    HostType,
    HostUpdate,
    SSHConfig,
    TLSConfig,
    check_base_url,
)

# The schemas are re-exported so `from app.hosts.models import HostRead` keeps working;
# the client and the CLI import schemas.py, which loads no database layer.
__all__ = [
    "Capabilities",
    "CheckResult",
    "HostCreate",
    "HostHealth",
    "HostKeyAccept",
    "HostPage",
    "HostRead",
    "HostType",
    "HostUpdate",
    "SSHConfig",
    "TLSConfig",
    "WorkerHost",
    "check_base_url",
]


class WorkerHost(SQLModel, table=True):
    """A Docker daemon dockfleet may place runs on."""

    __tablename__ = "worker_hosts"

    id: int | None = SQLField(default=None, primary_key=True)
    name: str = SQLField(index=True, unique=True, max_length=200)
    type: str = SQLField(max_length=32)
    base_url: str = SQLField(max_length=500)
    enabled: bool = True
    draining: bool = False
    capabilities: dict[str, Any] = SQLField(default_factory=dict, sa_column=Column(JSON))
    ssh_config: dict[str, Any] | None = SQLField(default=None, sa_column=Column(JSON))
    tls_config: dict[str, Any] | None = SQLField(default=None, sa_column=Column(JSON))
    healthy: bool = False
    last_seen_at: datetime | None = SQLField(default=None, sa_type=UTCDateTime)
    last_check_at: datetime | None = SQLField(default=None, sa_type=UTCDateTime)
    last_error: str | None = None
    unhealthy_since: datetime | None = SQLField(
        default=None, sa_type=UTCDateTime, description="First failed live check of this outage."
    )
    consecutive_failures: int = SQLField(default=0, description="Failed live checks in a row.")
    needs_sweep: bool = SQLField(
        default=True,
        description="Our leftover containers must be swept before the host takes runs again.",
    )
    ssh_host_key_fingerprint: str | None = SQLField(
        default=None,
        max_length=120,
        description="SHA256 fingerprint of the SSH host key, pinned on first use.",
    )
    facts_at: datetime | None = SQLField(
        default=None, sa_type=UTCDateTime, description="When version/info were last read."
    )
    docker_version: str | None = SQLField(default=None, max_length=100)
    api_version: str | None = SQLField(default=None, max_length=20)
    ncpu: int | None = None
    mem_total: int | None = SQLField(default=None, sa_type=BigInteger)
    runtimes: list[str] | None = SQLField(default=None, sa_column=Column(JSON))
    placement_seq: int = SQLField(default=0, description="Bumped by every placement (guard).")
    created_at: datetime = SQLField(default_factory=clock.now, sa_type=UTCDateTime)
    updated_at: datetime = SQLField(default_factory=clock.now, sa_type=UTCDateTime)

    def caps(self) -> Capabilities:
        """The capabilities as a model."""
        return Capabilities.model_validate(self.capabilities or {}, strict=False)
