"""The Fleet: four dockerds (sock, tls, ssh, gpu), each in its own netns, started in parallel.

`start_fleet()` first cleans leftovers of crashed runs; `Fleet.teardown()` removes all it made.

More daemons on demand (about 1-2 s each), same conventions, so teardown and
`cleanup_leftovers()` cover them: `fleet.add_daemon(name, ...)` / `fleet.remove_daemon(name)`,
`with extra_daemon(fleet, name) as d:` (removed on exit), and `fleet.fault`: the fault suite's
own host (TLS over TCP at its netns address + fake GPUs "0".."3"), started on first use and kept
for the session, so partitioning or killing it never disturbs the four shared daemons.
"""

from __future__ import annotations

import atexit
import os
import re
import secrets
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from . import dockerapi, netns
from .certs import make_certs
from .cleanup import cleanup_leftovers, destroy, register, suffix_in_use
from .daemons import Daemon, make_daemon
from .sshd import Sshd

NAMES = ("sock", "tls", "ssh", "gpu")
_KINDS: dict[str, dict[str, object]] = {
    "sock": {},
    "tls": {"tls": True},
    # The fake NVIDIA hook without advertised GPUs: hosts register it as a CPU host, but a GPU
    # probe through the SSH tunnel finds the GPUs a probe image scripts (tests/fleet/fakegpu.py).
    "ssh": {"ssh": True, "gpu": True, "gpu_ids": []},
    "gpu": {"gpu": True},
}
FAULT = "fault"
FAULT_GPU_IDS = ["0", "1", "2", "3"]
_EXTRA_NAME = re.compile(r"[a-z]{1,6}")  # fits dfl-<name>-<suffix> and 15-char link names


class Fleet:
    """Handle on one started fleet: `fleet.sock/.tls/.ssh/.gpu`, sshd control, teardown."""

    def __init__(self, suffix: str, base: str) -> None:
        self.suffix = suffix
        self.base = base
        self.daemons: dict[str, Daemon] = {}
        self.netns: dict[str, netns.NetNS] = {}
        self.sshd: Sshd | None = None
        self.timings: dict[str, float] = {}
        self._torn_down = False
        self._lock = threading.Lock()  # self.daemons/self.netns and the subnet choice
        self._fault_lock = threading.Lock()

    @property
    def sock(self) -> Daemon:
        return self.daemons["sock"]

    @property
    def tls(self) -> Daemon:
        return self.daemons["tls"]

    @property
    def ssh(self) -> Daemon:
        return self.daemons["ssh"]

    @property
    def gpu(self) -> Daemon:
        return self.daemons["gpu"]

    @property
    def fault(self) -> Daemon:
        """The fault suite's daemon (TLS + fake GPUs, own netns); started on first use (~1-2 s)."""
        with self._fault_lock:
            if FAULT not in self.daemons:
                self.add_daemon(FAULT, tls=True, gpu=True, gpu_ids=FAULT_GPU_IDS)
            return self.daemons[FAULT]

    def __iter__(self) -> Iterator[Daemon]:
        """The four shared daemons (not the extra ones)."""
        return iter([self.daemons[n] for n in NAMES if n in self.daemons])

    def add_daemon(
        self,
        name: str,
        *,
        tls: bool = True,
        gpu: bool = False,
        gpu_ids: list[str] | None = None,
    ) -> Daemon:
        """Start one more dockerd in a new netns of this fleet, with busybox; returns it.

        `name`: 1-6 lowercase letters. `tls`: reachable at tcp://<ns ip>:2376 with mutual TLS
        (else only its unix socket); `gpu`: the fake nvidia hook, advertising `gpu_ids`.
        """
        if not _EXTRA_NAME.fullmatch(name):
            raise ValueError(f"daemon name must be 1-6 lowercase letters: {name!r}")
        with self._lock:
            if name in self.daemons or name in self.netns:
                raise ValueError(f"daemon {name!r} already exists")
            if self._torn_down:
                raise RuntimeError("fleet is torn down")
            self.netns[name] = netns.create(name, self.suffix, netns.free_octets(1)[0])
        t0 = time.monotonic()
        try:
            self._bring_up(name, tls=tls, gpu=gpu, gpu_ids=gpu_ids)
        except BaseException:
            errors = self.remove_daemon(name)
            if errors:
                print(f"[fleet] cleanup of failed {name}: {errors}", file=sys.stderr)
            raise
        self.timings[f"add_{name}"] = time.monotonic() - t0
        return self.daemons[name]

    def remove_daemon(self, name: str) -> list[str]:
        """Stop an added daemon and remove its netns, veth, cgroup, mounts and dir; -> problems."""
        if name in NAMES:
            raise ValueError(f"{name!r} is one of the shared daemons")
        with self._lock:
            daemon = self.daemons.pop(name, None)
            self.netns.pop(name, None)
        errors: list[str] = []
        if daemon is not None:
            try:
                self._stop_daemon(daemon)
            except Exception as exc:
                errors.append(repr(exc))
        errors += destroy(self.suffix, self.base, name)
        if daemon is not None:
            daemon.stop(timeout=1)  # reap anything destroy() had to kill
        return errors

    def kill_sshd(self, sessions: bool = True) -> None:
        """SIGKILL the ssh host's sshd (with `sessions`: its sessions too, tunnels drop)."""
        assert self.sshd is not None
        self.sshd.kill(sessions)

    @contextmanager
    def sshd_down(self, sig: int = signal.SIGKILL) -> Iterator[None]:
        """sshd gone inside the block (SIGKILL, or SIGTERM = clean stop); always back on exit."""
        assert self.sshd is not None
        if sig == signal.SIGKILL:
            self.sshd.kill()
        else:
            self.sshd.stop()
        try:
            yield
        finally:
            self.sshd.start()

    def stop_sshd(self) -> None:
        """Stop the ssh host's sshd and all its sessions (open tunnels drop)."""
        assert self.sshd is not None
        self.sshd.stop()

    def start_sshd(self) -> None:
        assert self.sshd is not None
        self.sshd.start()

    def restart_sshd(self) -> None:
        """Kill sshd (listener + sessions), start it again with the same keys, wait for port 22."""
        assert self.sshd is not None
        self.sshd.restart()

    def _bring_up(
        self,
        name: str,
        *,
        tls: bool = False,
        ssh: bool = False,
        gpu: bool = False,
        gpu_ids: list[str] | None = None,
    ) -> None:
        ns = self.netns[name]
        d = os.path.join(self.base, name)
        os.makedirs(d, exist_ok=True)
        sshd = Sshd(f"{d}/sshd", ns, f"{d}/docker.sock") if ssh else None
        daemon = make_daemon(
            name,
            self.suffix,
            self.base,
            ns,
            tls=make_certs(f"{d}/certs", [ns.ns_ip, "127.0.0.1"]) if tls else None,
            ssh=sshd.prepare() if sshd else None,
            gpu=gpu,
            gpu_ids=gpu_ids,
        )
        if sshd is not None:
            self.sshd = sshd
        with self._lock:
            self.daemons[name] = daemon
        daemon.start()
        dockerapi.build_busybox(daemon.socket_path)
        if sshd is not None:
            sshd.start()

    def _stop_daemon(self, daemon: Daemon) -> None:
        try:
            if dockerapi.ping(daemon.socket_path):
                dockerapi.remove_all_containers(daemon.socket_path)
        finally:
            daemon.stop()

    def teardown(self) -> None:
        """Idempotent: stop everything and remove netns, mounts, cgroups, veths and the base dir."""
        if self._torn_down:
            return
        self._torn_down = True
        t0 = time.monotonic()
        errors: list[str] = []
        with ThreadPoolExecutor(len(self.daemons) + 1) as pool:
            futures = [pool.submit(self._stop_daemon, d) for d in self.daemons.values()]
            if self.sshd is not None:
                futures.append(pool.submit(self.sshd.stop))
            errors += [repr(f.exception()) for f in futures if f.exception() is not None]
        errors += destroy(self.suffix, self.base)
        for daemon in self.daemons.values():  # reap anything destroy() had to kill
            daemon.stop(timeout=1)
        if self.sshd is not None:
            self.sshd.stop(timeout=1)
        atexit.unregister(self.teardown)
        self.timings["teardown"] = time.monotonic() - t0
        print(f"[fleet] teardown took {self.timings['teardown']:.2f}s", file=sys.stderr)
        if errors:
            raise RuntimeError("fleet teardown left problems: " + "; ".join(errors))


