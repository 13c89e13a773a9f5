"""Settings, read from `DOCKFLEET_*` environment variables and a `.env` file."""

from __future__ import annotations

import ipaddress

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Keywords accepted in DOCKFLEET_ALLOWED_NETWORKS besides CIDR blocks.
_KEYWORDS = {"loopback", "private", "*"}


class Settings(BaseSettings):
    """Every knob dockfleet has; `create_app(settings)` takes one of these."""

    model_config = SettingsConfigDict(env_prefix="DOCKFLEET_", env_file=".env", extra="ignore")

    database_url: str = Field(
        "sqlite+aiosqlite:///./dockfleet.db",
        description="SQLAlchemy async URL: SQLite (aiosqlite) or PostgreSQL (asyncpg).",
    )
    host: str = Field("0.0.0.0", description="Address `dockfleet serve` listens on.")
    port: int = Field(9595, ge=1, le=65535, description="Port `dockfleet serve` listens on.")
    api_token: SecretStr | None = Field(
        None, description="When set, every /api call needs `Authorization: Bearer <token>`."
    )
    stale_after_seconds: float = Field(
        300, gt=0, description="A host not seen for longer than this is stale."
    )
    health_interval_seconds: float = Field(
        30, ge=0, description="Seconds between background live checks; 0 turns them off."
    )
    health_concurrency: int = Field(
        64, ge=1, le=4096, description="Live checks run at most this many at once."
    )
    facts_refresh_seconds: float = Field(
        300,
        gt=0,
        description="Docker version/info are re-read on (re)connect and at most this often.",
    )
    host_lost_after_seconds: float = Field(
        60,
        gt=0,
        description="A host whose live checks keep failing for longer is lost: its runs are "
        "re-queued (retries left) or failed.",
    )
    docker_timeout_seconds: float = Field(
        10, gt=0, description="Deadline of one quick Docker call (connect, ping, inspect, ...)."
    )
    pull_timeout_seconds: float = Field(1800, gt=0, description="Deadline of one image pull.")
    stop_timeout_seconds: int = Field(
        10, ge=0, description="Grace before a cancelled container is killed."
    )
    allowed_networks: str = Field(
        "loopback,private",
        description="Comma list of CIDR blocks (or `loopback`, `private`, `*`) hosts may point at.",
    )
    scheduler_interval_seconds: float = Field(
        1.0, gt=0, description="The scheduler looks for pending runs at least this often."
    )
    reconcile_interval_seconds: float = Field(
        120, ge=0, description="Seconds between reconciler passes; 0 runs it only at start-up."
    )
    lease_seconds: float = Field(
        30,
        ge=3,
        description="A run's supervision lease; another orchestrator may adopt it once it lapses.",
    )
    max_log_bytes: int = Field(
        1024 * 1024, ge=1024, description="Tail of each task's logs kept after its container goes."
    )
    follow_max_seconds: float = Field(
        6 * 3600, gt=0, description="A live log stream (?follow=true) ends after this long."
    )
    db_busy_timeout_seconds: float = Field(
        5, gt=0, le=60, description="How long a database write waits for a lock before a 503."
    )
    max_body_bytes: int = Field(
        1024 * 1024, ge=1024, description="Request bodies above this are refused (413)."
    )
    internal_error_limit: int = Field(
        5,
        ge=1,
        description="A run's supervisor retries after this many consecutive internal errors "
        "at most; then it stops the container and fails the run.",
    )
    instance_id: str | None = Field(
        None,
        description="Id written on every container as dockfleet.instance; default: the database's.",
    )
    log_level: str = Field(
        "info",
        pattern=r"(?i)^(debug|info|warning|error|critical)$",
        description="Python log level: debug, info, warning, error or critical.",
    )

    @field_validator("allowed_networks")
    @classmethod
    def _check_networks(cls, value: str) -> str:
        parse_networks(value)
        return value

    def networks(self) -> list[Network | str]:
        """The parsed allow-list."""
        return parse_networks(self.allowed_networks)


def parse_networks(value: str) -> list[Network | str]:
    """Parse the allow-list: CIDR blocks and the keywords loopback, private, *."""
    out: list[Network | str] = []
    for part in (p.strip() for p in value.split(",")):
        if not part:
            continue
        if part in _KEYWORDS:
            out.append(part)
        else:
            out.append(ipaddress.ip_network(part, strict=False))
    return out


def address_allowed(address: str, networks: list[Network | str]) -> bool:
    """Whether an IP address falls in the allow-list."""
    ip = ipaddress.ip_address(address)
    for net in networks:
        if net == "*":
            return True
        if net == "loopback" and ip.is_loopback:
            return True
        if net == "private" and ip.is_private and not ip.is_loopback:
            return True
        if not isinstance(net, str) and ip in net:
            return True
    return False
