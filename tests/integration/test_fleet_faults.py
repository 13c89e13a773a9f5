"""The fault fixtures themselves (not the app): each fault really happens, and really ends.

Uses `fleet.fault` (TLS + fake GPUs, its own netns), so nothing here disturbs the shared daemons
except the sshd test, which brings sshd back before it ends.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import sqlite3
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
import asyncssh
import pytest

from tests.fleet import Daemon, Fleet
from tests.fleet.aio import docker_for, ping, run_container, tls_context, tls_docker
from tests.fleet.cleanup import mounts_under, sweep_tmpfs_leftovers
from tests.fleet.daemons import TLS_PORT
from tests.fleet.dbfaults import full_tmpfs, hold_sqlite_write_lock
from tests.fleet.fleet import extra_daemon
from tests.fleet.netns import GUARD_METRIC, subnet
from tests.fleet.observe import (
    EventLog,
    EventsLost,
    Sampler,
    container_events,
    creates_per_attempt,
    gpu_overlaps,
    intervals_from_events,
    peak_from_events,
)
from tests.fleet.procs import alive, run

IMAGE = "busybox:1.36"


@pytest.fixture
def fault(fleet: Fleet) -> Iterator[Daemon]:
    """The fault daemon, with every fault undone after the test (even a failed one)."""
    daemon = fleet.fault
    yield daemon
    daemon.undo_faults()


def _connect(ip: str, port: int, timeout: float) -> tuple[str, float]:
    """TCP connect; -> ("ok" | the errno name | "timeout", seconds it took)."""
    t0 = time.monotonic()
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            result = "ok"
    except TimeoutError:
        result = "timeout"
    except OSError as exc:
        result = os.strerror(exc.errno) if exc.errno else repr(exc)
    return result, time.monotonic() - t0


def _tls_handshake(daemon: Daemon, timeout: float) -> str:
    """Complete a TLS handshake with the daemon's TCP endpoint: "ok" | "timeout" | error."""
    try:
        with socket.create_connection((daemon.ns_ip, TLS_PORT), timeout=timeout) as raw:
            raw.settimeout(timeout)
            with tls_context(daemon).wrap_socket(raw, server_hostname=daemon.ns_ip):
                return "ok"
    except TimeoutError:
        return "timeout"
    except (OSError, ssl.SSLError) as exc:
        return repr(exc)


async def _pings_within(docker: aiodocker.Docker, seconds: float) -> bool:
    try:
        async with asyncio.timeout(seconds):
            return await ping(docker) == "OK"
    except (TimeoutError, OSError, aiohttp.ClientError, aiodocker.DockerError):
        return False


def _tag() -> str:
    return f"dfl.obs={secrets.token_hex(4)}"


async def _start(
    docker: aiodocker.Docker,
    cmd: list[str],
    tag: str,
    *,
    gpus: list[str] | None = None,
    **extra: Any,
) -> str:
    key, value = tag.split("=")
    labels = {key: value, **extra.pop("labels", {})}
    host: dict[str, Any] = {"NetworkMode": "none"}
    if gpus:
        host["DeviceRequests"] = [
            {"Driver": "nvidia", "DeviceIDs": gpus, "Capabilities": [["gpu"]]}
        ]
    config = {"Image": IMAGE, "Cmd": cmd, "Labels": labels, "HostConfig": host, **extra}
    box = await docker.containers.create(config)
    await box.start()
    return str(box.id)


@asynccontextmanager
async def _cleanup(daemon: Daemon, tag: str) -> AsyncIterator[None]:
    """Remove the test's containers afterwards (undoing any fault first)."""
    try:
        yield
    finally:
        await asyncio.to_thread(daemon.undo_faults)
        async with asyncio.timeout(30), docker_for(daemon) as docker:
            for box in await docker.containers.list(all=True, filters={"label": [tag]}):
                await box.delete(force=True)


# --- the fault daemon ------------------------------------------------------------------------


async def test_fault_daemon_is_tls_gpu_in_its_own_netns(fleet: Fleet) -> None:
    t0 = time.monotonic()
    daemon = fleet.fault
    print(f"fault daemon ready after {time.monotonic() - t0:.2f}s ({fleet.timings})")
    assert daemon.base_url == f"tcp://{daemon.ns_ip}:{TLS_PORT}"
    assert daemon.netns not in {d.netns for d in fleet}
    assert daemon.gpu_ids == ["0", "1", "2", "3"]
    assert "default" not in run("ip", "-n", daemon.netns, "route", "show")
    async with tls_docker(daemon) as docker:
        assert await ping(docker) == "OK"


