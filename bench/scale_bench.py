"""Scale benchmark: a real dockfleet server driving fleets of hollow Docker hosts.

One hollow engine (bench/hollow, a subprocess: one unix socket per simulated host, daemons that
answer in 2 ms, containers that run 200 ms) serves every fleet. For each fleet a fresh dockfleet
server (uvicorn subprocess, its own SQLite file) gets the hosts registered and live-checked
through its REST API, one task and one directive, and then the runs, launched by N concurrent
HTTP clients (each sends a launch again after a `503` with `Retry-After`, which the server
answers when its database was too busy to take the write: nothing was written; the retries are
counted and inside the launch's latency). Measured: launches/s and launch latency, runs
finished/s (first launch until every run is final), the server's CPU and peak RSS, and from the
hollow engine's counters the peak of running containers per host (over-commits) and duplicate
starts. Then the direct baseline: the
same number of containers through the same engine, driven with aiodocker (4 loops per host,
image inspect / create / start / wait / logs / delete), with no server running.

Extra measures: the server's CPU over an idle window with the largest fleet registered and no
runs (the health monitor checking every host each DOCKFLEET_HEALTH_INTERVAL_SECONDS), and one
placement pass of 5,000 pending runs over 1,000 simulated hosts (bench.placement_bench, in a
subprocess: it is not reachable through the REST API).

Everything is bounded: each fleet gives up after --cap seconds and reports how far it got.
Only loopback HTTP and unix sockets are used. Every process started here is stopped at the end.

Run: `make bench-scale` (or `.venv/bin/python -m bench.scale_bench [--fleets 10,100,1000]
[--quick]`). Results: bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiodocker
import httpx

ROOT = Path(__file__).resolve().parents[1]
IMAGE = "busybox:1.36"
CLK_TCK = os.sysconf("SC_CLK_TCK")
T = TypeVar("T")
X = "\u00d7"  # the multiplication sign, as the issue writes "10 hosts x 4"


@dataclass(frozen=True)
class Fleet:
    hosts: int
    slots: int
    runs: int
    clients: int

    @property
    def label(self) -> str:
        return f"{self.hosts:,} hosts {X} {self.slots}, {self.runs:,} runs, {self.clients} clients"


FLEETS = {
    10: Fleet(10, 4, 400, 16),
    100: Fleet(100, 4, 2000, 32),
    1000: Fleet(1000, 4, 5000, 64),
}
QUICK = [Fleet(5, 4, 40, 8), Fleet(20, 4, 120, 16)]
RETRIES = 10  # how many times one launch is sent again after a 503 with Retry-After
CHECK_CALLS = ("GET /version", "GET /info", "GET /_ping", "HEAD /_ping")  # a live check's calls


# -- processes ---------------------------------------------------------------------------------


class Proc:
    """A subprocess with its output in a log file; stop() is idempotent and always safe."""

    def __init__(self, name: str, argv: list[str], log: Path, env: dict[str, str]) -> None:
        self.name = name
        self.log = log
        self.url = ""  # a server's base URL, once known
        with log.open("wb") as out:
            self.popen = subprocess.Popen(
                argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> None:
        if self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=5)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def cpu_seconds(self) -> float:
        """utime + stime of the process so far."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def memory_kib(self) -> dict[str, int]:
        """VmRSS and VmHWM (peak RSS) from /proc/<pid>/status."""
        out = {}
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(value.split()[0])
        except OSError:
            pass
        return out


class Procs:
    """Every process this run started, stopped in reverse order (also on failure)."""

    def __init__(self) -> None:
        self.items: list[Proc] = []

    def start(self, name: str, argv: list[str], log: Path, env: dict[str, str]) -> Proc:
        proc = Proc(name, argv, log, env)
        self.items.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.items):
            with contextlib.suppress(Exception):
                proc.stop()


