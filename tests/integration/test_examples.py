"""examples/ and the README walkthrough, run as a user would against a real server and fleet.

The server is a uvicorn subprocess; the examples and `dockfleet` are subprocesses too. The
"Unraid" host is the fleet's fake-GPU daemon on its unix socket; the "VM" is the fleet's
SSH-only daemon reached through a real SSH tunnel.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.client import DockfleetClient, RunStatus
from tests.fleet import Fleet
from tests.live_server import ROOT, LiveServer, live_server
from tests.readme import bash_blocks

EXAMPLES = ROOT / "examples"
DOCKFLEET = str(Path(sys.executable).with_name("dockfleet"))
LOCAL_SOCKET = "unix:///var/run/docker.sock"  # the README's; the tests use a fleet daemon's


@pytest.fixture
def server(tmp_path: Path, migrated_template: Path) -> Iterator[LiveServer]:
    """A fresh server per test: the runbook's ids (host 1, directive 1) hold."""
    with live_server(tmp_path, template=migrated_template) as started:
        yield started


def run(argv: list[str], env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    """Run a command as a user would; its output is printed when a test fails."""
    done = subprocess.run(
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    print(f"$ {' '.join(argv)}\n{done.stdout}{done.stderr}")
    return done


def user_env(url: str, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKFLEET_", "VM_"))}
    return {**base, "DOCKFLEET_URL": url, **extra}


def fleet_env(server: LiveServer, fleet: Fleet) -> dict[str, str]:
    """The examples' settings pointing at the fleet's daemons."""
    ssh = fleet.ssh.ssh
    assert ssh is not None
    return user_env(
        server.url,
        UNRAID_SOCKET=fleet.gpu.base_url,
        UNRAID_GPUS=str(len(fleet.gpu.gpu_ids)),
        VM_ADDRESS=ssh.host,
        VM_DOCKER_URL=fleet.ssh.base_url,
        VM_SSH_PORT=str(ssh.port),
        VM_SSH_USER=ssh.user,
        VM_SSH_KEY=ssh.key_path,
        VM_KNOWN_HOSTS=ssh.known_hosts,
    )


def example(name: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return run([sys.executable, str(EXAMPLES / name), *args], env)


def test_examples_in_order_against_the_fleet(server: LiveServer, fleet: Fleet) -> None:
    env = fleet_env(server, fleet)
    vm_name = f"VM-{env['VM_ADDRESS']}"

    done = example("01_register_hosts.py", env)
    assert done.returncode == 0
    assert f"registered Unraid (#1): docker_socket {fleet.gpu.base_url}, enabled" in done.stdout
    assert f"registered {vm_name} (#2): docker_tcp {fleet.ssh.base_url}, enabled" in done.stdout
    again = example("01_register_hosts.py", env)  # idempotent
    assert again.returncode == 0 and "already registered Unraid (#1)" in again.stdout

    done = example("02_check_health.py", env)
    assert done.returncode == 0
    assert "Unraid (#1): healthy=True is_stale=False" in done.stdout
    assert f"{vm_name} (#2): healthy=True" in done.stdout
    assert "2 enabled hosts healthy" in done.stdout

    done = example("03_create_directive.py", env)
    assert done.returncode == 0 and "created directive default (#1)" in done.stdout
    assert example("03_create_directive.py", env).stdout.startswith("directive default exists")

    done = example("04_launch_runs.py", env)
    assert done.returncode == 0
    lines = done.stdout.splitlines()
    assert lines[0].startswith("default task selection: run 1 ")
    assert "log_triage, gpu_report, service_map" in lines[0]
    assert lines[1].startswith("specific tasks: run 2 ") and "on Unraid" in lines[1]
    assert lines[2].startswith(f"on host {vm_name}: run 3 ") and f"on {vm_name}" in lines[2]

    done = example("05_watch_run.py", env)  # the newest run: log_triage on the VM
    assert done.returncode == 0
    assert "=== log_triage (task 1, attempt 1) ===" in done.stdout
    assert "== 20 largest files under /var/log" in done.stdout
    assert f"run 3 on {vm_name}: succeeded" in done.stdout
    assert "1. log_triage: succeeded (exit 0)" in done.stdout

    with DockfleetClient(server.url) as client:
        for run_id in (1, 2):  # their gpu_report image cannot be pulled in the offline fleet
            ended = client.wait_for_run(run_id, timeout=120)
            assert ended.status in (RunStatus.succeeded, RunStatus.failed)
            assert ended.worker_host_name == "Unraid" and len(ended.gpu_device_ids) == 1


def test_readme_walkthrough_cli_block(server: LiveServer, fleet: Fleet) -> None:
    env = user_env(server.url)
    block = bash_blocks("walkthrough:cli")[0].replace(LOCAL_SOCKET, fleet.sock.base_url)
    done = run(["bash", "-euo", "pipefail", "-c", block], env)
    assert done.returncode == 0
    assert "check        ok" in done.stdout
    assert "=== log_triage (task 1, attempt 1) ===" in done.stdout
    assert "=== run 1 succeeded ===" in done.stdout
    assert "1 hosts (1 schedulable)" in done.stdout


def test_readme_walkthrough_curl_block(server: LiveServer, fleet: Fleet) -> None:
    block = bash_blocks("walkthrough:curl")[0]
    block = block.replace(LOCAL_SOCKET, fleet.sock.base_url)
    block = block.replace("http://localhost:9595", server.url)
    done = run(["bash", "-euo", "pipefail", "-c", block], user_env(server.url))
    assert done.returncode == 0
    assert '"healthy":true' in done.stdout and '"ok":true' in done.stdout
    assert "=== log_triage (task 1, attempt 1) ===" in done.stdout
    assert done.stdout.rstrip().endswith("]}")  # the run, last
    last = json.loads(done.stdout[done.stdout.rindex('{"id":1,"directive_id"') :])
    assert last["status"] == "succeeded" and last["worker_host_name"] == "local"


def test_cli_wait_follow_and_failures_against_the_fleet(server: LiveServer, fleet: Fleet) -> None:
    env = user_env(server.url)

    def cli(*args: str, code: int = 0) -> subprocess.CompletedProcess:
        done = run([DOCKFLEET, *args], env)
        assert done.returncode == code
        assert "Traceback" not in done.stderr
        return done

    cli("hosts", "add", "local", "--socket", fleet.sock.base_url, "--max-concurrency", "2")
    assert "check        ok" in cli("hosts", "check", "local").stdout
    assert "healthy" in cli("status").stdout
    cli("tasks", "add", "hello", "--image", "busybox:1.36", "--network", "none",
        "--", "sh", "-c", "echo hello from dockfleet")  # fmt: skip
    cli("directives", "add", "walkthrough", "--task", "hello")
    done = cli("runs", "launch", "--directive", "walkthrough", "--host", "local", "--follow")
    assert "hello from dockfleet" in done.stdout and "succeeded" in done.stdout
    run_id = json.loads(cli("runs", "list", "--host", "local", "--json").stdout)[0]["id"]
    logs = cli("runs", "logs", str(run_id)).stdout
    assert "=== hello (task 1, attempt 1) ===\nhello from dockfleet\n" in logs
    final = json.loads(cli("runs", "launch", "-d", "walkthrough", "--wait", "--json").stdout)
    assert final["status"] == "succeeded" and final["worker_host_name"] == "local"

    cli("tasks", "add", "boom", "--image", "busybox:1.36", "--network", "none",
        "--", "sh", "-c", "echo going down; exit 3")  # fmt: skip
    failed = cli("runs", "launch", "-d", "walkthrough", "-t", "boom", "--host", "local",
                 "--wait", code=1)  # fmt: skip
    assert "error: run" in failed.stderr and "failed" in failed.stderr


def test_register_example_defaults_to_a_disabled_runbook_vm(
    tmp_path: Path, migrated_template: Path
) -> None:
    # Health checks are off on this server and the VM is disabled: nothing contacts its address.
    # Its key lives in /secrets, as in the runbook: the server's secrets directory.
    env = {"DOCKFLEET_SECRETS_DIR": "/secrets"}
    with live_server(tmp_path, env, template=migrated_template) as quiet:
        env = user_env(quiet.url, UNRAID_SOCKET="unix:///nonexistent/docker.sock")
        done = example("01_register_hosts.py", env)
        assert done.returncode == 0
        with DockfleetClient(quiet.url) as client:
            vm = client.hosts.get(2)
            unraid = client.hosts.get(1)
        assert vm.name == "VM-192.168.1.15" and vm.enabled is False  # documentation address
        assert vm.has_ssh_config and vm.last_check_at is None
        assert unraid.capabilities.gpu_count == 2 and unraid.capabilities.max_concurrency == 5
        assert "stays disabled" in done.stdout
