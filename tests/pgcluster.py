"""A throw-away PostgreSQL cluster for the tests: initdb into a temp dir, `postgres` on a free
loopback port (its unix socket in the same dir), removed afterwards.

    cluster = Cluster.create()     # initdb + start, about 1-2 s
    cluster.url                    # postgresql+asyncpg://dockfleet:<pw>@127.0.0.1:<port>
    cluster.stop(); cluster.start()  # the database goes away, and comes back (same data)
    cluster.remove()               # stop and delete everything

The binaries are Debian's (`postgresql` package: /usr/lib/postgresql/<version>/bin). As root the
server runs as the `postgres` user (PostgreSQL refuses to run as root). TCP connections need the
password (scram-sha-256), so a wrong one is refused as it would be in production.

Its dir is /tmp/dfpg-<pid>-<pid start time>-<random>: the owner is in the name, and
`sweep_leftovers()` (called by `create()`) stops and removes the clusters of dead owners.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.fleet.procs import alive, start_time

USER = "dockfleet"
_DIR_RE = re.compile(r"^dfpg-(\d+)-(\d+)-")


def bindir() -> Path | None:
    """The newest installed PostgreSQL's bin dir (Debian layout), or None."""
    found = []
    for path in glob.glob("/usr/lib/postgresql/*/bin/postgres"):
        version = Path(path).parent.parent.name
        if version.isdigit() and os.access(path, os.X_OK):
            found.append((int(version), Path(path).parent))
    return max(found)[1] if found else None


def missing() -> str | None:
    """Why a throw-away cluster cannot be started here, or None."""
    if bindir() is None:
        return "no PostgreSQL server binaries (Debian package `postgresql`; `make test` as root)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no `postgres` user to run the server as"
    return None


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Cluster:
    """One throw-away cluster (see the module docstring)."""

    base: Path
    port: int
    password: str
    bin: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def log(self) -> Path:
        return self.base / "postgres.log"

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the server (no database: append `/<name>`)."""
        return f"postgresql+asyncpg://{USER}:{self.password}@127.0.0.1:{self.port}"

    @classmethod
    def create(cls) -> Cluster:
        """initdb a new cluster in a temp dir and start it."""
        reason = missing()
        if reason:
            raise RuntimeError(reason)
        sweep_leftovers()
        me = os.getpid()
        base = Path(tempfile.mkdtemp(dir="/tmp", prefix=f"dfpg-{me}-{start_time(me)}-"))
        bin_ = bindir()
        assert bin_ is not None
        cluster = cls(base, _free_port(), secrets.token_hex(12), bin_)
        try:
            cluster._initdb()
            cluster.start()
        except BaseException:
            cluster.remove()
            raise
        return cluster

    def _as_owner(self) -> dict[str, object]:
        """Popen arguments that run a command as the cluster's owner."""
        if os.geteuid() != 0:
            return {}
        return {"user": "postgres", "group": "postgres", "extra_groups": []}

    def _initdb(self) -> None:
        pwfile = self.base / "pw"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        if os.geteuid() == 0:
            entry = pwd.getpwnam("postgres")
            os.chown(self.base, entry.pw_uid, entry.pw_gid)
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        argv = [str(self.bin / "initdb"), "-D", str(self.data), "-U", USER, "-E", "UTF8"]
        argv += ["--locale=C", "--no-sync", "--auth-local=trust", "--auth-host=scram-sha-256"]
        argv += [f"--pwfile={pwfile}"]
        res = subprocess.run(
            argv, capture_output=True, text=True, timeout=120, check=False, **self._as_owner()
        )
        pwfile.unlink()
        if res.returncode != 0:
            raise RuntimeError(f"initdb failed ({res.returncode}): {res.stderr.strip()[-2000:]}")

    def start(self, timeout: float = 30.0) -> None:
        """Start the server (again) and wait until it accepts connections."""
        if self.running:
            return
        argv = [str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port)]
        argv += ["-h", "127.0.0.1", "-k", str(self.base)]
        for setting in (
            "fsync=off",  # a test cluster: speed over durability
            "synchronous_commit=off",
            "full_page_writes=off",
            "max_connections=300",
            "shared_buffers=32MB",
            "log_min_messages=warning",
        ):
            argv += ["-c", setting]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **self._as_owner(),  # type: ignore[arg-type]
            )
        deadline = time.monotonic() + timeout
        ready = [str(self.bin / "pg_isready"), "-q", "-h", str(self.base), "-p", str(self.port)]
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited ({self.proc.returncode}):\n{self.log_tail()}")
            if subprocess.run(ready, timeout=10, check=False).returncode == 0:
                return
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"postgres not ready in {timeout}s:\n{self.log_tail()}")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT: sessions are cut, the data kept); SIGKILL if it hangs."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def remove(self) -> None:
        """Stop the server and delete the cluster's dir."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _postmaster_pid(data: Path) -> int | None:
    try:
        first = (data / "postmaster.pid").read_text().split("\n", 1)[0]
    except OSError:
        return None
    return int(first) if first.strip().isdigit() else None


def sweep_leftovers() -> list[str]:
    """Stop and remove the clusters whose owning (test) process is gone."""
    removed = []
    for path in glob.glob("/tmp/dfpg-*"):
        m = _DIR_RE.match(os.path.basename(path))
        if not m or alive(int(m.group(1)), m.group(2)):
            continue
        pid = _postmaster_pid(Path(path) / "data")
        if pid is not None and alive(pid):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    ours = path.encode() in fh.read()
            except OSError:
                ours = False
            if ours:
                os.kill(pid, signal.SIGQUIT)  # immediate shutdown: its owner is gone anyway
                deadline = time.monotonic() + 10
                while alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.05)
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed
