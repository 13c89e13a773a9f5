"""One dockerd per network namespace: the Daemon handle tests use (stop/start, API payloads).

dockerd runs via `nsenter --net` (not `ip netns exec`), --bridge=none, own dirs and cgroup.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field

from . import dockerapi
from .certs import ServerTLS, TLSFiles
from .netns import NetNS
from .procs import kill_all, pids_with_cmdline, stop_popen
from .sshd import SSHAccess

TLS_PORT = 2376
SSH_DOCKER_PORT = (
    2375  # plain TCP on 127.0.0.1 inside the ssh netns (only reachable via the tunnel)
)
_HOOK = """#!/bin/sh
cat >/dev/null
if [ -e "{flag}" ]; then
  echo "nvidia-container-cli: initialization error: nvml error: driver not loaded" >&2
  exit 1
fi
exit 0
"""


@dataclass(eq=False)
class Daemon:
    name: str  # "sock", "tls", "ssh", "gpu"
    socket_path: str  # unix socket on this machine (for direct assertions)
    base_url: str  # what dockfleet registers
    tls: TLSFiles | None
    ssh: SSHAccess | None
    gpu_ids: list[str]
    netns: str = ""  # network namespace name
    ns_ip: str = ""  # address of the namespace end of the veth
    dir: str = ""  # per-daemon directory (log: <dir>/dockerd.log)
    _argv: list[str] = field(default_factory=list, repr=False)
    _env: dict[str, str] = field(default_factory=dict, repr=False)
    _proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def log_path(self) -> str:
        return os.path.join(self.dir, "dockerd.log")

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def start(self, timeout: float = 60.0) -> None:
        """Start dockerd (same dirs and flags as before) and wait until /_ping answers."""
        if self.pid is not None:
            return
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                self._argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not dockerapi.ping(self.socket_path):
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"dockerd {self.name} exited with {self._proc.returncode}:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"dockerd {self.name} not ready in {timeout}s:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM dockerd and wait until it (and its containerd) are gone."""
        stop_popen(self._proc, timeout)
        self._proc = None
        kill_all(pids_with_cmdline(os.path.join(self.dir, "x") + "/"))  # orphaned containerd/shims

    def host_payload(self, name: str, **caps: object) -> dict:
        """Body for POST /api/worker-hosts/ registering this daemon."""
        capabilities = {
            "gpus": bool(self.gpu_ids),
            "gpu_count": len(self.gpu_ids),
            "max_concurrency": 3,
            **caps,
        }
        payload: dict = {
            "name": name,
            "type": "docker_socket" if self.base_url.startswith("unix://") else "docker_tcp",
            "base_url": self.base_url,
            "enabled": True,
            "capabilities": capabilities,
        }
        if self.tls is not None:
            payload["tls_config"] = {
                "ca_cert": self.tls.ca_cert,
                "client_cert": self.tls.client_cert,
                "client_key": self.tls.client_key,
            }
        if self.ssh is not None:
            payload["ssh_config"] = {
                "host": self.ssh.host,
                "port": self.ssh.port,
                "user": self.ssh.user,
                "key_path": self.ssh.key_path,
                "known_hosts": self.ssh.known_hosts,
            }
        return payload

    def set_gpu_hook_failing(self, failing: bool) -> None:
        """gpu daemon only: make the fake nvidia hook fail container starts like a broken driver."""
        flag = os.path.join(self.dir, "gpu-hook-FAIL")
        if failing:
            open(flag, "w").close()
        elif os.path.exists(flag):
            os.unlink(flag)

    def log_tail(self, lines: int = 30) -> str:
        try:
            with open(self.log_path, errors="replace") as fh:
                return "".join(fh.readlines()[-lines:])
        except OSError:
            return "(no log)"


def make_daemon(
    name: str,
    suffix: str,
    base: str,
    ns: NetNS,
    *,
    tls: tuple[TLSFiles, ServerTLS] | None = None,
    ssh: SSHAccess | None = None,
    gpu: bool = False,
) -> Daemon:
    d = os.path.join(base, name)
    os.makedirs(d, exist_ok=True)
    sock = os.path.join(d, "docker.sock")
    with open(os.path.join(d, "daemon.json"), "w") as fh:
        fh.write("{}\n")  # never pick up /etc/docker/daemon.json
    tag = f"dfl-{name}-{suffix}"
    argv = [
        *ns.nsenter(),
        "dockerd",
        f"--config-file={d}/daemon.json",
        f"--host=unix://{sock}",
        f"--data-root={d}/data",
        f"--exec-root={d}/x",
        f"--pidfile={d}/docker.pid",
        f"--cgroup-parent=/{tag}",
        f"--containerd-namespace={tag}",
        f"--containerd-plugins-namespace={tag}-plugins",
        "--bridge=none",
        "--iptables=false",
        "--ip6tables=false",
        "--ip-masq=false",
        "--shutdown-timeout=2",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "NOTIFY_SOCKET"))}
    base_url = f"unix://{sock}"
    if tls is not None:
        server = tls[1]
        argv += [
            f"--host=tcp://{ns.ns_ip}:{TLS_PORT}",
            "--tlsverify",
            f"--tlscacert={server.ca_cert}",
            f"--tlscert={server.cert}",
            f"--tlskey={server.key}",
        ]
        base_url = f"tcp://{ns.ns_ip}:{TLS_PORT}"
    if ssh is not None:
        argv.append(f"--host=tcp://127.0.0.1:{SSH_DOCKER_PORT}")
        base_url = f"tcp://127.0.0.1:{SSH_DOCKER_PORT}"
    if gpu:
        hook_dir = os.path.join(d, "hookbin")
        os.makedirs(hook_dir, exist_ok=True)
        hook = os.path.join(hook_dir, "nvidia-container-runtime-hook")
        with open(hook, "w") as fh:
            fh.write(_HOOK.format(flag=os.path.join(d, "gpu-hook-FAIL")))
        os.chmod(hook, 0o755)
        env["PATH"] = f"{hook_dir}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
    return Daemon(
        name=name,
        socket_path=sock,
        base_url=base_url,
        tls=tls[0] if tls else None,
        ssh=ssh,
        gpu_ids=["0", "1"] if gpu else [],
        netns=ns.name,
        ns_ip=ns.ns_ip,
        dir=d,
        _argv=argv,
        _env=env,
    )