async def test_fault_daemon_gpu_hook_takes_any_device_ids(fault: Daemon) -> None:
    cases = {
        ("GPU-abc", "GPU-def"): "GPU-abc,GPU-def",
        tuple(str(i) for i in range(16)): ",".join(str(i) for i in range(16)),
    }
    async with docker_for(fault) as docker:
        for ids, seen in cases.items():
            request = {"Driver": "nvidia", "DeviceIDs": list(ids), "Capabilities": [["gpu"]]}
            code, out = await run_container(
                docker, ["env"], host_config={"DeviceRequests": [request]}
            )
            assert code == 0
            assert f"NVIDIA_VISIBLE_DEVICES={seen}" in out.splitlines(), out


def test_dockerd_pid_is_dockerd_not_nsenter(fault: Daemon) -> None:
    pid = fault.dockerd_pid
    with open(f"/proc/{pid}/cmdline", "rb") as fh:
        assert fh.read().split(b"\0")[0] == b"dockerd"
    ctd = fault.containerd_pid
    assert ctd is not None
    with open(f"/proc/{ctd}/stat") as fh:
        assert int(fh.read().rsplit(")", 1)[1].split()[1]) == pid  # containerd's parent


# --- SIGSTOP -----------------------------------------------------------------------------------


async def test_frozen_dockerd_accepts_but_never_answers(fault: Daemon) -> None:
    tag = _tag()
    async with _cleanup(fault, tag), docker_for(fault) as docker:
        cid = await _start(docker, ["sleep", "300"], tag)
        pid = (await docker.containers.container(cid).show())["State"]["Pid"]
        with fault.frozen():
            assert fault.is_frozen
            async with docker_for(fault) as stuck:
                assert not await _pings_within(stuck, 1.0)
            with socket.socket(socket.AF_UNIX) as raw:  # the kernel still accepts
                raw.settimeout(1)
                raw.connect(fault.socket_path)
            assert _connect(fault.ns_ip, TLS_PORT, 1)[0] == "ok"
            assert await asyncio.to_thread(_tls_handshake, fault, 1.0) == "timeout"
            assert fault.containerd_pid is not None and alive(pid)  # the rest runs on
        t0 = time.monotonic()
        assert not fault.is_frozen
        assert await _pings_within(docker, 1.0)
        print(f"answering again {time.monotonic() - t0:.3f}s after thaw() returned")
        assert await asyncio.to_thread(_tls_handshake, fault, 2.0) == "ok"


async def test_frozen_context_thaws_after_an_error(fault: Daemon) -> None:
    with pytest.raises(ZeroDivisionError), fault.frozen():
        _ = 1 / 0
    async with docker_for(fault) as docker:
        assert await _pings_within(docker, 2.0)


# --- SIGKILL / SIGTERM -----------------------------------------------------------------------


