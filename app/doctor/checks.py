"""The doctor's checks: reachable, Docker version/API, task images, NVIDIA runtime, GPUs found
vs declared, free disk on the Docker root, clock skew against the server.

Every Docker call goes through the host's own connector with its deadline; the one container
the doctor runs (`df` of the Docker root, from an image already on the host) is removed.
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import datetime
from typing import Any

from sqlmodel import col, select

from app import clock
from app.deps import AppState
from app.doctor.schemas import Check, DoctorReport
from app.engine.client import DockerClient
from app.engine.containers import ContainerSpec
from app.engine.endpoint import Endpoint
from app.errors import EngineError
from app.gpus import store as gpus_store
from app.gpus.offer import GpuAsk, never_reasons
from app.gpus.probe import DEFAULT_IMAGE, GpuProber
from app.hosts.models import WorkerHost
from app.tasks.models import TaskDefinition

MIN_API = (1, 40)  # DeviceRequests (GPUs) came with API 1.40, Docker 19.03
DISK_WARN_GB, DISK_FAIL_GB = 10.0, 2.0
SKEW_WARN, SKEW_FAIL = 2.0, 30.0
PROBE_WAIT = 15.0  # the whole answer stays within clients' 30 s

_REACH_FIX = {
    "docker_socket": "check that the socket exists and the dockfleet user may read it "
    "(group docker)",
    "tls": "check the address and firewall, and the three tls_config certificate paths",
    "ssh": "check that sshd answers at ssh_config.host:port, that the key is authorised for "
    "the user, and that Docker listens on the base_url as seen from the SSH server",
}
_RUNTIME_FIX = (
    "install the NVIDIA driver and the NVIDIA Container Toolkit on the host, then "
    "`sudo nvidia-ctk runtime configure --runtime=docker && sudo systemctl restart docker`"
)


def _ok(name: str, detail: str) -> Check:
    return Check(name=name, status="ok", detail=detail)


def _bad(name: str, status: Any, detail: str, fix: str) -> Check:
    return Check(name=name, status=status, detail=detail, fix=fix)


def _api(version: str | None) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in (version or "").split("."))
    except ValueError:
        return ()


def docker_check(facts: dict[str, Any]) -> Check:
    """Docker's version and API: GPU requests need API 1.40 or later."""
    version, api = facts.get("docker_version"), facts.get("api_version")
    detail = f"Docker {version}, API {api}"
    if _api(api) and _api(api) < MIN_API:
        fix = "upgrade Docker to 19.03 or later (GPU requests need API 1.40)"
        return _bad("docker", "warn", detail, fix)
    return _ok("docker", detail)


def disk_check(available_kb: int | None, root: str, why: str | None) -> Check:
    """Free space on the filesystem of the Docker root."""
    if available_kb is None:
        return _bad(
            "disk",
            "warn",
            f"free space on {root} unknown: {why}",
            "check `df -h " + root + "` on the host",
        )
    gb = available_kb / 1024 / 1024
    detail = f"{gb:.1f} GiB free on {root}"
    fix = "free space (`docker system prune`, old images) or grow the disk"
    if gb < DISK_FAIL_GB:
        return _bad("disk", "fail", detail, fix)
    if gb < DISK_WARN_GB:
        return _bad("disk", "warn", detail, fix)
    return _ok("disk", detail)


def clock_check(system_time: str | None, now: datetime) -> Check:
    """The daemon's clock against the server's."""
    if not system_time:
        return _bad("clock", "warn", "the daemon does not report its time", "check NTP on the host")
    try:
        text = system_time.replace("Z", "+00:00")
        if "." in text:  # Docker prints nanoseconds; Python reads at most microseconds
            head, tail = text.split(".", 1)
            digits = tail[: len(tail) - len(tail.lstrip("0123456789"))]
            text = f"{head}.{digits[:6]}{tail[len(digits) :]}"
        theirs = datetime.fromisoformat(text)
        if theirs.tzinfo is None:
            raise ValueError("no time zone")
    except ValueError:
        return _bad("clock", "warn", f"unreadable daemon time {system_time!r}", "check NTP")
    skew = (theirs - now).total_seconds()
    detail = f"skew {skew:+.1f}s against the server"
    fix = "run NTP on both machines (`timedatectl set-ntp true`, or chrony)"
    if abs(skew) > SKEW_FAIL:
        return _bad("clock", "fail", detail, fix)
    if abs(skew) > SKEW_WARN:
        return _bad("clock", "warn", detail, fix)
    return _ok("clock", detail)