def clean_env() -> dict[str, str]:
    """The caller's environment without DOCKFLEET_* / DOCKER_* (they must not steer this)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("DOCKFLEET_", "DOCKER_"))}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def bench_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (every process), from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return float("nan")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


# -- the hollow engine -------------------------------------------------------------------------


class HollowControl:
    """The hollow engine's control API (/_hollow/...), reached through one of its sockets."""

    def __init__(self, proc: Proc, paths: list[str]) -> None:
        self.proc = proc
        self.paths = paths
        self.client = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=paths[0]), base_url="http://hollow", timeout=60
        )

    async def stats(self, per_host: bool = True) -> dict[str, Any]:
        r = await self.client.get("/_hollow/stats", params={"hosts": int(per_host)})
        r.raise_for_status()
        data: dict[str, Any] = r.json()
        return data

    async def reset(self) -> None:
        (await self.client.post("/_hollow/reset", params={"containers": 1})).raise_for_status()

    async def close(self) -> None:
        await self.client.aclose()


async def start_hollow(
    procs: Procs, work: Path, hosts: int, latency_ms: float, run_ms: float
) -> HollowControl:
    directory = work / "hollow"
    argv = [sys.executable, "-m", "bench.hollow", "--dir", str(directory)]
    argv += ["--hosts", str(hosts), "--latency-ms", str(latency_ms), "--run-ms", str(run_ms)]
    argv += ["--images", f"{IMAGE},busybox:latest"]
    proc = procs.start("hollow", argv, work / "hollow.log", clean_env())
    width = max(4, len(str(hosts - 1)))
    paths = [str(directory / f"h{i:0{width}d}.sock") for i in range(hosts)]
    control = HollowControl(proc, paths)
    deadline = time.monotonic() + 120
    last = httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=paths[-1]), timeout=2)
    try:
        while True:
            if not proc.alive():
                raise RuntimeError(f"hollow engine exited:\n{proc.tail()}")
            try:
                if (await last.get("http://hollow/_hollow/host")).status_code == 200:
                    return control
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"hollow engine not ready in 120 s:\n{proc.tail()}")
            await asyncio.sleep(0.2)
    finally:
        await last.aclose()


# -- the dockfleet server ----------------------------------------------------------------------


def server_env(db: Path, health_interval: int) -> dict[str, str]:
    env = clean_env()
    env.update(
        {
            "DOCKFLEET_DATABASE_URL": f"sqlite+aiosqlite:///{db}",
            "DOCKFLEET_HEALTH_INTERVAL_SECONDS": str(health_interval),
            "DOCKFLEET_RECONCILE_INTERVAL_SECONDS": "0",
            "DOCKFLEET_LOG_LEVEL": "warning",
        }
    )
    return env


async def start_server(procs: Procs, work: Path, name: str, health_interval: int) -> Proc:
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "app.main:app_factory", "--factory"]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    db = work / f"{name}.db"
    proc = procs.start(name, argv, work / f"{name}.log", server_env(db, health_interval))
    proc.url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient(timeout=2) as client:
        while True:
            if not proc.alive():
                raise RuntimeError(f"server exited with {proc.popen.returncode}:\n{proc.tail()}")
            with contextlib.suppress(httpx.TransportError):
                if (await client.get(f"{proc.url}/healthz")).status_code == 200:
                    return proc
            if time.monotonic() > deadline:
                raise TimeoutError(f"server not ready in 60 s:\n{proc.tail()}")
            await asyncio.sleep(0.1)


async def bounded_gather(
    items: list[T], fn: Callable[[T], Awaitable[Any]], concurrency: int, seconds: float
) -> list[Any]:
    """fn over items, `concurrency` at a time, all within `seconds` (TimeoutError after)."""
    sem = asyncio.Semaphore(concurrency)

    async def one(item: T) -> Any:
        async with sem:
            return await fn(item)

    async with asyncio.timeout(seconds):
        return await asyncio.gather(*(one(i) for i in items))


async def expect(response: Awaitable[httpx.Response], status: int) -> dict[str, Any]:
    r = await response
    if r.status_code != status:
        raise RuntimeError(f"{r.request.method} {r.request.url} -> {r.status_code}: {r.text}")
    data: dict[str, Any] = r.json()
    return data