async def test_sigkill_then_start_kills_survivors_and_eventlog_follows(fault: Daemon) -> None:
    tag = _tag()
    async with _cleanup(fault, tag), EventLog([fault], tag) as log:
        async with docker_for(fault) as docker:
            # StopTimeout 1: dockerd's restore waits that long (default 10 s) before SIGKILL
            long = await _start(docker, ["sleep", "300"], tag, StopTimeout=1)
            short = await _start(docker, ["sleep", "1"], tag)
            ids = (long, short)
            long_pid = (await docker.containers.container(long).show())["State"]["Pid"]
        killed_at = time.time()
        await asyncio.to_thread(fault.kill)
        assert fault.pid is None and fault.containerd_pid is None
        async with docker_for(fault) as docker:
            assert not await _pings_within(docker, 1.0)
        assert _connect(fault.ns_ip, TLS_PORT, 1)[0] == "Connection refused"
        assert alive(long_pid), "the container outlives dockerd"
        await asyncio.sleep(1.5)  # the short one exits while dockerd is dead
        t0 = time.monotonic()
        await asyncio.to_thread(fault.start)
        print(f"start() after SIGKILL took {time.monotonic() - t0:.2f}s")
        assert not alive(long_pid), "dockerd's restore killed the survivor"
        async with docker_for(fault) as docker:
            states = {c: (await docker.containers.container(c).show())["State"] for c in ids}
        deadline = time.monotonic() + 10
        while log.connects(fault) < 2:  # the stream dropped with dockerd and comes back
            assert time.monotonic() < deadline, log._follow(fault).errors
            await asyncio.sleep(0.05)
    print({c[:12]: (s["Status"], s["ExitCode"]) for c, s in states.items()})
    assert (states[long]["Status"], states[long]["ExitCode"]) == ("exited", 137)
    assert (states[short]["Status"], states[short]["ExitCode"]) == ("exited", 0)
    spans = {i.id: i for i in log.intervals(fault)}
    print({c[:12]: (i.start, i.end, i.exit_code) for c, i in spans.items()})
    assert spans[long].end is not None and spans[long].end > killed_at
    assert spans[long].exit_code == 137
    # the short one exited while dockerd was dead: no die event, EventLog dates it itself
    (die,) = [e for e in log.events(fault) if e["id"] == short and e["Action"] == "die"]
    assert die.get("dfl.synthetic") is True
    assert spans[short].exit_code == 0 and spans[short].end is not None
    assert killed_at < spans[short].end < killed_at + 1.5
    with pytest.raises(EventsLost):  # the replay buffer died with dockerd
        await container_events(fault, killed_at - 5, None, tag)


async def test_sigterm_is_a_clean_stop(fault: Daemon) -> None:
    tag = _tag()
    async with _cleanup(fault, tag):
        async with docker_for(fault) as docker:
            # dockerd's shutdown waits each container's StopTimeout (default 10 s, whatever
            # --shutdown-timeout says) before it SIGKILLs a PID 1 that ignores SIGTERM
            cid = await _start(docker, ["sleep", "300"], tag, StopTimeout=1)
        t0 = time.monotonic()
        await asyncio.to_thread(fault.kill, signal.SIGTERM)
        print(f"SIGTERM: dockerd gone after {time.monotonic() - t0:.2f}s")
        await asyncio.to_thread(fault.start)
        async with docker_for(fault) as docker:
            state = (await docker.containers.container(cid).show())["State"]
        assert (state["Status"], state["ExitCode"]) == ("exited", 137)


async def test_killed_context_restarts(fault: Daemon) -> None:
    def dead_inside() -> bool:
        with fault.killed():
            return fault.pid is None

    assert await asyncio.to_thread(dead_inside)
    async with docker_for(fault) as docker:
        assert await ping(docker) == "OK"


# --- link down / partition -------------------------------------------------------------------


def _guard_routes() -> list[str]:
    out = run("ip", "-4", "route", "show", "type", "unreachable")
    return [line for line in out.splitlines() if f"metric {GUARD_METRIC}" in line]


async def test_link_down_fails_connects_fast_and_nothing_leaves(fault: Daemon) -> None:
    assert _connect(fault.ns_ip, TLS_PORT + 1, 1)[0] == "Connection refused"  # baseline
    with fault.link_cut():
        assert fault.is_link_down
        result, took = _connect(fault.ns_ip, TLS_PORT, 3)
        print(f"link down: connect -> {result} in {took * 1000:.1f} ms")
        assert result == "No route to host" and took < 1
        route = run("ip", "route", "get", fault.ns_ip, check=False)
        assert "via" not in route, route  # never the host's default route
        assert subnet(fault.ns_ip) in " ".join(_guard_routes())
        async with docker_for(fault) as docker:  # the daemon itself is fine
            assert await ping(docker) == "OK"
    assert not fault.is_link_down and not _guard_routes()
    async with tls_docker(fault) as docker:
        assert await _pings_within(docker, 5)


