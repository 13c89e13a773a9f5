"""sshd for the `ssh` host, run inside that host's netns on <ns ip>:22 (recipe §3).

Keys, authorized_keys, known_hosts and a second unauthorized `wrong_key` live in the host's dir.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

from .netns import NetNS
from .procs import descendants, kill_all, run, stop_popen

SSHD = "/usr/sbin/sshd"


@dataclass
class SSHAccess:
    host: str
    port: int
    user: str
    key_path: str
    known_hosts: str
    wrong_key_path: str  # valid ed25519 key that is NOT authorized


_CONFIG = """\
Port 22
ListenAddress {ip}
HostKey {d}/ssh_host_ed25519_key
PidFile {d}/sshd.pid
AuthorizedKeysFile {d}/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowTcpForwarding yes
AllowStreamLocalForwarding yes
MaxStartups 100:30:200
MaxSessions 100
LogLevel VERBOSE
SetEnv DOCKER_HOST=unix://{docker_sock}
"""


class Sshd:
    def __init__(self, d: str, ns: NetNS, docker_sock: str) -> None:
        self.dir, self.ns, self.docker_sock = d, ns, docker_sock
        self.config = os.path.join(d, "sshd_config")
        self.log = os.path.join(d, "sshd.log")
        self._proc: subprocess.Popen | None = None

    def prepare(self) -> SSHAccess:
        d = self.dir
        os.makedirs(d, exist_ok=True)
        os.makedirs("/run/sshd", exist_ok=True)  # privilege separation dir
        for key in ("ssh_host_ed25519_key", "client_key", "wrong_key"):
            run(
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                f"dfl-{key}",
                "-f",
                f"{d}/{key}",
            )
        with open(f"{d}/client_key.pub") as src, open(f"{d}/authorized_keys", "w") as dst:
            dst.write(src.read())
        os.chmod(f"{d}/authorized_keys", 0o600)
        with open(f"{d}/ssh_host_ed25519_key.pub") as fh:
            host_key = " ".join(fh.read().split()[:2])
        with open(f"{d}/known_hosts", "w") as fh:
            fh.write(f"{self.ns.ns_ip} {host_key}\n")  # port 22: no [host]:port brackets
        with open(self.config, "w") as fh:
            fh.write(_CONFIG.format(ip=self.ns.ns_ip, d=d, docker_sock=self.docker_sock))
        run(SSHD, "-t", "-f", self.config)
        return SSHAccess(
            host=self.ns.ns_ip,
            port=22,
            user="root",
            key_path=f"{d}/client_key",
            known_hosts=f"{d}/known_hosts",
            wrong_key_path=f"{d}/wrong_key",
        )

    def start(self, timeout: float = 15.0) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        with open(self.log, "ab") as log:
            self._proc = subprocess.Popen(
                [*self.ns.nsenter(), SSHD, "-f", self.config, "-D", "-e"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not self._banner():
            if self._proc.poll() is not None:
                raise RuntimeError(f"sshd exited with {self._proc.returncode}, see {self.log}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"sshd not answering on {self.ns.ns_ip}:22, see {self.log}")
            time.sleep(0.05)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the listener and every session process it forked, so open tunnels drop."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            kill_all(descendants(proc.pid), timeout)
        stop_popen(proc, timeout)
        self._proc = None

    def kill(self, sessions: bool = True) -> None:
        """SIGKILL the listener (and, with `sessions`, every session: open tunnels drop)."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            victims = [*descendants(proc.pid)] if sessions else []
            proc.kill()
            for pid in victims:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        proc.wait(10)
        self._proc = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def restart(self) -> None:
        self.stop()
        self.start()

    @contextmanager
    def other_host_key(self) -> Iterator[str]:
        """sshd restarted with a brand-new host key for the block (yields its SHA256
        fingerprint); the original key (the one in known_hosts) is back afterwards."""
        key = f"{self.dir}/ssh_host_ed25519_key"
        shutil.copy(key, f"{key}.orig")
        shutil.copy(f"{key}.pub", f"{key}.pub.orig")
        try:
            os.unlink(key)
            os.unlink(f"{key}.pub")
            run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "dfl-rotated", "-f", key)
            fingerprint = run("ssh-keygen", "-lf", f"{key}.pub").split()[1]
            self.restart()
            yield fingerprint
        finally:
            os.replace(f"{key}.orig", key)
            os.replace(f"{key}.pub.orig", f"{key}.pub")
            self.restart()

    def host_key_fingerprint(self) -> str:
        """SHA256 fingerprint of the host key sshd serves now."""
        return run("ssh-keygen", "-lf", f"{self.dir}/ssh_host_ed25519_key.pub").split()[1]

    def _banner(self) -> bool:
        try:
            with socket.create_connection((self.ns.ns_ip, 22), timeout=1.0) as sock:
                return sock.recv(64).startswith(b"SSH-")
        except OSError:
            return False