async def register_fleet(
    client: httpx.AsyncClient, paths: list[str], slots: int
) -> tuple[list[int], dict[str, Any]]:
    """Register the hosts and live-check each; (host ids, timings)."""
    t0 = time.perf_counter()

    async def register(i: int) -> int:
        body = {
            "name": Path(paths[i]).stem,
            "type": "docker_socket",
            "base_url": f"unix://{paths[i]}",
            "capabilities": {"max_concurrency": slots},
        }
        host = await expect(client.post("/api/worker-hosts/", json=body), 201)
        return int(host["id"])

    ids = await bounded_gather(list(range(len(paths))), register, 16, 600)
    t1 = time.perf_counter()
    troubles: Counter[str] = Counter()

    async def check(host_id: int) -> bool:
        # Setup, not measurement: a check the server fails (500, dropped connection) is retried.
        for attempt in range(5):
            try:
                r = await client.get(
                    f"/api/worker-hosts/{host_id}/health/", params={"check": "true"}
                )
                if r.status_code == 200 and (r.json().get("check") or {}).get("ok"):
                    return True
                troubles[str(r.status_code)] += 1
            except httpx.HTTPError as exc:
                troubles[type(exc).__name__] += 1
            await asyncio.sleep(1 + attempt)
        return False

    oks = await bounded_gather(ids, check, 8, 900)
    t2 = time.perf_counter()
    timings: dict[str, Any] = {
        "register_s": round(t1 - t0, 2),
        "check_s": round(t2 - t1, 2),
        "checks_ok": sum(oks),
    }
    if troubles:
        timings["check_retries"] = dict(troubles)
    if not all(oks):
        raise RuntimeError(f"only {sum(oks)} of {len(ids)} hosts passed their live check")
    return ids, timings


async def create_work(client: httpx.AsyncClient) -> int:
    """One task (the hollow engine has its image; no network) and a directive running it."""
    task = {"name": "hollow", "image": IMAGE, "command": ["true"], "network_mode": "none"}
    await expect(client.post("/api/tasks/", json=task), 201)
    directive = await expect(
        client.post("/api/directives/", json={"name": "scale", "tasks": ["hollow"]}), 201
    )
    return int(directive["id"])


async def final_count(client: httpx.AsyncClient, statuses: str) -> int:
    """How many runs have one of these statuses (all runs for "")."""
    params: dict[str, Any] = {"limit": 1}
    if statuses:
        params["status"] = statuses
    r = await client.get("/api/runs/", params=params)
    r.raise_for_status()
    return int(r.json()["count"])


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


@dataclass
class FleetResult:
    fleet: Fleet
    setup: dict[str, Any] = field(default_factory=dict)
    launched: int = 0  # launches answered 201
    created: int = 0  # runs in the database (a launch cut off at the cap may have made one)
    launch_errors: dict[str, int] = field(default_factory=dict)
    # 503s with Retry-After (the database was busy, nothing written) that were sent again
    launch_retries: dict[str, int] = field(default_factory=dict)
    launch_s: float = float("nan")
    launch_p50_ms: float = float("nan")
    launch_p99_ms: float = float("nan")
    final: int = 0
    failed: int = 0
    finish_s: float = float("nan")
    finished_all: bool = False
    launched_all: bool = False
    unfinished: dict[str, int] = field(default_factory=dict)
    failed_examples: list[str] = field(default_factory=list)
    server_cpu_cores: float = float("nan")
    server_rss_mib: float = float("nan")
    server_peak_rss_mib: float = float("nan")
    hollow_cpu_cores: float = float("nan")
    bench_cpu_cores: float = float("nan")
    other_cpu_cores: float = float("nan")  # the rest of the machine: not ours
    max_peak_running: int = 0
    hosts_over_limit: int = 0
    duplicate_starts: int = 0
    engine_calls: dict[str, int] = field(default_factory=dict)
    engine_requests: int = 0
    creates: int = 0
    starts: int = 0
    direct: dict[str, Any] = field(default_factory=dict)
    idle: dict[str, Any] = field(default_factory=dict)

    @property
    def launches_per_s(self) -> float:
        return self.launched / self.launch_s if self.launch_s > 0 else float("nan")

    @property
    def finished_per_s(self) -> float:
        return self.final / self.finish_s if self.finish_s > 0 else float("nan")


