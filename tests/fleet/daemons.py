"""One dockerd per network namespace: the Daemon handle tests use (stop/start, API payloads).

dockerd runs via `nsenter --net` (not `ip netns exec`), --bridge=none, own dirs and cgroup.
`nsenter` exec()s dockerd (no --fork), so the Popen pid IS dockerd (`dockerd_pid` checks it).

Faults, each with a context manager that always undoes it:

* `kill(sig)` / `killed(sig)`: signal dockerd only and wait for it to exit. After SIGKILL its
  containerd dies too (dockerd starts it with Pdeathsig=SIGKILL) but can stay a zombie for a
  while, and the shims and containers keep running. `start()` then clears the stale pid files
  (else the new dockerd "reuses" the zombie and fails: "timeout waiting for containerd to
  start"). On that start dockerd (no --live-restore) stops the containers that survived before
  `/_ping` answers: SIGTERM, SIGKILL after their StopTimeout (default 10 s), `die` exit 137.
  Containers that exited while dockerd was dead are just marked exited: no `die` event.
* `freeze()` / `thaw()` / `frozen()`: SIGSTOP/SIGCONT to dockerd only. Its sockets still accept
  (the kernel completes the handshake) but nothing answers; containerd, shims and containers run
  on, and exits that happen meanwhile are reported (events) only after the thaw.
* `link_down()` / `link_up()` / `link_cut()`: host end of the veth down; connects to `ns_ip`
  fail at once with EHOSTUNREACH (a guard route, see netns.py).
* `partition()` / `heal()` / `partitioned()`: iptables DROP of all but `lo` inside the netns;
  connects to `ns_ip` time out (no RST, no ICMP), established connections go silent.

The daemon's unix socket is on this machine, so `socket_path` keeps working under link faults.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from . import dockerapi, netns
from .certs import ServerTLS, TLSFiles
from .netns import NetNS
from .procs import alive, kill_all, pids_with_cmdline, stop_popen
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
    host_if: str = ""  # host end of the veth (link_down/link_up)
    dir: str = ""  # per-daemon directory (log: <dir>/dockerd.log)
    _argv: list[str] = field(default_factory=list, repr=False)
    _env: dict[str, str] = field(default_factory=dict, repr=False)
    _proc: subprocess.Popen | None = field(default=None, repr=False)
    started_at: float = 0.0  # epoch seconds of the last start() (events before it are gone)
    _frozen: bool = field(default=False, repr=False)

    @property
    def log_path(self) -> str:
        return os.path.join(self.dir, "dockerd.log")

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    @property
    def ns_path(self) -> str:
        return f"/run/netns/{self.netns}"

    def start(self, timeout: float = 60.0) -> None:
        """Start dockerd (same dirs and flags as before) and wait until /_ping answers."""
        if self.pid is not None:
            return
        self._clear_stale_pids()
        self.started_at = time.time()
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
        """SIGTERM dockerd and wait until it (and its containerd) are gone (thaws it first)."""
        self._signal(signal.SIGCONT)  # a stopped dockerd would sit on the SIGTERM
        self._frozen = False
        stop_popen(self._proc, timeout)
        self._proc = None
        kill_all(pids_with_cmdline(os.path.join(self.dir, "x") + "/"))  # orphaned containerd/shims

    # --- process faults -------------------------------------------------------------------

    @property
    def dockerd_pid(self) -> int:
        """pid of the running dockerd; raises unless that process really is dockerd."""
        pid = self.pid
        if pid is None:
            raise RuntimeError(f"dockerd {self.name} is not running")
        exe = os.path.basename(os.readlink(f"/proc/{pid}/exe"))
        if exe != "dockerd":
            raise RuntimeError(f"pid {pid} of {self.name} is {exe!r}, not dockerd")
        return pid

    @property
    def containerd_pid(self) -> int | None:
        """pid of the containerd this dockerd started, if it is alive (zombies are not)."""
        pid = _read_pid(self._containerd_pidfile)
        return pid if pid is not None and alive(pid) else None

    @property
    def _containerd_pidfile(self) -> str:
        return os.path.join(self.dir, "x", "containerd", "containerd.pid")

    def _signal(self, sig: int) -> None:
        """Signal dockerd if it runs (no-op otherwise)."""
        if self.pid is None:
            return
        try:
            os.kill(self.dockerd_pid, sig)
        except (ProcessLookupError, FileNotFoundError):
            pass

    def kill(self, sig: int = signal.SIGKILL, timeout: float = 30.0) -> None:
        """Send `sig` to dockerd only, wait until it has exited (and its containerd, if SIGKILL).

        Containers are not touched: after SIGKILL their shims keep them running. `start()` brings
        dockerd back on the same dirs. SIGTERM is a clean shutdown (containers are stopped).
        """
        proc = self._proc
        if proc is None or proc.poll() is not None:
            raise RuntimeError(f"dockerd {self.name} is not running")
        ctd = self.containerd_pid
        self._signal(sig)
        if self._frozen and sig != signal.SIGKILL:
            self._signal(signal.SIGCONT)
        self._frozen = False
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"dockerd {self.name} still alive {timeout}s after {sig}") from None
        deadline = time.monotonic() + 10
        while ctd is not None and alive(ctd) and time.monotonic() < deadline:
            time.sleep(0.02)

    def _clear_stale_pids(self) -> None:
        """Before a start: drop pid files of dead/zombie processes, end a leftover containerd.

        dockerd treats a pid file whose pid answers kill(0) as "still running"; a zombie does.
        """
        ctd = _read_pid(self._containerd_pidfile)
        if ctd is not None and alive(ctd):
            exec_root = os.path.join(self.dir, "x") + "/"
            if ctd in pids_with_cmdline(exec_root):
                kill_all([ctd])
        for path in (self._containerd_pidfile, os.path.join(self.dir, "docker.pid")):
            pid = _read_pid(path)
            if pid is not None and not alive(pid):
                os.unlink(path)

    @contextmanager
    def killed(self, sig: int = signal.SIGKILL) -> Iterator[None]:
        """dockerd dead (killed with `sig`) inside the block; started again on exit."""
        self.kill(sig)
        try:
            yield
        finally:
            self.start()

    def freeze(self) -> None:
        """SIGSTOP dockerd (only dockerd: containerd and containers run on)."""
        pid = self.dockerd_pid
        os.kill(pid, signal.SIGSTOP)
        self._frozen = True
        deadline = time.monotonic() + 5
        while _state(pid) not in ("T", "t"):  # group stop done
            if time.monotonic() > deadline:
                raise TimeoutError(f"dockerd {self.name} did not stop")
            time.sleep(0.005)

    def thaw(self, wait: bool = True, timeout: float = 30.0) -> None:
        """SIGCONT dockerd; with `wait`, until /_ping answers again."""
        self._signal(signal.SIGCONT)
        self._frozen = False
        deadline = time.monotonic() + timeout
        while wait and not dockerapi.ping(self.socket_path):
            if time.monotonic() > deadline:
                raise TimeoutError(f"dockerd {self.name} not answering {timeout}s after SIGCONT")
            time.sleep(0.02)

    @property
    def is_frozen(self) -> bool:
        return self._frozen

    @contextmanager
    def frozen(self) -> Iterator[None]:
        """dockerd stopped (SIGSTOP) inside the block; always thawed on exit."""
        self.freeze()
        try:
            yield
        finally:
            self.thaw()

    # --- network faults (the daemon's netns and veth) ---------------------------------------

    def link_down(self) -> None:
        """Host end of the veth down: connects to `ns_ip` fail fast (EHOSTUNREACH)."""
        netns.link_down(self.host_if, self.ns_ip)

    def link_up(self) -> None:
        netns.link_up(self.host_if, self.ns_ip)

    @property
    def is_link_down(self) -> bool:
        return netns.link_is_down(self.host_if)

    @contextmanager
    def link_cut(self) -> Iterator[None]:
        """Link down inside the block; always up again on exit."""
        self.link_down()
        try:
            yield
        finally:
            self.link_up()

    def partition(self) -> None:
        """Silent partition: DROP everything but `lo` in the netns; connects to `ns_ip` time out."""
        netns.partition(self.ns_path)

    def heal(self) -> None:
        netns.heal(self.ns_path)

    @property
    def is_partitioned(self) -> bool:
        return netns.is_partitioned(self.ns_path)

    @contextmanager
    def partitioned(self) -> Iterator[None]:
        """Silent partition inside the block; always healed on exit."""
        self.partition()
        try:
            yield
        finally:
            self.heal()

    def undo_faults(self) -> None:
        """Whatever a test left behind: thaw, heal, link up, and start dockerd if it is dead."""
        self._signal(signal.SIGCONT)
        self._frozen = False
        if self.host_if and self.is_link_down:
            self.link_up()
        if self.netns and shutil.which("iptables") and self.is_partitioned:
            self.heal()
        self.start()

    # --- payloads ----------------------------------------------------------------------------

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
        """GPU daemons only: make the fake nvidia hook fail container starts (broken driver)."""
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


def _read_pid(path: str) -> int | None:
    try:
        with open(path) as fh:
            return int(fh.read().strip() or 0) or None
    except (OSError, ValueError):
        return None


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "X"


def make_daemon(
    name: str,
    suffix: str,
    base: str,
    ns: NetNS,
    *,
    tls: tuple[TLSFiles, ServerTLS] | None = None,
    ssh: SSHAccess | None = None,
    gpu: bool = False,
    gpu_ids: list[str] | None = None,
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
        gpu_ids=(gpu_ids if gpu_ids is not None else ["0", "1"]) if gpu else [],
        netns=ns.name,
        ns_ip=ns.ns_ip,
        host_if=ns.host_if,
        dir=d,
        _argv=argv,
        _env=env,
    )