async def test_partition_is_silent_and_heals(fault: Daemon) -> None:
    async with tls_docker(fault) as before:
        assert await ping(before) == "OK"  # a pooled keep-alive connection exists
        with fault.partitioned():
            assert fault.is_partitioned
            for port in (TLS_PORT, TLS_PORT + 1):  # open and closed port look alike
                result, took = _connect(fault.ns_ip, port, 1.0)
                print(f"partition: connect :{port} -> {result} after {took:.2f}s")
                assert result == "timeout"
            assert not await _pings_within(before, 1.0)  # established: silent too
            async with docker_for(fault) as docker:  # the unix socket is not affected
                assert await ping(docker) == "OK"
            out = run("nsenter", f"--net={fault.ns_path}", "iptables", "-S")
            assert "-A INPUT ! -i lo -j DROP" in out and "-A OUTPUT ! -o lo -j DROP" in out
        assert not fault.is_partitioned
    assert _connect(fault.ns_ip, TLS_PORT + 1, 1)[0] == "Connection refused"
    async with tls_docker(fault) as docker:
        assert await _pings_within(docker, 5)


def test_extra_daemon_removal_leaves_nothing(fleet: Fleet) -> None:
    t0 = time.monotonic()
    with extra_daemon(fleet, "spare", gpu=True) as spare:
        print(f"extra daemon up in {time.monotonic() - t0:.2f}s")
        assert _tls_handshake(spare, 2.0) == "ok"
        spare.partition()
        spare.link_down()
        assert _guard_routes()
        names = (spare.netns, spare.host_if, spare.dir)
    netns_name, host_if, directory = names
    assert not os.path.exists(f"/run/netns/{netns_name}")
    assert host_if not in run("ip", "-o", "link", "show")
    assert not os.path.exists(directory) and not _guard_routes()
    assert "spare" not in fleet.daemons


# --- sshd ------------------------------------------------------------------------------------


async def test_sshd_killed_and_back(fleet: Fleet) -> None:
    access = fleet.ssh.ssh
    assert access is not None and fleet.sshd is not None

    async def login() -> None:
        async with (
            asyncio.timeout(5),
            asyncssh.connect(
                access.host,
                port=access.port,
                username=access.user,
                client_keys=[access.key_path],
                known_hosts=access.known_hosts,
            ),
        ):
            pass

    with fleet.sshd_down():
        assert not fleet.sshd.running
        assert _connect(access.host, access.port, 1)[0] == "Connection refused"
        with pytest.raises(OSError):
            await login()
    assert fleet.sshd.running
    await login()


# --- observers -------------------------------------------------------------------------------


async def test_sampler_and_events_see_peak_and_gpu_overlap(fault: Daemon) -> None:
    tag = _tag()
    since = time.time()
    triple = {"dockfleet.run_id": "7", "dockfleet.task_id": "1", "dockfleet.attempt": "1"}
    async with (
        _cleanup(fault, tag),
        EventLog([fault], tag) as log,
        Sampler([fault], tag) as sampler,
        docker_for(fault) as docker,
    ):
        a = _start(docker, ["sleep", "2"], tag, gpus=["0"], labels=triple)
        b = _start(docker, ["sleep", "2"], tag, gpus=["1", "2"])
        c = _start(docker, ["sleep", "2"], tag, gpus=["1"])
        ids = await asyncio.gather(a, b, c)
        # a second container for the same attempt triple, created but never started
        labels = {**triple, "dfl.obs": tag.split("=")[1]}
        await docker.containers.create({"Image": IMAGE, "Labels": labels})
        for cid in ids:
            await docker.containers.container(cid).wait()
    until = time.time()
    got = sampler[fault]
    print(f"sampler: {got.polls} polls, {got.failures} failures, peak {got.peak}")
    assert got.peak == 3 and got.failures == 0 and not got.uninspected
    assert got.devices() == {ids[0]: ("0",), ids[1]: ("1", "2"), ids[2]: ("1",)}
    assert got.overlaps and {o.device for o in got.overlaps} == {"1"}
    assert {frozenset(o.containers) for o in got.overlaps} == {frozenset(ids[1:])}
    assert log.peak(fault) == 3
    assert await peak_from_events(fault, since, until, tag) == 3
    spans = await intervals_from_events(fault, since, until, tag)
    assert sorted(i.id for i in spans) == sorted(ids)
    assert all(i.start and i.end and i.exit_code == 0 for i in spans)
    exact = gpu_overlaps(log.intervals(fault), got.devices())
    assert [(o.device, frozenset(o.containers)) for o in exact] == [("1", frozenset(ids[1:]))]
    per_attempt = await creates_per_attempt(fault, since, tag)
    assert per_attempt[("7", "1", "1")] == 2
    assert log.creates_per_attempt(fault) == per_attempt