async def launch_all(
    client: httpx.AsyncClient, directive_id: int, fleet: Fleet, deadline: float, res: FleetResult
) -> float:
    """Launch fleet.runs runs with fleet.clients concurrent clients; the start time."""
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    tickets = itertools.count()

    retries: Counter[str] = Counter()

    async def launch_once() -> httpx.Response:
        """One launch as a careful client sends it: a 503 with Retry-After wrote nothing, so
        it is sent again after the pause asked for (at most RETRIES times)."""
        for attempt in range(RETRIES + 1):
            r = await client.post("/api/runs/launch/", json={"directive_id": directive_id})
            after = r.headers.get("retry-after")
            last = attempt == RETRIES or time.monotonic() >= deadline
            if r.status_code != 503 or after is None or last:
                break
            retries[str(r.json().get("reason"))] += 1
            await asyncio.sleep(float(after))
        return r

    async def worker() -> None:
        while next(tickets) < fleet.runs and time.monotonic() < deadline:
            t = time.perf_counter()
            try:
                r = await launch_once()
            except httpx.HTTPError as exc:
                errors[type(exc).__name__] += 1
                continue
            latencies.append(time.perf_counter() - t)
            if r.status_code == 201:
                res.launched += 1
            else:
                errors[str(r.status_code)] += 1

    t0 = time.perf_counter()
    workers = [asyncio.create_task(worker()) for _ in range(fleet.clients)]
    try:
        await asyncio.wait_for(
            asyncio.gather(*workers), timeout=max(1.0, deadline - time.monotonic())
        )
        res.launched_all = res.launched == fleet.runs
    except TimeoutError:
        res.launched_all = False
    finally:
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    res.launch_s = time.perf_counter() - t0
    res.launch_errors = dict(errors)
    res.launch_retries = dict(retries)
    res.launch_p50_ms = percentile(latencies, 0.50) * 1000
    res.launch_p99_ms = percentile(latencies, 0.99) * 1000
    return t0


async def wait_final(
    client: httpx.AsyncClient, t0: float, deadline: float, res: FleetResult
) -> None:
    """Poll the count of final runs until every created run is final, or the deadline.

    Created, not only answered: a launch cut off at the cap may still have made its run.
    """
    while True:
        try:
            res.created = await final_count(client, "")
            res.final = await final_count(client, "succeeded,failed,cancelled")
        except httpx.HTTPError:
            pass
        now = time.perf_counter()
        if res.final >= max(res.created, res.launched):
            res.finished_all = res.launched_all
            break
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.25)
    res.finish_s = now - t0


