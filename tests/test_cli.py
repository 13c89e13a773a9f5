"""`dockfleet` against a real server subprocess: output, --json, exit codes, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner, Result

from app.cli import app
from tests.builders import SECRETS
from tests.live_server import ROOT, LiveServer, free_port, live_server, server_env
from tests.readme import bash_blocks, commands

MISSING = "/nonexistent/dockfleet-test/docker.sock"


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, migrated_template: Path
) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("cli"), template=migrated_template) as started:
        yield started


class Cli:
    """`dockfleet …` in-process, pointed at one server."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.runner = CliRunner()

    def __call__(self, *args: str, code: int = 0, **env: str) -> Result:
        environ: dict[str, str | None] = {"DOCKFLEET_URL": self.url, "DOCKFLEET_API_TOKEN": None}
        result = self.runner.invoke(app, list(args), env={**environ, **env})
        assert result.exit_code == code, (args, result.exit_code, result.output)
        assert "Traceback" not in result.output, result.output
        assert "\x1b[" not in result.output  # no colours off a terminal
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "--json").stdout)


@pytest.fixture
def cli(server: LiveServer) -> Cli:
    return Cli(server.url)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def test_help_lists_every_command(cli: Cli) -> None:
    top = cli("--help").stdout
    for command in ("serve", "status", "events", "hosts", "directives", "tasks", "runs"):
        assert command in top
    groups = {
        "hosts": ["list", "add", "show", "health", "check", "enable", "disable", "drain", "rm"],
        "directives": ["list", "add", "show", "rm"],
        "tasks": ["list", "add", "show", "enable", "disable", "rm"],
        "runs": ["launch", "list", "show", "logs", "cancel", "wait"],
    }
    for group, names in groups.items():
        text = cli(group, "--help").stdout
        assert all(c in text for c in names), group
        for command in names:
            assert "Usage: dockfleet" in cli(group, command, "--help").stdout
    assert "--ssh-key" in cli("hosts", "add", "--help").stdout
    assert cli("--version").stdout.strip() == "dockfleet 0.1.0"


def test_host_commands_by_name_and_id(cli: Cli) -> None:
    name = unique("local")
    added = cli.json("hosts", "add", name, "--socket", MISSING, "--max-concurrency", "3")
    assert (added["base_url"], added["type"]) == (f"unix://{MISSING}", "docker_socket")
    host_id = str(added["id"])
    listing = cli("hosts", "list").stdout
    assert name in listing and "0/3" in listing and "unhealthy; stale" in listing
    assert cli.json("hosts", "show", name)["id"] == added["id"]
    assert f"name           {name}" in cli("hosts", "show", host_id).stdout
    beat = cli.json("hosts", "health", name)
    assert beat["is_stale"] is False and "check" not in beat
    failed = cli("hosts", "check", name, code=1)
    assert "failed" in failed.stdout and "nonexistent" in failed.stdout
    assert "disabled" in cli("hosts", "disable", name).stdout
    assert cli.json("hosts", "enable", host_id)["enabled"] is True
    assert cli.json("hosts", "drain", name)["draining"] is True
    assert cli.json("hosts", "undrain", name)["draining"] is False
    assert cli.json("hosts", "rm", name) == {"id": added["id"], "deleted": True}
    assert name not in cli("hosts", "list").stdout


def test_hosts_add_over_ssh_and_tls(cli: Cli) -> None:
    ssh = cli.json(
        "hosts", "add", unique("vm"), "--tcp", "10.255.0.15:2375", "--disabled",
        "--ssh-user", "vmadmin", "--ssh-key", f"{SECRETS}/vm_ssh_key", "--gpus", "1",
        "--label", "zone=lab",
    )  # fmt: skip
    assert ssh["base_url"] == "tcp://10.255.0.15:2375" and ssh["enabled"] is False
    assert ssh["has_ssh_config"] and not ssh["has_tls_config"]
    assert ssh["capabilities"] == {
        "gpus": True,
        "gpu_count": 1,
        "max_concurrency": 1,
        "labels": {"zone": "lab"},
    }
    tls = cli.json(
        "hosts", "add", unique("nas"), "--tcp", "tcp://10.255.0.16:2376", "--disabled",
        "--tls-ca", f"{SECRETS}/nas/ca.pem", "--tls-cert", f"{SECRETS}/nas/cert.pem",
        "--tls-key", f"{SECRETS}/nas/key.pem",
    )  # fmt: skip
    assert tls["has_tls_config"] and not tls["has_ssh_config"]
    for host in (ssh, tls):
        cli("hosts", "rm", str(host["id"]))


