"""The Fleet: four dockerds (sock, tls, ssh, gpu), each in its own netns, started in parallel.

`start_fleet()` first cleans leftovers of crashed runs; `Fleet.teardown()` removes all it made.
"""

from __future__ import annotations

import atexit
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from . import dockerapi, netns
from .certs import make_certs
from .cleanup import cleanup_leftovers, destroy, register, suffix_in_use
from .daemons import Daemon, make_daemon
from .sshd import Sshd

NAMES = ("sock", "tls", "ssh", "gpu")


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

    def __iter__(self) -> Iterator[Daemon]:
        return iter([self.daemons[n] for n in NAMES if n in self.daemons])

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

    def _bring_up(self, name: str) -> None:
        ns = self.netns[name]
        d = os.path.join(self.base, name)
        os.makedirs(d, exist_ok=True)
        if name == "tls":
            daemon = make_daemon(
                name,
                self.suffix,
                self.base,
                ns,
                tls=make_certs(f"{d}/certs", [ns.ns_ip, "127.0.0.1"]),
            )
        elif name == "ssh":
            sshd = self.sshd = Sshd(f"{d}/sshd", ns, f"{d}/docker.sock")
            daemon = make_daemon(name, self.suffix, self.base, ns, ssh=sshd.prepare())
        else:
            daemon = make_daemon(name, self.suffix, self.base, ns, gpu=name == "gpu")
        self.daemons[name] = daemon
        daemon.start()
        dockerapi.build_busybox(daemon.socket_path)
        if name == "ssh":
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
        with ThreadPoolExecutor(len(NAMES)) as pool:
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
            futures = {name: pool.submit(fleet._bring_up, name) for name in NAMES}
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