async def run_fleet(
    procs: Procs,
    work: Path,
    hollow: HollowControl,
    fleet: Fleet,
    cap: float,
    idle_seconds: float,
    health_interval: int,
) -> FleetResult:
    res = FleetResult(fleet)
    await hollow.reset()
    server = await start_server(procs, work, f"server-{fleet.hosts}", health_interval)
    url = server.url
    limits = httpx.Limits(
        max_connections=fleet.clients + 4, max_keepalive_connections=fleet.clients
    )
    try:
        async with (
            httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client,
            httpx.AsyncClient(base_url=url, timeout=60) as poller,
        ):
            print(f"  registering {fleet.hosts} hosts …", flush=True)
            _, res.setup = await register_fleet(client, hollow.paths[: fleet.hosts], fleet.slots)
            directive_id = await create_work(client)
            res.server_rss_mib = server.memory_kib().get("VmRSS", 0) / 1024
            print(f"  setup {res.setup}, server RSS {res.server_rss_mib:.0f} MiB", flush=True)
            if idle_seconds > 0:
                res.idle = await idle_cpu(server, hollow, idle_seconds, health_interval)
                print(f"  idle: {res.idle}", flush=True)
            await hollow.reset()
            cpu0, hcpu0 = server.cpu_seconds(), hollow.proc.cpu_seconds()
            bcpu0, mcpu0 = bench_cpu_seconds(), machine_busy_seconds()
            w0 = time.perf_counter()
            deadline = time.monotonic() + cap
            print(f"  launching {fleet.runs} runs with {fleet.clients} clients …", flush=True)
            t0 = await launch_all(client, directive_id, fleet, deadline, res)
            print(
                f"  launched {res.launched} in {res.launch_s:.1f} s, errors {res.launch_errors}"
                f", 503s sent again {res.launch_retries}",
                flush=True,
            )
            await wait_final(poller, t0, deadline, res)
            wall = time.perf_counter() - w0
            res.server_cpu_cores = (server.cpu_seconds() - cpu0) / wall
            res.hollow_cpu_cores = (hollow.proc.cpu_seconds() - hcpu0) / wall
            res.bench_cpu_cores = (bench_cpu_seconds() - bcpu0) / wall
            ours = res.server_cpu_cores + res.hollow_cpu_cores + res.bench_cpu_cores
            res.other_cpu_cores = max(0.0, (machine_busy_seconds() - mcpu0) / wall - ours)
            res.server_peak_rss_mib = server.memory_kib().get("VmHWM", 0) / 1024
            res.failed = await final_count(poller, "failed")
            if res.failed:
                page = await poller.get("/api/runs/", params={"status": "failed", "limit": 3})
                res.failed_examples = [str(r.get("error")) for r in page.json()["results"]]
            if not res.finished_all:
                for status in ("pending", "starting", "running"):
                    res.unfinished[status] = await final_count(poller, status)
            stats = await hollow.stats()
            tot = stats["totals"]
            peaks = [h["peak_running"] for h in stats["hosts"].values()]
            res.max_peak_running = max(peaks, default=0)
            res.hosts_over_limit = sum(p > fleet.slots for p in peaks)
            res.duplicate_starts = tot["duplicate_starts"]
            if res.duplicate_starts:
                print(f"  duplicate starts: {stats.get('duplicate_examples')}", flush=True)
            res.engine_calls = stats["calls"]
            res.engine_requests = tot["requests"]
            res.creates, res.starts = tot["creates"], tot["starts"]
            print(
                f"  final {res.final}/{res.created} in {res.finish_s:.1f} s "
                f"(failed {res.failed}); peak running {res.max_peak_running}, "
                f"duplicates {res.duplicate_starts}",
                flush=True,
            )
    finally:
        if not server.alive():
            print(f"  server died:\n{server.tail()}", flush=True)
        server.stop()
    return res


async def idle_cpu(
    server: Proc, hollow: HollowControl, seconds: float, health_interval: int
) -> dict[str, Any]:
    """The server's CPU over an idle window: hosts registered, no runs, checks every interval."""
    await asyncio.sleep(3)  # let the registration's background checks drain
    before = (await hollow.stats(per_host=False))["calls"].get("GET /info", 0)
    cpu0, t0, m0 = server.cpu_seconds(), time.perf_counter(), machine_busy_seconds()
    await asyncio.sleep(seconds)
    cpu1, t1, m1 = server.cpu_seconds(), time.perf_counter(), machine_busy_seconds()
    after = (await hollow.stats(per_host=False))["calls"].get("GET /info", 0)
    return {
        "window_s": round(t1 - t0, 1),
        "cpu_s": round(cpu1 - cpu0, 2),
        "pct_of_one_core": round(100 * (cpu1 - cpu0) / (t1 - t0), 2),
        "live_checks_in_window": after - before,
        "health_interval_s": health_interval,
        "rss_mib": round(server.memory_kib().get("VmRSS", 0) / 1024, 1),
        "machine_busy_cores": round((m1 - m0) / (t1 - t0), 2),
    }


# -- the direct aiodocker baseline -------------------------------------------------------------