async def test_peak_counts_sequential_containers_once(fault: Daemon) -> None:
    tag = _tag()
    since = time.time()
    async with _cleanup(fault, tag), docker_for(fault) as docker:
        for _ in range(3):
            cid = await _start(docker, ["true"], tag)
            await docker.containers.container(cid).wait()
    assert await peak_from_events(fault, since, time.time(), tag) == 1


async def test_sampler_is_bounded_on_a_frozen_daemon(fault: Daemon) -> None:
    with fault.frozen():
        t0 = time.monotonic()
        async with Sampler([fault], "dfl.obs", call_timeout=0.3) as sampler:
            await asyncio.sleep(0.7)
        took = time.monotonic() - t0
        async with asyncio.timeout(3), EventLog([fault], "dfl.obs", call_timeout=0.3):
            pass
    assert sampler[fault].failures >= 1 and sampler[fault].polls == 0
    assert took < 2.5, took


async def test_replay_refuses_when_the_event_buffer_overflowed(fault: Daemon) -> None:
    since = time.time()
    async with docker_for(fault) as docker:
        for n in range(130):  # 260 volume events (create + destroy), cheap
            volume = await docker.volumes.create({"Name": f"dfl-ev-{n}"})
            await volume.delete()
    with pytest.raises(EventsLost):
        await container_events(fault, since)


# --- database faults -------------------------------------------------------------------------


def _sqlite(path: str, wal: bool = False) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=0.3, isolation_level=None)
    if wal:
        conn.execute("PRAGMA journal_mode=WAL")
    return conn


@pytest.mark.parametrize("wal", [False, True], ids=["journal", "wal"])
def test_held_write_lock_blocks_writers_not_readers(tmp_path: Path, wal: bool) -> None:
    db = str(tmp_path / "db.sqlite")
    with _sqlite(db, wal) as conn:
        conn.execute("CREATE TABLE t (x)")
        conn.execute("INSERT INTO t VALUES (1)")
    conn = _sqlite(db)
    try:
        with hold_sqlite_write_lock(db, seconds=30) as lock:
            assert lock.held
            with pytest.raises(sqlite3.OperationalError, match="database is locked"):
                conn.execute("INSERT INTO t VALUES (2)")
            assert conn.execute("SELECT count(*) FROM t").fetchone() == (1,)
        assert not lock.held
        conn.execute("INSERT INTO t VALUES (3)")
        with hold_sqlite_write_lock(db, seconds=0.3) as lock:  # `seconds` bounds the hold
            lock.released.wait(5)
            conn.execute("INSERT INTO t VALUES (4)")
    finally:
        conn.close()


@pytest.mark.parametrize("wal", [False, True], ids=["journal", "wal"])
def test_full_tmpfs_fails_sqlite_writes_until_freed(wal: bool) -> None:
    if os.geteuid() != 0:
        pytest.skip("full_tmpfs mounts a tmpfs: needs root")
    with full_tmpfs(size_mb=2) as fs:
        assert fs.path in mounts_under(fs.path)
        db = os.path.join(fs.path, "db.sqlite")
        conn = _sqlite(db, wal)
        try:
            conn.execute("CREATE TABLE t (x)")
            conn.execute("INSERT INTO t VALUES (1)")
            written = fs.fill()
            assert fs.free_bytes == 0 and written > 1_000_000
            with pytest.raises(sqlite3.OperationalError, match="database or disk is full"):
                conn.execute("INSERT INTO t VALUES (?)", ("x" * 100_000,))
            assert conn.execute("SELECT count(*) FROM t").fetchone() == (1,)
            fs.free()
            conn.execute("INSERT INTO t VALUES (?)", ("x" * 100_000,))
        finally:
            conn.close()
        path = fs.path
    assert not os.path.exists(path) and not mounts_under(path)


def test_tmpfs_of_a_dead_owner_is_swept() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    dead = subprocess.Popen(["true"])
    dead.wait()
    path = f"/tmp/dflfs-{dead.pid}-1-test"
    os.makedirs(path)
    run("mount", "-t", "tmpfs", "-o", "size=1m", "dflfs", path)
    assert path in sweep_tmpfs_leftovers()
    assert not os.path.exists(path) and not mounts_under(path)
