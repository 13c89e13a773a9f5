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
    host: str = Field(
        "127.0.0.1",
        description="Address `dockfleet serve` listens on (another than loopback needs a token).",
    )
    port: int = Field(9595, ge=1, le=65535, description="Port `dockfleet serve` listens on.")
    api_token: SecretStr | None = Field(
        None,
        description="When set, every /api call needs `Authorization: Bearer <token>`; several "
        "tokens may be given comma-separated (rotation).",
    )
    api_token_file: str | None = Field(
        None, description="A file with one token per line (read at start, added to api_token)."
    )
    insecure_no_token: bool = Field(
        False,
        description="Allow serving on a non-loopback address without a token (logged at start).",
    )
    metrics_public: bool = Field(False, description="/metrics needs no token.")
    secrets_dir: str = Field(
        "./secrets",
        description="Key and certificate paths of hosts must lie in this directory.",
    )
    allowed_bind_sources: str = Field(
        "/var/log:ro",
        description="Comma list of host paths tasks may bind (`path:ro` or `path:rw`).",
    )
    task_network_modes: str = Field(
        "none,bridge,host", description="Network modes a task may use (out of none, bridge, host)."
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
    view_refresh_seconds: float = Field(
        2.0,
        gt=0,
        description="The scheduler re-reads every host and pending run this often (changes made "
        "by this process reach it at once; those of other replicas within this).",
    )
    launch_wait_seconds: float = Field(
        0.05,
        ge=0,
        le=5,
        description="A launch answers with its placement if the next pass places it within this; "
        "else it answers `pending` (the run is placed as soon as a slot frees).",
    )
    reconcile_interval_seconds: float = Field(
        120, ge=0, description="Seconds between reconciler passes; 0 runs it only at start-up."
    )
    schedule_poll_seconds: float = Field(
        30,
        gt=0,
        le=3600,
        description="The schedule loop sleeps until the next fire time, but re-reads the "
        "schedules at least this often (changes made on another replica).",
    )
    schedule_grace_seconds: float = Field(
        60,
        gt=0,
        description="A fire found later than this after its time (no dockfleet was running) is "
        "missed: skipped (catch_up none) or fired once for the latest time (catch_up latest).",
    )
    notifier_allowed_networks: str | None = Field(
        None,
        description="Comma list of CIDR blocks (or `loopback`, `private`, `*`) notifier URLs may "
        "point at; default: DOCKFLEET_ALLOWED_NETWORKS.",
    )
    notifier_timeout_seconds: float = Field(
        10, gt=0, le=120, description="Deadline of one notification request (lookup included)."
    )
    notifier_max_attempts: int = Field(
        8, ge=1, le=100, description="A notification is tried at most this many times."
    )
    notifier_backoff_seconds: float = Field(
        2, gt=0, description="First retry delay; it doubles per attempt, with full jitter."
    )
    notifier_backoff_max_seconds: float = Field(
        600, gt=0, description="The longest delay between two tries of a notification."
    )
    notifier_lease_seconds: float = Field(
        60,
        ge=1,
        description="A delivery being tried by a process that died is tried again after this.",
    )
    notifier_poll_seconds: float = Field(
        1.0,
        gt=0,
        le=60,
        description="The notifier loops look for new events (of other replicas) and due retries "
        "at least this often.",
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
        6 * 3600,
        gt=0,
        description="A live log stream (?follow=true) or an event stream ends after this long "
        "(an event stream's client reconnects and resumes).",
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
        "at most; then it stops the container and fails the run. A database that cannot "
        "answer (locked, out of connections, away) is waited for instead, never counted.",
    )
    gpu_probe_seconds: float = Field(
        300,
        ge=0,
        description="Seconds between GPU probes of each healthy host declaring GPUs (or auto); "
        "0: only at a host's first good check and on demand.",
    )
    gpu_probe_timeout_seconds: float = Field(
        60, gt=0, description="Deadline of one GPU probe container (create to removal)."
    )
    gpu_busy_mb: int = Field(
        1024,
        ge=0,
        description="A GPU dockfleet does not hold with more memory used than this (MiB) is "
        "busy elsewhere and not given out.",
    )
    gpu_max_temperature_c: float = Field(
        90, gt=0, description="A GPU hotter than this (°C) at its probe is held out."
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
    log_format: str = Field(
        "text",
        pattern=r"(?i)^(text|json)$",
        description="`text` for people; `json`: one JSON object per line (time, level, logger, "
        "message, run_id/host_id where they apply).",
    )
    events_poll_seconds: float = Field(
        0.5,
        gt=0,
        le=10,
        description="An event stream looks for events of other replicas this often (those of "
        "its own process reach it at once).",
    )
    events_keepalive_seconds: float = Field(
        15, gt=0, le=300, description="An idle event stream sends a keep-alive comment this often."
    )
    events_keep: int = Field(
        100_000, ge=100, description="At most this many events are kept (the newest)."
    )
    events_keep_days: float = Field(
        7, gt=0, description="Events older than this many days are deleted."
    )

    @field_validator("allowed_networks")
    @classmethod
    def _check_networks(cls, value: str) -> str:
        parse_networks(value)
        return value

    @field_validator("notifier_allowed_networks")
    @classmethod
    def _check_notifier_networks(cls, value: str | None) -> str | None:
        if value is not None:
            parse_networks(value)
        return value

    @field_validator("api_token")
    @classmethod
    def _check_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            from app.auth import parse_tokens

            parse_tokens(value.get_secret_value())
        return value

    @field_validator("allowed_bind_sources")
    @classmethod
    def _check_binds(cls, value: str) -> str:
        from app.tasks.policy import parse_bind_rules

        parse_bind_rules(value)
        return value

    @field_validator("task_network_modes")
    @classmethod
    def _check_modes(cls, value: str) -> str:
        from app.tasks.policy import parse_network_modes

        parse_network_modes(value)
        return value

    @field_validator("secrets_dir")
    @classmethod
    def _check_secrets_dir(cls, value: str) -> str:
        from app.hosts.secrets import secrets_root

        secrets_root(value)
        return value

    def tokens(self) -> list[str]:
        """Every accepted API token (none: the API is open, on loopback only)."""
        from app.auth import parse_tokens

        out = parse_tokens(self.api_token.get_secret_value()) if self.api_token else []
        if self.api_token_file:
            with open(self.api_token_file) as fh:
                out += parse_tokens(fh.read())
        return out

    def networks(self) -> list[Network | str]:
        """The parsed allow-list."""
        return parse_networks(self.allowed_networks)

    def notifier_networks(self) -> list[Network | str]:
        """The parsed allow-list of notifier URLs (its own setting, else the hosts')."""
        if self.notifier_allowed_networks is None:
            return self.networks()
        return parse_networks(self.notifier_allowed_networks)


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


# What `private` means: the LAN ranges (RFC 1918), carrier-grade NAT (Tailscale and the like)
# and IPv6 unique-local addresses. Never link-local, metadata, unspecified or broadcast ones.
PRIVATE = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
)
# Reachable only when a CIDR names them: link-local (cloud metadata lives at 169.254.169.254).
LINK_LOCAL = tuple(ipaddress.ip_network(n) for n in ("169.254.0.0/16", "fe80::/10"))


def _never(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Addresses no allow-list admits: unspecified, multicast, broadcast, reserved, and IPv6
    forms that smuggle an IPv4 address (mapped, compatible, 6to4, Teredo)."""
    if ip.is_unspecified or ip.is_multicast or (ip.is_reserved and not ip.is_loopback):
        return True
    if isinstance(ip, ipaddress.IPv4Address):
        return ip == ipaddress.IPv4Address("255.255.255.255") or ip in ipaddress.ip_network(
            "0.0.0.0/8"
        )
    compat = int(ip) >> 32 == 0 and not ip.is_loopback  # ::a.b.c.d (deprecated)
    return bool(ip.ipv4_mapped or compat or ip.sixtofour or ip.teredo)


def address_allowed(address: str, networks: list[Network | str]) -> bool:
    """Whether an IP address falls in the allow-list (see PRIVATE, LINK_LOCAL and _never)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if _never(ip):
        return False
    link_local = any(ip in n for n in LINK_LOCAL)
    for net in networks:
        if not isinstance(net, str):
            if ip.version == net.version and ip in net:
                return True
            continue
        if link_local:
            continue  # only an explicit CIDR reaches link-local and metadata addresses
        if net == "*":
            return True
        if net == "loopback" and ip.is_loopback:
            return True
        if net == "private" and any(ip in n for n in PRIVATE):
            return True
    return False