async def direct_baseline(
    hollow: HollowControl, fleet: Fleet, cap: float, instance: str
) -> dict[str, Any]:
    """fleet.runs containers through the same engine with aiodocker: slots loops per host."""
    await hollow.reset()
    paths = hollow.paths[: fleet.hosts]
    clients = [aiodocker.Docker(url=f"unix://{p}") for p in paths]
    done = 0
    errors: Counter[str] = Counter()
    tickets = itertools.count()
    deadline = time.monotonic() + cap

    async def lifecycle(docker: aiodocker.Docker, i: int) -> None:
        labels = {
            "dockfleet.managed": "true",
            "dockfleet.run_id": str(i),
            "dockfleet.task_id": "1",
            "dockfleet.attempt": "1",
            "dockfleet.instance": instance,
        }
        config = {
            "Image": IMAGE,
            "Cmd": ["true"],
            "Env": [f"DOCKFLEET_RUN_ID={i}", "DOCKFLEET_TASK=hollow", "DOCKFLEET_ATTEMPT=1"],
            "Labels": labels,
            "HostConfig": {"NetworkMode": "none"},
        }
        await docker.images.inspect(IMAGE)
        container = await docker.containers.create(config, name=f"direct-{instance}-r{i}-t1-a1")
        await container.start()
        await container.wait()
        await container.log(stdout=True, stderr=True, tail="26214")
        await container.delete(force=True)

    async def loop(docker: aiodocker.Docker) -> None:
        nonlocal done
        while time.monotonic() < deadline:
            i = next(tickets)
            if i >= fleet.runs:
                return
            try:
                async with asyncio.timeout(60):
                    await lifecycle(docker, i)
                done += 1
            except (aiodocker.DockerError, TimeoutError, OSError) as exc:
                errors[type(exc).__name__] += 1

    try:
        # Warm up like dockfleet's pooled clients are (API version known, a connection open).
        await bounded_gather(clients, lambda d: d.version(), 64, 120)
        await hollow.reset()  # count only the lifecycles
        cpu0 = hollow.proc.cpu_seconds()
        bcpu0, mcpu0 = bench_cpu_seconds(), machine_busy_seconds()
        t0 = time.perf_counter()
        loops = [asyncio.create_task(loop(d)) for d in clients for _ in range(fleet.slots)]
        try:
            await asyncio.wait_for(asyncio.gather(*loops), timeout=cap + 5)
        except TimeoutError:
            pass
        finally:
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
        elapsed = time.perf_counter() - t0
        hollow_cores = (hollow.proc.cpu_seconds() - cpu0) / elapsed
        bench_cores = (bench_cpu_seconds() - bcpu0) / elapsed
        other_cores = (machine_busy_seconds() - mcpu0) / elapsed - hollow_cores - bench_cores
    finally:
        await asyncio.gather(*(d.close() for d in clients), return_exceptions=True)
    stats = await hollow.stats()
    peaks = [h["peak_running"] for h in stats["hosts"].values()]
    return {
        "containers": done,
        "of": fleet.runs,
        "seconds": round(elapsed, 2),
        "containers_per_s": round(done / elapsed, 1) if elapsed > 0 else float("nan"),
        "errors": dict(errors),
        "finished_all": done == fleet.runs,
        "hollow_cpu_cores": round(hollow_cores, 2),
        "bench_cpu_cores": round(bench_cores, 2),
        "other_cpu_cores": round(max(0.0, other_cores), 2),
        "max_peak_running": max(peaks, default=0),
        "duplicate_starts": stats["totals"]["duplicate_starts"],
        "engine_calls_per_container": round(stats["totals"]["requests"] / max(1, done), 1),
    }


# -- placement pass ----------------------------------------------------------------------------


def placement_pass(hosts: int, runs: int, timeout: float) -> dict[str, Any]:
    """One Scheduler.place() of `runs` pending runs over `hosts` simulated hosts (in-process
    code of bench.placement_bench, run in a subprocess so a changed API only loses this line)."""
    code = (
        "import asyncio, json\n"
        "from bench.placement_bench import bench_place_pass\n"
        f"print(json.dumps(asyncio.run(bench_place_pass({hosts}, {runs}))))\n"
    )
    try:
        out = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish in {timeout:.0f} s"}
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1]}
    data: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return data


# -- report ------------------------------------------------------------------------------------


def _num(value: float, digits: int = 1) -> str:
    return "n/a" if value != value else f"{value:,.{digits}f}"


