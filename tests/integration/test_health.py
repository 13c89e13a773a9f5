"""Host health against the real fleet (dockerd over a unix socket, TCP+mutual TLS, SSH tunnel).

Everything goes through the HTTP API (ASGITransport). The app's health monitor is off in the
`client` fixture (interval 0), so checks are asked for with `?check=true` or `monitor.tick()`;
the monitor's own loop is exercised on apps built here with other settings.

Only loopback and the fleet's 10.231.x namespaces are contacted.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from app.config import Settings
from app.main import create_app, start, stop
from tests.conftest import make_settings
from tests.fleet import Fleet, SSHAccess

API = "/api/worker-hosts/"
SLACK = 2.0  # seconds allowed on top of docker_timeout_seconds for one check


# --------------------------------------------------------------------------------- helpers


def uniq(prefix: str) -> str:
    """A host name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def ssh_access(fleet: Fleet) -> SSHAccess:
    access = fleet.ssh.ssh
    assert access is not None
    return access


async def register(client: httpx.AsyncClient, payload: dict[str, Any]) -> dict[str, Any]:
    resp = await client.post(API, json=payload)
    assert resp.status_code == 201, resp.text
    return resp.json()


async def get_host(client: httpx.AsyncClient, host_id: int) -> dict[str, Any]:
    resp = await client.get(f"{API}{host_id}/")
    assert resp.status_code == 200, resp.text
    return resp.json()


async def check(
    client: httpx.AsyncClient, host_id: int, within: float = 5 + SLACK
) -> dict[str, Any]:
    """GET …/health/?check=true, which must answer 200 within `within` seconds."""
    async with asyncio.timeout(within):
        resp = await client.get(f"{API}{host_id}/health/", params={"check": "true"})
    assert resp.status_code == 200, resp.text
    return resp.json()


async def assert_healthy(client: httpx.AsyncClient, host_id: int) -> dict[str, Any]:
    health = await check(client, host_id)
    host = await get_host(client, host_id)
    assert health["healthy"] is True, host["last_error"]
    assert health["check"]["ok"] is True
    assert health["check"]["error"] is None
    assert host["healthy"] is True
    assert host["last_error"] is None
    return health


async def assert_unhealthy(
    client: httpx.AsyncClient, host_id: int, within: float = 5 + SLACK
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check; the host must come out unhealthy with a reason. Returns (health, host)."""
    health = await check(client, host_id, within)
    host = await get_host(client, host_id)
    assert health["healthy"] is False
    assert health["check"]["ok"] is False
    assert health["check"]["error"]
    assert health["check"]["docker_version"] is None
    assert host["healthy"] is False
    assert host["last_error"]
    assert host["last_check_at"] is not None
    return health, host


def parse_time(value: str) -> datetime:
    assert value.endswith("Z"), value
    return datetime.fromisoformat(value)


def assert_recent(value: str | None, seconds: float = 30) -> None:
    assert value is not None
    delta = datetime.now(UTC) - parse_time(value)
    assert timedelta(seconds=-5) <= delta <= timedelta(seconds=seconds), value


def assert_no_secret(bodies: Iterable[Any], secrets: Iterable[str]) -> None:
    """No secret path appears anywhere in the given response bodies (or texts)."""
    for body in bodies:
        text = body if isinstance(body, str) else json.dumps(body)
        for secret in secrets:
            assert secret not in text, f"{secret!r} leaked in {text}"


async def all_bodies(client: httpx.AsyncClient, host_id: int) -> list[str]:
    """Every response body that shows this host."""
    out = []
    for url, params in (
        (f"{API}{host_id}/", {}),
        (API, {}),
        (f"{API}{host_id}/health/", {}),
        (f"{API}{host_id}/health/", {"check": "true"}),
    ):
        async with asyncio.timeout(5 + SLACK):
            resp = await client.get(url, params=params)
        assert resp.status_code == 200, resp.text
        out.append(resp.text)
    return out


@asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """An app with its services started (like the `app` fixture) and a client on it."""
    application = create_app(settings, migrate=False)
    state = application.state.dockfleet
    await start(state)
    try:
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://dockfleet.test") as c:
            yield application, c
    finally:
        await stop(state)


def free_port() -> int:
    """A loopback TCP port nobody listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """A loopback TCP server that accepts connections and never answers; yields its port."""
    handlers: set[asyncio.Task[Any]] = set()
    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        writers.append(writer)
        try:
            await reader.read()  # swallow the request; return only when the client hangs up
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        server.close()
        for w in writers:
            w.close()
        for t in handlers:
            t.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)