def test_directives_and_tasks(cli: Cli) -> None:
    name = unique("dir")
    made = cli.json(
        "directives", "add", name, "--description", "nightly",
        "--task", "log_triage", "--task", "service_map", "--env", "LEVEL=debug",
    )  # fmt: skip
    assert made["tasks"] == ["log_triage", "service_map"] and made["env"] == {"LEVEL": "debug"}
    assert name in cli("directives", "list").stdout
    assert "log_triage, service_map" in cli("directives", "show", name).stdout
    assert cli.json("directives", "show", str(made["id"]))["name"] == name
    task = unique("task")
    added = cli("tasks", "add", task, "--image", "busybox:1.36", "--timeout", "30", "--json",
                "--bind", "/var/log:/host/log:ro", "--", "sh", "-c", "echo hi")  # fmt: skip
    created = json.loads(added.stdout)
    assert created["command"] == ["sh", "-c", "echo hi"]
    assert created["binds"] == ["/var/log:/host/log:ro"]
    assert "sh -c 'echo hi'" in cli("tasks", "show", task).stdout
    assert "disabled" in cli("tasks", "disable", task).stdout
    assert task not in cli("tasks", "list", "--enabled").stdout
    assert cli.json("tasks", "enable", str(created["id"]))["enabled"] is True
    assert "deleted" in cli("tasks", "rm", task).stdout
    assert "deleted" in cli("directives", "rm", name).stdout


def test_runs_and_status_without_docker(cli: Cli) -> None:
    host = cli.json("hosts", "add", unique("idle"), "--socket", MISSING)
    directive = cli.json("directives", "add", unique("d"))
    refused = cli("runs", "launch", "--directive", directive["name"], "--task", "log_triage",
                  code=1)  # fmt: skip
    assert "error: 503: No available hosts found" in refused.stderr
    assert f"{host['name']} (#{host['id']}): unhealthy" in refused.stderr
    target = cli("runs", "launch", "-d", str(directive["id"]), "--host", host["name"], code=1)
    assert "409" in target.stderr and "cannot take this run" in target.stderr
    assert cli.json("runs", "list", "--status", "running,pending", "--status", "starting") == []
    status = cli.json("status")
    assert set(status) == {"hosts", "active_runs", "pending_runs", "gpus", "next_fires"}
    assert status["active_runs"] == [] and status["pending_runs"] == 0
    table = cli("status").stdout
    assert "runs active" in table and host["name"] in table and "0/1" in table
    cli("hosts", "rm", host["name"])
    cli("directives", "rm", directive["name"])


def test_launch_without_a_default_directive_says_what_to_do(cli: Cli) -> None:
    result = cli("runs", "launch", code=1)
    assert "no directive named 'default'" in result.stderr
    assert "dockfleet directives add default" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["hosts", "show", "no-such-host"], "error: 404: worker host 'no-such-host' not found"),
        (["hosts", "rm", "987654"], "error: 404: worker host 987654 not found"),
        (["runs", "show", "987654"], "error: 404: run 987654 not found"),
        (["runs", "cancel", "987654"], "error: 404: run 987654 not found"),
        (["runs", "logs", "987654", "--follow"], "error: 404: run 987654 not found"),
        (["tasks", "show", "no-such-task"], "error: 404: task no-such-task not found"),
        (["directives", "show", "nope"], "error: 404: directive 'nope' not found"),
        (["hosts", "add", "x", "--socket", "relative/path"], "error: 422: base_url: "),
        (["tasks", "add", "t1", "--image", "Not An Image"], "error: 422: image: "),
    ],
)
def test_server_errors_exit_1_with_the_detail(cli: Cli, args: list[str], message: str) -> None:
    result = cli(*args, code=1)
    assert result.stderr.startswith(message), result.stderr
    assert result.stdout == ""