def table(results: list[FleetResult]) -> list[str]:
    rows = [
        "| fleet | launches/s | launch p50 / p99 | runs finished/s | direct aiodocker | ratio |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        f = r.fleet
        launches = _num(r.launches_per_s)
        if not r.launched_all:
            launches += (
                f" (only {r.launched:,} of {f.runs:,} launches answered in {r.launch_s:.0f} s)"
            )
        latency = f"{_num(r.launch_p50_ms, 0)} / {_num(r.launch_p99_ms, 0)} ms"
        if r.finished_all:
            finished = _num(r.finished_per_s)
        else:
            finished = (
                f"did not finish: {r.final:,} of {f.runs:,} final after {r.finish_s:.0f} s "
                f"({_num(r.finished_per_s)}/s; {r.created:,} runs created)"
            )
        d = r.direct
        direct = f"{_num(d.get('containers_per_s', float('nan')))}/s" if d else "n/a"
        if d and not d.get("finished_all"):
            direct += f" ({d['containers']:,} of {d['of']:,})"
        ratio = "n/a"
        if d and d.get("containers_per_s"):
            ratio = f"{r.finished_per_s / d['containers_per_s']:.3f}"
        rows.append(f"| {f.label} | {launches} | {latency} | {finished} | {direct} | {ratio} |")
    return rows


def extras(results: list[FleetResult]) -> list[str]:
    rows = [
        "| fleet | final / failed | server CPU (cores) | server RSS idle → peak | "
        "hollow CPU (cores) | peak running per host (max) | hosts over max_concurrency | "
        "duplicate starts | Engine calls per run (live checks aside) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        checks = sum(r.engine_calls.get(k, 0) for k in CHECK_CALLS)
        calls = (r.engine_requests - checks) / r.final if r.final else float("nan")
        rows.append(
            f"| {r.fleet.hosts:,} hosts | {r.final:,} / {r.failed:,} | "
            f"{_num(r.server_cpu_cores, 2)} | {_num(r.server_rss_mib, 0)} → "
            f"{_num(r.server_peak_rss_mib, 0)} MiB | {_num(r.hollow_cpu_cores, 2)} | "
            f"{r.max_peak_running} (limit {r.fleet.slots}) | {r.hosts_over_limit} | "
            f"{r.duplicate_starts} | {_num(calls)} |"
        )
    return rows


def machine() -> str:
    mem = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = round(int(line.split()[1]) / (1024 * 1024))
    commit = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return (
        f"{os.cpu_count()} vCPU, {mem} GiB, Python {platform.python_version()}, "
        f"server code at {commit or 'unknown'}"
    )


# -- main --------------------------------------------------------------------------------------


def parse_fleets(spec: str) -> list[Fleet]:
    fleets = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        if ":" in part:  # HOSTS:RUNS:CLIENTS
            hosts, runs, clients = (int(x) for x in part.split(":"))
            fleets.append(Fleet(hosts, 4, runs, clients))
        else:
            fleets.append(FLEETS[int(part)])
    return fleets


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.scale_bench", description=__doc__)
    p.add_argument("--fleets", default="10,100,1000", help="10,100,1000 or HOSTS:RUNS:CLIENTS")
    p.add_argument("--quick", action="store_true", help="a small smoke run (about a minute)")
    p.add_argument("--cap", type=float, default=600, help="seconds a fleet may take to finish")
    p.add_argument("--direct-cap", type=float, default=300, help="seconds for a direct run")
    p.add_argument("--latency-ms", type=float, default=2.0)
    p.add_argument("--run-ms", type=float, default=200.0)
    p.add_argument("--idle-seconds", type=float, default=60, help="idle CPU window (0: skip)")
    p.add_argument("--health-interval", type=int, default=30)
    p.add_argument("--no-placement", action="store_true", help="skip the placement pass")
    p.add_argument("--no-direct", action="store_true", help="skip the direct baseline")
    p.add_argument("--json", type=Path, help="also write the results as JSON here")
    p.add_argument("--workdir", type=Path, help="keep sockets, databases and logs here")
    args = p.parse_args(argv)
    if args.quick:
        args.fleets_list = QUICK
        args.cap = min(args.cap, 120)
        args.direct_cap = min(args.direct_cap, 60)
        args.idle_seconds = min(args.idle_seconds, 10)
    else:
        args.fleets_list = parse_fleets(args.fleets)
    return args


async def run(args: argparse.Namespace, procs: Procs, work: Path) -> list[str]:
    fleets: list[Fleet] = args.fleets_list
    hollow = await start_hollow(
        procs, work, max(f.hosts for f in fleets), args.latency_ms, args.run_ms
    )
    results: list[FleetResult] = []
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    load_at_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    try:
        largest = max(fleets, key=lambda f: f.hosts)
        for n, fleet in enumerate(fleets):
            print(f"fleet {fleet.label}", flush=True)
            idle = args.idle_seconds if fleet is largest else 0
            res = await run_fleet(procs, work, hollow, fleet, args.cap, idle, args.health_interval)
            if not args.no_direct:
                print("  direct aiodocker baseline …", flush=True)
                res.direct = await direct_baseline(hollow, fleet, args.direct_cap, f"direct{n}")
                print(f"  direct: {res.direct}", flush=True)
            results.append(res)
    finally:
        await hollow.close()
    placement: dict[str, Any] = {}
    if not args.no_placement:
        hosts, runs = (100, 1000) if args.quick else (1000, 5000)
        print(f"placement pass {hosts} hosts {X} {runs} pending …", flush=True)
        placement = {"hosts": hosts, "pending": runs, **placement_pass(hosts, runs, 300)}
    lines = [
        "",
        f"Machine: {machine()}",
        f"Date: {started}; load average at the start {load_at_start}",
        f"Command: {' '.join(['python -m bench.scale_bench', *sys.argv[1:]])}",
        f"Hollow engine: daemons answer in {args.latency_ms:g} ms, containers run "
        f"{args.run_ms:g} ms; fleet cap {args.cap:.0f} s",
        "",
        *table(results),
        "",
        *extras(results),
        "",
    ]
    for r in results:
        if r.idle:
            i = r.idle
            lines.append(
                f"Health checking {r.fleet.hosts:,} hosts every {i['health_interval_s']} s, idle "
                f"(no runs): server CPU {i['pct_of_one_core']}% of one core over "
                f"{i['window_s']} s ({i['live_checks_in_window']} live checks), RSS "
                f"{i['rss_mib']} MiB; the whole machine was busy {i['machine_busy_cores']} cores"
            )
    if placement:
        if "error" in placement:
            lines.append(f"Placement pass: {placement['error']}")
        else:
            lines.append(
                f"Placement pass, {placement['hosts']:,} hosts {X} {placement['pending']:,} "
                f"pending (bench.placement_bench, in process): {placement['seconds']:.2f} s for "
                f"{placement['placed']:,} placements"
            )
    for r in results:
        notes = []
        if r.launch_errors:
            notes.append(f"launch errors {r.launch_errors}")
        if r.launch_retries:
            notes.append(f"503s sent again {r.launch_retries}")
        if r.unfinished:
            notes.append(f"not final at the cap: {r.unfinished}")
        if r.failed_examples:
            notes.append(f"failed runs say: {r.failed_examples}")
        notes.append(f"setup {r.setup}")
        notes.append(
            f"CPU of the bench's own clients {_num(r.bench_cpu_cores, 2)} cores, of other "
            f"processes on the machine {_num(r.other_cpu_cores, 2)} cores"
        )
        calls = ", ".join(f"{k} {v}" for k, v in r.engine_calls.items())
        notes.append(f"Engine calls: {calls}")
        lines.append(f"- {r.fleet.hosts:,} hosts: " + "; ".join(notes))
    if args.json:
        payload = {
            "machine": machine(),
            "date": started,
            "argv": sys.argv[1:],
            "results": [
                {**asdict(r), "launches/s": r.launches_per_s, "finished/s": r.finished_per_s}
                for r in results
            ],
            "placement": placement,
        }
        args.json.write_text(json.dumps(payload, indent=2, default=str))
    return lines


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def workdir(keep: Path | None) -> Iterator[Path]:
    """A temporary directory for sockets, databases and logs; `keep`: this one, kept."""
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="dfl-scale-") as tmp:
        yield Path(tmp)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:  # thousands of sockets: for this process and the ones it starts
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    signal.signal(signal.SIGTERM, _terminate)
    procs = Procs()
    with workdir(args.workdir) as work:
        try:
            lines = asyncio.run(run(args, procs, work))
        except BaseException:
            for proc in procs.items:
                print(f"--- {proc.name} ({proc.log}):\n{proc.tail()}", file=sys.stderr)
            raise
        finally:
            procs.stop_all()
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