def self_signed(d: Path, name: str) -> tuple[str, str]:
    """A self-signed EC cert + key (signed by nobody the fleet trusts): (cert, key) paths."""
    cert, key = d / f"{name}-cert.pem", d / f"{name}-key.pem"
    openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
    )  # fmt: skip
    return str(cert), str(key)


def other_host_key_known_hosts(d: Path, ip: str) -> str:
    """A known_hosts that pins a freshly made host key (not the sshd's) for `ip`."""
    key = d / "impostor_host_key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    pub = " ".join(key.with_suffix(".pub").read_text().split()[:2])
    path = d / "known_hosts_wrong"
    path.write_text(f"{ip} {pub}\n")
    return str(path)


async def wait_for(predicate: Any, within: float, interval: float = 0.05) -> Any:
    """Poll an async predicate until it returns something truthy (returned) or time runs out."""
    deadline = time.monotonic() + within
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            return value
        await asyncio.sleep(interval)


# ------------------------------------------------------------------ 1. socket host, facts


async def test_socket_host_check_is_healthy_with_docker_facts(
    fleet: Fleet, client: httpx.AsyncClient
) -> None:
    created = await register(client, fleet.sock.host_payload(uniq("hs-sock")))
    assert created["healthy"] is False  # nothing checked yet (monitor off in tests)
    assert created["last_check_at"] is None
    assert created["docker_version"] is None

    health = await assert_healthy(client, created["id"])
    assert health["host_id"] == created["id"]
    assert health["name"] == created["name"]
    assert health["is_stale"] is False
    assert health["active_runs_count"] == 0
    assert health["check"]["docker_version"]
    assert health["check"]["latency_ms"] is not None and health["check"]["latency_ms"] >= 0
    assert_recent(health["last_seen_at"])

    host = await get_host(client, created["id"])
    assert host["docker_version"] == health["check"]["docker_version"]
    assert host["api_version"] == "1.41"
    assert isinstance(host["ncpu"], int) and host["ncpu"] >= 1
    assert isinstance(host["mem_total"], int) and host["mem_total"] > 0
    assert isinstance(host["runtimes"], list) and "runc" in host["runtimes"]
    assert host["is_stale"] is False
    assert_recent(host["last_seen_at"])
    assert_recent(host["last_check_at"])

    listed = (await client.get(API, params={"healthy": "true"})).json()
    assert created["id"] in {h["id"] for h in listed["results"]}


# ------------------------------------------------------------------------------ 2. TLS


async def test_tls_host_is_healthy_through_mutual_tls(
    fleet: Fleet, client: httpx.AsyncClient
) -> None:
    created = await register(client, fleet.tls.host_payload(uniq("hs-tls")))
    assert created["has_tls_config"] is True
    assert "tls_config" not in created
    health = await assert_healthy(client, created["id"])
    assert health["check"]["docker_version"]
    host = await get_host(client, created["id"])
    assert host["api_version"] == "1.41"
    assert "runc" in host["runtimes"]