def test_duplicate_name_is_409(cli: Cli) -> None:
    name = unique("dup")
    cli("hosts", "add", name, "--socket", MISSING)
    result = cli("hosts", "add", name, "--socket", MISSING, code=1)
    assert f"error: 409: a worker host named '{name}' already exists" in result.stderr
    cli("hosts", "rm", name)


def test_unreachable_server_exits_1(cli: Cli) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = cli("--url", url, "hosts", "list", code=1)
    assert result.stderr.startswith(f"error: cannot reach dockfleet at {url}: ")
    result = cli("status", code=1, DOCKFLEET_URL=url)
    assert f"cannot reach dockfleet at {url}" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["hosts", "add", "x"],  # neither --socket nor --tcp
        ["hosts", "add", "x", "--socket", "/s", "--tcp", "h:1"],
        ["hosts", "add", "x", "--socket", "/s", "--ssh-user", "u"],
        ["hosts", "add", "x", "--tcp", "h:1", "--ssh-user", "u"],  # no --ssh-key
        ["hosts", "add", "x", "--tcp", "h:1", "--tls-ca", "/ca"],  # partial TLS
        ["hosts", "add", "x", "--socket", "/s", "--gpus", "-1"],
        ["hosts", "add", "x", "--socket", "/s", "--label", "novalue"],
        ["hosts", "list", "--bogus"],
        ["runs", "show", "abc"],
        ["runs", "list", "--status", "bogus"],
        ["directives", "add", "d", "--env", "NOEQUALS"],
        ["tasks", "add", "t"],  # no --image
        ["nosuchcommand"],
    ],
)
def test_bad_flags_are_usage_errors(cli: Cli, args: list[str]) -> None:
    result = cli(*args, code=2)
    assert "Usage:" in result.output or "Try 'dockfleet" in result.output


def test_no_color_and_json_are_plain(cli: Cli) -> None:
    result = cli("tasks", "list", "--json", NO_COLOR="1")
    names = {t["name"] for t in json.loads(result.stdout)}
    assert {"log_triage", "gpu_report", "service_map"} <= names


def test_serve_migrates_then_serves(tmp_path: Path) -> None:
    port = free_port()
    env = server_env(tmp_path / "fresh.db", {"DOCKFLEET_HOST": "127.0.0.1"})
    argv = [sys.executable, "-m", "app", "serve", "--port", str(port)]
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                tasks = httpx.get(f"http://127.0.0.1:{port}/api/tasks/", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        assert tasks.json()["count"] == 3  # migrations ran (they seed the tasks)
        assert "applying migrations" in log.read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_serve_rejects_bad_settings(cli: Cli) -> None:
    result = cli("serve", code=2, DOCKFLEET_PORT="not-a-port")
    assert "invalid settings: DOCKFLEET_PORT" in result.stderr


def test_python_dash_m_app_is_the_cli() -> None:
    env = {**os.environ, "DOCKFLEET_URL": f"http://127.0.0.1:{free_port()}"}
    done = subprocess.run(
        [sys.executable, "-m", "app", "hosts", "list"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 1
    assert done.stderr.startswith("error: cannot reach dockfleet at")
    assert "Traceback" not in done.stderr


def test_every_readme_command_parses(cli: Cli) -> None:
    # Against a closed port: valid flags reach the (absent) server and exit 1, bad ones exit 2.
    url = f"http://127.0.0.1:{free_port()}"
    lines = [argv for block in bash_blocks() for argv in commands(block, "dockfleet")]
    assert len(lines) >= 25
    for argv in lines:
        if argv[1] == "serve":
            continue
        result = cli("--url", url, *argv[1:], code=1)
        assert "cannot reach dockfleet" in result.stderr, argv
