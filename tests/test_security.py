"""Secure by default, through a real server: who may call the API, what a task may do to a
worker host, where a host's secrets may live and where hosts may point."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from app.config import Settings
from tests.builders import SECRETS, app_client, host_payload, ssh_host_payload
from tests.conftest import make_settings
from tests.live_server import ROOT, LiveServer, free_port, live_server, server_env

TOKEN = "tok-" + "a" * 40
OTHER = "tok-" + "b" * 40  # a second token: rotation
OPEN = ("/healthz", "/docs", "/redoc", "/openapi.json")


@pytest.fixture(scope="module")
def guarded(
    tmp_path_factory: pytest.TempPathFactory, migrated_template: Path
) -> Iterator[LiveServer]:
    env = {"DOCKFLEET_API_TOKEN": f"{TOKEN},{OTHER}"}
    with live_server(tmp_path_factory.mktemp("guarded"), env, template=migrated_template) as srv:
        yield srv


def _raw(
    url: str, method: str, path: str, headers: dict[str, str], body: bytes
) -> tuple[int, dict[str, str], bytes]:
    """One request sent as given (httpx would refuse a header such as `Bearer ` with its blank)."""
    parts = httpx.URL(url)
    conn = http.client.HTTPConnection(parts.host, parts.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def _operations(spec: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for path, item in spec["paths"].items():
        concrete = path.replace("{host_id}", "1").replace("{run_id}", "1")
        concrete = concrete.replace("{directive_id}", "1").replace("{key}", "log_triage")
        out += [(method.upper(), concrete) for method in item]
    return out


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer wrong",
        f"Bearer {TOKEN[:-1]}b",  # differs only in its last byte
        "Bearer ",
        "Bearer",
        f"Basic {TOKEN}",
        TOKEN,
    ],
    ids=["none", "wrong", "last-byte", "empty", "bare", "basic", "no-scheme"],
)
def test_every_route_but_health_and_docs_needs_the_token(
    guarded: LiveServer, header: str | None
) -> None:
    spec = httpx.get(f"{guarded.url}/openapi.json").json()
    headers = {"Authorization": header} if header is not None else {}
    operations = _operations(spec)
    assert len(operations) > 20
    for method, path in [*operations, ("GET", "/metrics"), ("GET", "/api/worker-hosts")]:
        # a body that could never be valid: the token is checked before the body is read
        status, answer, body = _raw(guarded.url, method, path, headers, b"{not json")
        if path in OPEN:
            assert status != 401, (method, path)
            continue
        assert status == 401, (method, path, status, body)
        assert answer["www-authenticate"] == "Bearer", (method, path)
        assert b'"unauthorized"' in body


def test_both_tokens_work_and_healthz_says_only_ok_and_version(guarded: LiveServer) -> None:
    for token in (TOKEN, OTHER):
        r = httpx.get(
            f"{guarded.url}/api/worker-hosts/", headers={"Authorization": f"Bearer {token}"}
        )
        assert r.status_code == 200, r.text
    anonymous = httpx.get(f"{guarded.url}/healthz").json()
    assert set(anonymous) == {"status", "version"} and anonymous["status"] == "ok"
    trusted = httpx.get(
        f"{guarded.url}/healthz", headers={"Authorization": f"Bearer {TOKEN}"}
    ).json()
    assert trusted["database"] == "ok" and trusted["instance_id"]
    assert httpx.get(f"{guarded.url}/docs").status_code == 200


@pytest.mark.parametrize("value", ["", "   ", "a,,b", "a b"])
def test_an_empty_or_blank_token_is_a_configuration_error(value: str) -> None:
    with pytest.raises(ValidationError, match="api_token"):
        Settings(_env_file=None, api_token=value)  # type: ignore[call-arg]


async def test_metrics_follow_the_token_unless_public(db_url: str) -> None:
    async with app_client(make_settings(db_url, api_token=TOKEN)) as client:
        assert (await client.get("/metrics")).status_code == 401
    async with app_client(make_settings(db_url, api_token=TOKEN, metrics_public=True)) as client:
        assert (await client.get("/metrics")).status_code == 200


def _serve(*args: str, env: dict[str, str], tmp: Path) -> subprocess.CompletedProcess[str]:
    full = {**server_env(tmp / "db.sqlite", env)}
    return subprocess.run(
        [sys.executable, "-m", "app", "serve", *args],
        cwd=ROOT,
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_serving_beyond_loopback_without_a_token_refuses_to_start(tmp_path: Path) -> None:
    done = _serve("--host", "0.0.0.0", "--port", "1", env={}, tmp=tmp_path)
    assert done.returncode == 2, done
    assert "DOCKFLEET_API_TOKEN" in done.stderr and "--insecure-no-token" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_default_bind_is_loopback_and_insecure_mode_warns(tmp_path: Path) -> None:
    import app.config

    assert Settings.model_fields["host"].default == "127.0.0.1"
    assert "127.0.0.1" in (ROOT / "Makefile").read_text().split("run: install", 1)[1][:200]
    env = server_env(tmp_path / "db.sqlite", {"DOCKFLEET_LOG_LEVEL": "warning"})
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "app",
            "serve",
            "--host",
            "0.0.0.0",
            "--port",
            str(free_port()),
            "--insecure-no-token",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "WITHOUT A TOKEN" in line or len(lines) > 50:
                break
        assert any("WITHOUT A TOKEN" in line for line in lines), lines
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
    assert app.config  # imported for the default above


def test_token_new_prints_a_strong_token() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "app", "token", "new"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert len(out) >= 43 and " " not in out


# --- the task policy ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields, loc, words",
    [
        ({"binds": ["/:/host"]}, ["binds", 0], "Docker socket"),
        ({"binds": ["/etc:/host/etc:ro"]}, ["binds", 0], "DOCKFLEET_ALLOWED_BIND_SOURCES"),
        ({"binds": ["/var/run/docker.sock:/var/run/docker.sock"]}, ["binds", 0], "Docker socket"),
        ({"binds": ["/run:/run:ro"]}, ["binds", 0], "Docker socket"),
        ({"binds": ["/var/log:/l"]}, ["binds", 0], "read-only"),
        ({"binds": ["/var/log/../../etc:/e:ro"]}, ["binds", 0], ".."),
        ({"binds": ["somevolume:/data:ro"]}, ["binds", 0], "named volumes"),
        ({"network_mode": "container:abc"}, ["network_mode"], "another container"),
        ({"network_mode": "mynet"}, ["network_mode"], "must be one of"),
        ({"env": {"NVIDIA_VISIBLE_DEVICES": "all"}}, ["env", "NVIDIA_VISIBLE_DEVICES"], "reserved"),
        ({"env": {"CUDA_VISIBLE_DEVICES": "0"}}, ["env", "CUDA_VISIBLE_DEVICES"], "reserved"),
        ({"env": {"DOCKER_HOST": "tcp://x"}}, ["env", "DOCKER_HOST"], "reserved"),
        ({"privileged": True}, ["privileged"], "never allowed"),
        ({"cap_add": ["SYS_ADMIN"]}, ["cap_add"], "never allowed"),
        ({"devices": ["/dev/sda"]}, ["devices"], "never allowed"),
    ],
)
async def test_the_task_policy_refuses_by_field_and_rule(
    client: httpx.AsyncClient, fields: dict[str, Any], loc: list[Any], words: str
) -> None:
    body = {"name": "bad", "image": "busybox:1.36", **fields}
    r = await client.post("/api/tasks/", json=body)
    assert r.status_code == 422, r.text
    error = r.json()["detail"][0]
    assert error["loc"][1:] == loc and words in error["msg"], error
    # and the same on a change of an allowed task
    ok = await client.post("/api/tasks/", json={"name": "fine", "image": "busybox:1.36"})
    assert ok.status_code in (201, 409)
    r = await client.patch("/api/tasks/fine/", json=fields)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][1:] == loc, r.text


async def test_the_seeded_tasks_pass_the_default_policy(client: httpx.AsyncClient) -> None:
    for name in ("log_triage", "gpu_report", "service_map"):
        r = await client.patch(f"/api/tasks/{name}/", json={"description": "checked again"})
        assert r.status_code == 200, (name, r.text)


async def test_a_directive_env_cannot_take_the_gpus(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/api/directives/", json={"name": "d", "env": {"NVIDIA_VISIBLE_DEVICES": "all"}}
    )
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "env", "NVIDIA_VISIBLE_DEVICES"]


async def test_a_tightened_policy_applies_to_existing_tasks_at_launch(db_url: str) -> None:
    async with app_client(make_settings(db_url)) as client:
        directive = (await client.post("/api/directives/", json={"name": "d"})).json()
    tight = make_settings(db_url, allowed_bind_sources="", task_network_modes="none,bridge")
    async with app_client(tight) as client:
        body = {"directive_id": directive["id"], "tasks": ["log_triage", "service_map"]}
        r = await client.post("/api/runs/launch/", json=body)
    assert r.status_code == 422, r.text
    messages = " | ".join(e["msg"] for e in r.json()["detail"])
    assert "task log_triage: binds.0" in messages and "task service_map: network_mode" in messages
    assert (await _count_runs(db_url)) == 0


async def _count_runs(db_url: str) -> int:
    async with app_client(make_settings(db_url)) as client:
        return int((await client.get("/api/runs/")).json()["count"])


# --- secrets and addresses ---------------------------------------------------------------------


def _ssh(key_path: str, **extra: Any) -> dict[str, Any]:
    body = ssh_host_payload(**extra)
    body["ssh_config"]["key_path"] = key_path
    return body


async def test_key_paths_must_stay_in_the_secrets_dir(db_url: str, tmp_path: Path) -> None:
    inside = tmp_path / "secrets"
    inside.mkdir()
    (inside / "key").write_text("k")
    (inside / "escape").symlink_to("/etc/hostname")
    home_key = Path.home() / ".ssh" / "id_ed25519"
    settings = make_settings(db_url, secrets_dir=str(inside))
    async with app_client(settings) as client:
        cases = {
            "/etc/hostname": "DOCKFLEET_SECRETS_DIR",
            f"{inside}/../secrets/key": "'..'",
            f"{inside}/escape": "symlinks",
            f"{inside}/missing": "not a readable file",
            str(home_key): "~/.ssh",
        }
        for path, words in cases.items():
            r = await client.post("/api/worker-hosts/", json=_ssh(path, enabled=True))
            assert r.status_code == 422, (path, r.text)
            error = r.json()["detail"][0]
            assert error["loc"] == ["body", "ssh_config", "key_path"] and words in error["msg"]
            assert path not in r.text
        ok = await client.post("/api/worker-hosts/", json=_ssh(f"{inside}/key", enabled=True))
        assert ok.status_code == 201, ok.text
        later = await client.post("/api/worker-hosts/", json=_ssh(f"{inside}/later", enabled=False))
        assert later.status_code == 201, later.text  # disabled: the file may come later
        r = await client.patch(f"/api/worker-hosts/{later.json()['id']}/", json={"enabled": True})
        assert r.status_code == 422 and "readable" in r.text


@pytest.mark.parametrize("bad", ["/", str(Path.home()), "/root/.."])
def test_the_secrets_dir_cannot_hold_the_servers_home(bad: str) -> None:
    with pytest.raises(ValidationError, match="secrets_dir"):
        Settings(_env_file=None, secrets_dir=bad)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "address",
    [
        "0.0.0.0",
        "[::]",
        "[::ffff:127.0.0.1]",
        "[::127.0.0.1]",
        "169.254.169.254",
        "224.0.0.1",
        "255.255.255.255",
    ],
)
async def test_addresses_that_are_never_private(db_url: str, address: str) -> None:
    settings = make_settings(db_url, allowed_networks="private")
    async with app_client(settings) as client:
        tcp = host_payload(type="docker_tcp", base_url=f"tcp://{address}:2375", enabled=False)
        r = await client.post("/api/worker-hosts/", json=tcp)
        assert r.status_code == 422, (address, r.text)
        assert r.json()["detail"][0]["loc"] == ["body", "base_url"]
        ssh = ssh_host_payload(enabled=False)
        ssh["ssh_config"]["host"] = address.strip("[]")
        r = await client.post("/api/worker-hosts/", json=ssh)
        assert r.status_code == 422, (address, r.text)
        assert address.strip("[]") not in r.json()["detail"][0]["msg"]  # the SSH host is secret


async def test_loopback_needs_the_loopback_keyword(db_url: str) -> None:
    body = host_payload(type="docker_tcp", base_url="tcp://127.0.0.1:2375", enabled=False)
    async with app_client(make_settings(db_url, allowed_networks="private")) as client:
        assert (await client.post("/api/worker-hosts/", json=body)).status_code == 422
    async with app_client(make_settings(db_url, allowed_networks="loopback")) as client:
        assert (await client.post("/api/worker-hosts/", json=body)).status_code == 201


def test_secrets_of_the_builders_exist() -> None:
    assert (SECRETS / "test_ssh_key").is_file() and os.access(SECRETS / "test_ssh_key", os.R_OK)


async def test_a_name_is_checked_on_what_it_resolves_to_and_never_echoed_for_ssh(
    db_url: str,
) -> None:
    settings = make_settings(db_url, allowed_networks="10.0.0.0/8")
    tcp = host_payload(type="docker_tcp", base_url="tcp://localhost:2375")
    ssh = ssh_host_payload()
    ssh["ssh_config"]["host"] = "localhost"
    async with app_client(settings) as client:
        for body in (tcp, ssh):
            host = (await client.post("/api/worker-hosts/", json=body)).json()
            r = await client.get(f"/api/worker-hosts/{host['id']}/health/?check=true")
            check = r.json()["check"]
            assert check["ok"] is False and "outside DOCKFLEET_ALLOWED_NETWORKS" in check["error"]
            if body is ssh:
                assert "localhost" not in r.text and "127.0.0.1" not in check["error"], check


async def test_the_pinned_resolver_answers_only_for_the_checked_name() -> None:
    from app.engine.pool import _Pinned

    pinned = _Pinned("nas.lan", "10.0.0.5")
    [answer] = await pinned.resolve("nas.lan", 2376)
    assert answer["host"] == "10.0.0.5" and answer["hostname"] == "nas.lan"
    with pytest.raises(OSError):
        await pinned.resolve("elsewhere.lan", 2376)