async def test_tls_client_cert_not_signed_by_the_ca_is_unhealthy(
    fleet: Fleet, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    cert, key = self_signed(tmp_path, "rogue-client")
    payload = fleet.tls.host_payload(uniq("hs-tls-badcert"))
    payload["tls_config"] = {**payload["tls_config"], "client_cert": cert, "client_key": key}
    created = await register(client, payload)

    health, host = await assert_unhealthy(client, created["id"])
    reason = host["last_error"].lower()
    assert any(w in reason for w in ("tls", "ssl", "certificate")), host["last_error"]
    assert health["check"]["error"] == host["last_error"]
    assert_no_secret(await all_bodies(client, created["id"]), [cert, key])


async def test_tls_server_not_signed_by_the_given_ca_is_unhealthy(
    fleet: Fleet, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    other_ca, _ = self_signed(tmp_path, "other-ca")
    payload = fleet.tls.host_payload(uniq("hs-tls-badca"))
    payload["tls_config"] = {**payload["tls_config"], "ca_cert": other_ca}
    created = await register(client, payload)

    _, host = await assert_unhealthy(client, created["id"])
    reason = host["last_error"].lower()
    assert any(w in reason for w in ("tls", "ssl", "certificate")), host["last_error"]
    assert_no_secret(await all_bodies(client, created["id"]), [other_ca])


# ------------------------------------------------------------------------------ 3. SSH


async def test_ssh_host_is_healthy_through_the_tunnel(
    fleet: Fleet, client: httpx.AsyncClient, app: FastAPI
) -> None:
    payload = fleet.ssh.host_payload(uniq("hs-ssh"))
    assert payload["base_url"] == "tcp://127.0.0.1:2375"  # as seen from the sshd
    created = await register(client, payload)
    assert created["has_ssh_config"] is True
    assert "ssh_config" not in created

    health = await assert_healthy(client, created["id"])
    assert health["check"]["docker_version"]
    host = await get_host(client, created["id"])
    assert "runc" in host["runtimes"]
    slot = app.state.dockfleet.pool._slots[created["id"]]
    assert slot.tunnel is not None and slot.tunnel.alive
    access = ssh_access(fleet)
    assert_no_secret(await all_bodies(client, created["id"]), [access.key_path, access.known_hosts])


async def test_ssh_wrong_key_is_unhealthy_and_paths_are_scrubbed(
    fleet: Fleet, client: httpx.AsyncClient, app: FastAPI
) -> None:
    access = ssh_access(fleet)
    payload = fleet.ssh.host_payload(uniq("hs-ssh-wrongkey"))
    payload["ssh_config"]["key_path"] = access.wrong_key_path
    created = await register(client, payload)

    health, host = await assert_unhealthy(client, created["id"])
    assert "ssh authentication" in host["last_error"].lower(), host["last_error"]
    assert created["id"] not in app.state.dockfleet.pool._slots
    secrets = [access.wrong_key_path, access.known_hosts]
    assert_no_secret([health, host, created], secrets)
    assert_no_secret(await all_bodies(client, created["id"]), secrets)


async def test_ssh_missing_key_file_names_no_path(
    fleet: Fleet, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    """A key that cannot be read: refused when an enabled host is registered; a disabled one
    (the file may come later) checked anyway is unhealthy, and no message names the path."""
    missing = str(tmp_path / "no-such-dir" / "secret_client_key")
    payload = fleet.ssh.host_payload(uniq("hs-ssh-nokey"))
    payload["ssh_config"]["key_path"] = missing
    refused = await client.post("/api/worker-hosts/", json=payload)
    assert refused.status_code == 422 and missing not in refused.text, refused.text
    created = await register(client, {**payload, "enabled": False})

    _, host = await assert_unhealthy(client, created["id"])
    assert_no_secret(await all_bodies(client, created["id"]), [missing, "secret_client_key"])
    assert host["last_error"]


async def test_ssh_unknown_host_key_is_unhealthy_and_paths_are_scrubbed(
    fleet: Fleet, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    access = ssh_access(fleet)
    known_hosts = other_host_key_known_hosts(tmp_path, access.host)
    payload = fleet.ssh.host_payload(uniq("hs-ssh-hostkey"))
    payload["ssh_config"]["known_hosts"] = known_hosts
    created = await register(client, payload)

    health, host = await assert_unhealthy(client, created["id"])
    assert "host key" in host["last_error"].lower(), host["last_error"]
    secrets = [known_hosts, access.key_path]
    assert_no_secret([health, host, created], secrets)
    assert_no_secret(await all_bodies(client, created["id"]), secrets)


# ------------------------------------------------------------- 4. a daemon stops, starts


async def test_stopped_daemon_turns_unhealthy_then_healthy_again(
    fleet: Fleet, client: httpx.AsyncClient, settings: Settings
) -> None:
    created = await register(client, fleet.sock.host_payload(uniq("hs-stop")))
    first = await assert_healthy(client, created["id"])
    try:
        await asyncio.to_thread(fleet.sock.stop)
        started = time.monotonic()
        health, host = await assert_unhealthy(
            client, created["id"], within=settings.docker_timeout_seconds + SLACK
        )
        assert time.monotonic() - started < settings.docker_timeout_seconds + SLACK
        assert host["last_seen_at"] == first["last_seen_at"]  # a failed check is no sighting
        assert health["check"]["latency_ms"] is None
    finally:
        await asyncio.to_thread(fleet.sock.start)
    await assert_healthy(client, created["id"])


# ----------------------------------------------------------------------- 5. sshd restarts


async def test_sshd_restart_reopens_the_pooled_tunnel(
    fleet: Fleet, client: httpx.AsyncClient, app: FastAPI
) -> None:
    pool = app.state.dockfleet.pool
    created = await register(client, fleet.ssh.host_payload(uniq("hs-sshd-restart")))
    host_id = created["id"]
    await assert_healthy(client, host_id)
    old_tunnel = pool._slots[host_id].tunnel
    assert old_tunnel is not None
    try:
        await asyncio.to_thread(fleet.restart_sshd)
    finally:
        await asyncio.to_thread(fleet.start_sshd)  # no-op when the restart worked
    await assert_healthy(client, host_id)
    new_tunnel = pool._slots[host_id].tunnel
    assert new_tunnel is not None and new_tunnel is not old_tunnel
    assert new_tunnel.alive
    assert not old_tunnel.alive


async def test_sshd_down_is_unhealthy_and_back_up_is_healthy(
    fleet: Fleet, client: httpx.AsyncClient, settings: Settings
) -> None:
    created = await register(client, fleet.ssh.host_payload(uniq("hs-sshd-down")))
    host_id = created["id"]
    await assert_healthy(client, host_id)
    try:
        await asyncio.to_thread(fleet.stop_sshd)
        started = time.monotonic()
        _, host = await assert_unhealthy(
            client, host_id, within=settings.docker_timeout_seconds * 2 + SLACK
        )
        assert time.monotonic() - started < settings.docker_timeout_seconds * 2 + SLACK
        access = ssh_access(fleet)
        assert "SSH server" in host["last_error"], host["last_error"]
        # ssh_config's contents (address, user, key paths) never appear in a response
        assert_no_secret([host], [access.key_path, access.known_hosts, access.host])
    finally:
        await asyncio.to_thread(fleet.start_sshd)
    await assert_healthy(client, host_id)


# ------------------------------------------------------------ 6. refused port, no answer


async def test_refused_tcp_port_is_unhealthy_quickly(client: httpx.AsyncClient) -> None:
    port = free_port()
    created = await register(
        client,
        {"name": uniq("hs-refused"), "type": "docker_tcp", "base_url": f"tcp://127.0.0.1:{port}"},
    )
    started = time.monotonic()
    _, host = await assert_unhealthy(client, created["id"], within=3)
    assert time.monotonic() - started < 3
    assert "connect" in host["last_error"].lower(), host["last_error"]


async def test_daemon_that_never_answers_times_out(db_url: str) -> None:
    settings = make_settings(db_url, docker_timeout_seconds=1)
    async with silent_server() as port, running_app(settings) as (_, client):
        created = await register(
            client,
            {
                "name": uniq("hs-silent"),
                "type": "docker_tcp",
                "base_url": f"tcp://127.0.0.1:{port}",
            },
        )
        started = time.monotonic()
        health, host = await assert_unhealthy(client, created["id"], within=3.5)
        elapsed = time.monotonic() - started
        assert elapsed < 3.5, elapsed
        reason = host["last_error"].lower()
        assert "timed out" in reason or "no answer" in reason, host["last_error"]
        assert health["check"]["error"] == host["last_error"]


# ------------------------------------------------------------------------ 7. HealthMonitor


async def test_monitor_checks_a_new_host_at_once(fleet: Fleet, db_url: str) -> None:
    """With a long interval, only `check_soon` can make a just-registered host healthy."""
    settings = make_settings(db_url, health_interval_seconds=60)
    async with running_app(settings) as (_, client):
        await asyncio.sleep(0.2)  # let the loop's first (empty) tick pass
        created = await register(client, fleet.sock.host_payload(uniq("hs-soon")))

        async def healthy() -> bool:
            return (await get_host(client, created["id"]))["healthy"]

        assert await wait_for(healthy, 2), "a new enabled host was not checked at once"

        # A disabled host is not checked; enabling it checks it at once.
        payload = {**fleet.sock.host_payload(uniq("hs-soon-off")), "enabled": False}
        off = await register(client, payload)
        await asyncio.sleep(0.5)
        assert (await get_host(client, off["id"]))["last_check_at"] is None
        resp = await client.patch(f"{API}{off['id']}/", json={"enabled": True})
        assert resp.status_code == 200, resp.text

        async def off_healthy() -> bool:
            return (await get_host(client, off["id"]))["healthy"]

        assert await wait_for(off_healthy, 2), "a re-enabled host was not checked at once"


async def test_monitor_loop_keeps_last_seen_advancing(fleet: Fleet, db_url: str) -> None:
    settings = make_settings(db_url, health_interval_seconds=0.5)
    async with running_app(settings) as (_, client):
        created = await register(client, fleet.sock.host_payload(uniq("hs-loop")))
        host_id = created["id"]

        async def healthy() -> bool:
            return (await get_host(client, host_id))["healthy"]

        assert await wait_for(healthy, 2), "host not healthy within 2 s without a manual check"
        first = (await get_host(client, host_id))["last_seen_at"]
        await asyncio.sleep(0.7)

        async def advanced() -> str | None:
            seen = (await get_host(client, host_id))["last_seen_at"]
            return seen if seen != first else None

        second = await wait_for(advanced, 2)
        assert second is not None, "the loop did not check the host again"
        assert parse_time(second) > parse_time(first)
        assert_recent(second, seconds=5)


async def test_tick_checks_every_enabled_host_concurrently(
    fleet: Fleet, client: httpx.AsyncClient, app: FastAPI
) -> None:
    ids = [
        (await register(client, daemon.host_payload(uniq(f"hs-tick-{daemon.name}"))))["id"]
        for daemon in (fleet.sock, fleet.tls, fleet.ssh)
    ]
    disabled = await register(
        client, {**fleet.sock.host_payload(uniq("hs-tick-off")), "enabled": False}
    )
    results = await app.state.dockfleet.monitor.tick()
    assert disabled["id"] not in results
    for host_id in ids:
        result = results[host_id]
        assert result is not None and result.ok, result
        host = await get_host(client, host_id)
        assert host["healthy"] is True, host["last_error"]
        assert_recent(host["last_seen_at"])
    assert (await get_host(client, disabled["id"]))["last_check_at"] is None


async def test_tick_runs_slow_checks_in_parallel(fleet: Fleet, db_url: str) -> None:
    """Three hosts that never answer take about one timeout in one tick, not three."""
    timeout = 1.0
    settings = make_settings(db_url, docker_timeout_seconds=timeout)
    async with (
        silent_server() as port,
        running_app(settings) as (application, client),
    ):
        slow = [
            (
                await register(
                    client,
                    {
                        "name": uniq("hs-par"),
                        "type": "docker_tcp",
                        "base_url": f"tcp://127.0.0.1:{port}",
                    },
                )
            )["id"]
            for _ in range(3)
        ]
        good = (await register(client, fleet.sock.host_payload(uniq("hs-par-ok"))))["id"]
        started = time.monotonic()
        async with asyncio.timeout(10):
            results = await application.state.dockfleet.monitor.tick()
        elapsed = time.monotonic() - started
        # One check of a silent host costs ~2 timeouts (one retry); three in a row would be ~6.
        assert elapsed < 2 * timeout + SLACK, elapsed
        for host_id in slow:
            result = results[host_id]
            assert result is not None and result.ok is False
        good_result = results[good]
        assert good_result is not None and good_result.ok is True


# ------------------------------------------------------------------ 8. DELETE, 9. PATCH


async def test_delete_closes_the_pooled_tunnel(
    fleet: Fleet, client: httpx.AsyncClient, app: FastAPI
) -> None:
    pool = app.state.dockfleet.pool
    created = await register(client, fleet.ssh.host_payload(uniq("hs-delete")))
    await assert_healthy(client, created["id"])
    tunnel = pool._slots[created["id"]].tunnel
    assert tunnel is not None and tunnel.alive

    resp = await client.delete(f"{API}{created['id']}/")
    assert resp.status_code == 204, resp.text
    assert created["id"] not in pool._slots
    assert not tunnel.alive  # closed, not merely forgotten
    assert (await client.get(f"{API}{created['id']}/")).status_code == 404
    resp = await client.get(f"{API}{created['id']}/health/", params={"check": "true"})
    assert resp.status_code == 404


async def test_patch_ssh_config_drops_the_tunnel_and_rechecks_with_the_new_key(
    fleet: Fleet, client: httpx.AsyncClient, app: FastAPI
) -> None:
    pool = app.state.dockfleet.pool
    access = ssh_access(fleet)
    payload = fleet.ssh.host_payload(uniq("hs-patch"))
    created = await register(client, payload)
    host_id = created["id"]
    await assert_healthy(client, host_id)
    tunnel = pool._slots[host_id].tunnel
    assert tunnel is not None

    wrong = {**payload["ssh_config"], "key_path": access.wrong_key_path}
    resp = await client.patch(f"{API}{host_id}/", json={"ssh_config": wrong})
    assert resp.status_code == 200, resp.text
    assert_no_secret([resp.text], [access.wrong_key_path])
    assert host_id not in pool._slots
    assert not tunnel.alive

    _, host = await assert_unhealthy(client, host_id)
    assert "ssh authentication" in host["last_error"].lower(), host["last_error"]
    assert_no_secret([host], [access.wrong_key_path, access.known_hosts])

    resp = await client.patch(f"{API}{host_id}/", json={"ssh_config": payload["ssh_config"]})
    assert resp.status_code == 200, resp.text
    await assert_healthy(client, host_id)


async def test_patch_base_url_to_a_dead_port_is_unhealthy(
    fleet: Fleet, client: httpx.AsyncClient, app: FastAPI
) -> None:
    """A TLS host moved to a port nobody listens on: the pooled client must not be reused."""
    created = await register(client, fleet.tls.host_payload(uniq("hs-patch-url")))
    await assert_healthy(client, created["id"])
    resp = await client.patch(
        f"{API}{created['id']}/", json={"base_url": f"tcp://127.0.0.1:{free_port()}"}
    )
    assert resp.status_code == 200, resp.text
    assert created["id"] not in app.state.dockfleet.pool._slots
    await assert_unhealthy(client, created["id"], within=3)