def parse_df(text: str) -> int | None:
    """Available KiB from `df -Pk /` (POSIX format: the 4th column of the 2nd line)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 2:
        return None
    parts = lines[-1].split()
    try:
        return int(parts[3])
    except (IndexError, ValueError):
        return None


class Doctor:
    """Runs every check of one host."""

    def __init__(self, state: AppState) -> None:
        self.state = state

    async def examine(self, host_id: int) -> DoctorReport:
        """Check the host now (the caller has made sure it exists and is enabled)."""
        assert self.state.monitor is not None
        async with self.state.db.sessions() as session:
            host = await session.get(WorkerHost, host_id)
            assert host is not None
            query = select(TaskDefinition).where(col(TaskDefinition.enabled))
            tasks = list((await session.exec(query)).all())
        ep = Endpoint.of(host)
        checks = [await self._reachable(host, ep)]
        if checks[0].status == "fail":
            names = ("docker", "images", "nvidia runtime", "gpus", "disk", "clock")
            checks += [
                Check(name=n, status="skip", detail="the host is unreachable") for n in names
            ]
        else:
            checks += await self._docker_side(host, ep, tasks)
        return DoctorReport(
            host_id=host_id,
            host_name=host.name,
            ok=all(c.status != "fail" for c in checks),
            checks=checks,
        )

    async def _reachable(self, host: WorkerHost, ep: Endpoint) -> Check:
        assert self.state.monitor is not None and host.id is not None
        result = await self.state.monitor.check(host.id)
        if result is not None and result.ok:
            return _ok("reachable", f"Docker answered in {result.latency_ms} ms")
        kind = "docker_socket" if ep.type == "docker_socket" else "ssh" if ep.ssh else "tls"
        error = result.error if result is not None else "the host is gone"
        return _bad("reachable", "fail", error or "no answer", _REACH_FIX[kind])

    async def _docker_side(
        self, host: WorkerHost, ep: Endpoint, tasks: list[TaskDefinition]
    ) -> list[Check]:
        caps = host.caps()
        images = [t.image for t in tasks if caps.gpus or not t.gpus_needed()]
        probe_image = caps.gpu_probe_image or next(
            (t.image for t in tasks if t.name == "gpu_report"), DEFAULT_IMAGE
        )
        if caps.gpus:
            images.append(probe_image)
        images = list(dict.fromkeys(images))
        try:
            async with self.state.pool.docker(ep) as docker:
                asked = clock.now()
                facts = await docker.facts()
                read_at = asked + (clock.now() - asked) / 2  # when the daemon read its clock
                present = [i for i in images if await docker.has_image(i)]
                image_check = await self._images(docker, images, present)
                disk = await self._disk(docker, present, str(facts.info.get("DockerRootDir")))
        except EngineError as exc:
            return [_bad("docker", "fail", str(exc.detail), "run `dockfleet hosts check` again")]
        out = [
            docker_check(
                {"docker_version": facts.docker_version, "api_version": facts.api_version}
            ),
            image_check,
            *(await self._gpus(host)),
            disk,
            clock_check(facts.info.get("SystemTime"), read_at),
        ]
        return out

    async def _images(self, docker: DockerClient, images: list[str], present: list[str]) -> Check:
        missing = [i for i in images if i not in present]
        unpullable = []
        for image in missing:
            why = await docker.can_pull(image)
            if why is not None:
                unpullable.append(f"{image} ({why})")
        detail = f"{len(present)} of {len(images)} task images present"
        if missing:
            detail += f"; missing: {', '.join(missing)}"
        if unpullable:
            fix = "pull or `docker load` them on the host, or give it access to their registry"
            return _bad(
                "images", "warn", f"{detail}; cannot be pulled: {'; '.join(unpullable)}", fix
            )
        return _ok("images", detail + ("; they can be pulled" if missing else ""))

    async def _disk(self, docker: DockerClient, present: list[str], root: str) -> Check:
        if not present:
            return disk_check(None, root, "no image on the host to run df with")
        spec = ContainerSpec(
            name=f"dockfleet-{self.state.instance_id}-doctor-{secrets.token_hex(4)}",
            image=present[0],
            command=["df", "-Pk", "/"],
            env={},
            labels={"dockfleet.doctor": self.state.instance_id},
            network_mode="none",
        )
        try:
            async with asyncio.timeout(docker.deadlines.call * 3):
                done = await docker.run_to_end(spec, docker.deadlines.call)
        except (EngineError, TimeoutError) as exc:
            return disk_check(None, root, str(getattr(exc, "detail", exc)) or "timed out")
        return disk_check(parse_df(done.stdout), root, done.stderr.strip()[:200] or "no df output")

    async def _gpus(self, host: WorkerHost) -> list[Check]:
        caps = host.caps()
        assert host.id is not None
        if not caps.gpus:
            detail = "not needed: a CPU host (capabilities.gpus is false)"
            return [_ok("nvidia runtime", detail), _ok("gpus", "none declared")]
        prober: GpuProber | None = self.state.services.get("gpus")
        if prober is not None:
            task = prober.probe(host.id)
            try:
                await asyncio.wait_for(asyncio.shield(task), PROBE_WAIT)
            except TimeoutError:
                pass
        async with self.state.db.sessions() as session:
            probe = await gpus_store.probe_of(session, host.id)
            state = (await gpus_store.states(session, [host.id])).get(host.id)
        return [self._runtime(probe), self._found(caps, state, probe)]

    @staticmethod
    def _runtime(probe: Any) -> Check:
        name = "nvidia runtime"
        if probe is None:
            return _bad(name, "warn", "not probed yet", "run `dockfleet hosts gpus HOST --probe`")
        if probe.status == "ok":
            return _ok(name, f"present; the probe ran in {probe.duration_ms} ms")
        if probe.status == "no_runtime":
            return _bad(name, "fail", "the daemon has no NVIDIA runtime", _RUNTIME_FIX)
        if probe.status == "driver_error":
            fix = "check `nvidia-smi` on the host and the kernel log (`dmesg | grep -i xid`)"
            return _bad(name, "fail", f"the driver failed: {probe.error}", fix)
        fix = "make the probe image available on the host (capabilities.gpu_probe_image)"
        return _bad(name, "warn", f"the probe could not run: {probe.error}", fix)

    @staticmethod
    def _found(caps: Any, state: Any, probe: Any) -> Check:
        declared = "auto" if caps.gpus == "auto" else f"{caps.gpu_count}"
        if state is None or not state.discovered:
            return _bad(
                "gpus",
                "warn",
                f"declared {declared}, none discovered yet",
                "fix the probe (see nvidia runtime) so the GPUs can be checked",
            )
        found = state.present()
        held_out = [f"{u.index} ({u.reason})" for u in state.units if u.reason]
        detail = f"found {len(found)}, declared {declared}"
        never = never_reasons(caps, state, GpuAsk(1))
        if never:
            fix = 'check the GPUs on the host (`nvidia-smi`), or set "gpus": "auto"'
            return _bad("gpus", "fail", f"{detail}: {never[0]}", fix)
        if held_out:
            return _bad(
                "gpus",
                "warn",
                f"{detail}; held out: {'; '.join(held_out)}",
                "see `dockfleet hosts gpus HOST` for each GPU",
            )
        return _ok("gpus", detail + (f" ({probe.found} at the last probe)" if probe else ""))