def _new_suffix() -> str:
    while True:
        suffix = secrets.token_hex(2)
        if not suffix_in_use(suffix) and not os.path.exists(f"/run/netns/dfl-sock-{suffix}"):
            return suffix


def start_fleet(base_dir: str | None = None) -> Fleet:
    """Start the four daemons under a new dir in `base_dir` (default /tmp; keep it short)."""
    cleanup_leftovers()
    t0 = time.monotonic()
    suffix = _new_suffix()
    register(suffix, None)
    base = tempfile.mkdtemp(dir=base_dir or "/tmp", prefix=f"dfl-{suffix}-")
    register(suffix, base)
    fleet = Fleet(suffix, base)
    atexit.register(fleet.teardown)
    try:
        for name, octet in zip(NAMES, netns.free_octets(len(NAMES)), strict=True):
            fleet.netns[name] = netns.create(name, suffix, octet)
        with ThreadPoolExecutor(len(NAMES)) as pool:
            futures = {name: pool.submit(fleet._bring_up, name, **_KINDS[name]) for name in NAMES}
        failed = {name: f.exception() for name, f in futures.items() if f.exception() is not None}
        if failed:
            raise RuntimeError(f"fleet start failed: {failed!r}")
    except BaseException:
        try:
            fleet.teardown()
        except Exception as exc:  # keep the start error as the one that surfaces
            print(f"[fleet] teardown after failed start: {exc}", file=sys.stderr)
        raise
    fleet.timings["start"] = time.monotonic() - t0
    print(
        f"[fleet] {len(NAMES)} daemons up in {fleet.timings['start']:.2f}s ({base})",
        file=sys.stderr,
    )
    return fleet


@contextmanager
def extra_daemon(
    fleet: Fleet,
    name: str = "extra",
    *,
    tls: bool = True,
    gpu: bool = False,
    gpu_ids: list[str] | None = None,
) -> Iterator[Daemon]:
    """A fresh daemon of its own (see `Fleet.add_daemon`) for one block; removed on exit."""
    daemon = fleet.add_daemon(name, tls=tls, gpu=gpu, gpu_ids=gpu_ids)
    try:
        yield daemon
    finally:
        errors = fleet.remove_daemon(name)
        if errors:
            raise RuntimeError(f"removing daemon {name} left problems: {errors}")
