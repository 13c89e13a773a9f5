"""Heartbeat every host, then live-check the enabled ones, all at once (the async client).

    python examples/02_check_health.py

The runbook's two health calls: GET /health/ marks a host seen now; GET /health/?check=true
pings its Docker daemon (through its SSH tunnel or TLS). Disabled hosts get the heartbeat only,
never a live check. Exit 1 when an enabled host fails its check.
"""

from __future__ import annotations

import asyncio

from app.client import AsyncDockfleetClient, DockfleetError, HostHealth


def line(health: HostHealth) -> str:
    """One host's health as the runbook shows it, plus the live check's result."""
    seen = health.last_seen_at.isoformat() if health.last_seen_at else "never"
    text = (
        f"{health.name} (#{health.host_id}): healthy={health.healthy} is_stale={health.is_stale}"
        f" last_seen_at={seen} active_runs_count={health.active_runs_count}"
    )
    if health.check is not None:
        check = health.check
        if check.ok:
            text += f" | check ok in {check.latency_ms:.0f} ms, Docker {check.docker_version}"
        else:
            text += f" | check FAILED: {check.error}"
    return text


async def main() -> int:
    async with AsyncDockfleetClient() as fleet:
        hosts = [host async for host in fleet.hosts.iter()]
        beats = await asyncio.gather(*(fleet.hosts.health(h.id) for h in hosts))
        enabled = [h for h in hosts if h.enabled]
        checks = await asyncio.gather(*(fleet.hosts.health(h.id, check=True) for h in enabled))
    print("heartbeats:")
    for health in beats:
        print("  " + line(health))
    print("live checks (enabled hosts):")
    for health in checks:
        print("  " + line(health))
    failed = [c.name for c in checks if c.check is not None and not c.check.ok]
    if failed:
        print(f"unhealthy: {', '.join(failed)} (see Troubleshooting in the README)")
        return 1
    print(f"{len(checks)} enabled hosts healthy")
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(asyncio.run(main()))
    except DockfleetError as exc:
        raise SystemExit(f"error: {exc}") from None
