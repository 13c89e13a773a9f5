"""A GPU probe image for the fake-GPU daemons: its `nvidia-smi` prints a scripted inventory.

On a real host the NVIDIA runtime puts the driver's nvidia-smi into the probe container; here
the image brings a busybox shell script instead, answering the probe's three queries from CSV
files baked into the image (rebuild the image to change what the next probe finds). It checks
that the probe asked for every GPU (`NVIDIA_VISIBLE_DEVICES=all`, which the daemon sets for
`DeviceRequests` Count -1), and fails like a broken driver, or hangs, when told to.
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass
from urllib.parse import urlencode

from . import dockerapi

PROBE_IMAGE = "fleet/gpu-probe:latest"

_DOCKERFILE = b"""FROM fleet/busybox:latest
COPY fakegpu/ /etc/fakegpu/
COPY nvidia-smi /usr/bin/nvidia-smi
"""

_SCRIPT = b"""#!/bin/sh
# fake nvidia-smi: answers dockfleet's probe queries from /etc/fakegpu
if [ -e /etc/fakegpu/hang ]; then
  exec sleep 600
fi
if [ -e /etc/fakegpu/fail ]; then
  cat /etc/fakegpu/fail; exit 9
fi
if [ "$NVIDIA_VISIBLE_DEVICES" != "all" ]; then
  echo "fake nvidia-smi: the probe must ask for every GPU, got '$NVIDIA_VISIBLE_DEVICES'"; exit 9
fi
case "$*" in
  *--query-gpu=index,uuid,name,memory.total,memory.used,*) cat /etc/fakegpu/gpus.csv ;;
  *--query-compute-apps=gpu_uuid,pid,used_memory*) cat /etc/fakegpu/apps.csv ;;
  *--query-gpu=uuid,ecc.errors.uncorrected.volatile.total,retired_pages.pending*)
    cat /etc/fakegpu/health.csv ;;
  *) echo "fake nvidia-smi: unexpected arguments: $*"; exit 2 ;;
esac
"""


@dataclass(frozen=True)
class FakeGpu:
    """One scripted GPU (values as nvidia-smi prints them with nounits; "[N/A]" allowed)."""

    index: int
    uuid: str
    name: str
    memory_total: str = "24564"
    memory_used: str = "3"
    utilization: str = "0"
    temperature: str = "35"
    power: str = "21.50"

    def line(self) -> str:
        values = [str(self.index), self.uuid, self.name, self.memory_total, self.memory_used]
        values += [self.utilization, self.temperature, self.power]
        return ", ".join(values)


RTX3060 = FakeGpu(
    0, "GPU-0a3e6c1e-3060-4c7b-9d2f-000000000000", "NVIDIA GeForce RTX 3060", memory_total="12288"
)
RTX4090 = FakeGpu(1, "GPU-1b7d2f90-4090-4a1c-8e3d-111111111111", "NVIDIA GeForce RTX 4090")
A100 = FakeGpu(
    2,
    "GPU-2c9e3a00-a100-4f2b-9c4e-222222222222",
    "NVIDIA A100-SXM4-80GB",
    memory_total="81920",
    memory_used="40960",
    utilization="97",
    power="[N/A]",
)
SPARE4090 = FakeGpu(
    3,
    "GPU-3d0f4b11-4090-4e3d-8f5a-333333333333",
    "NVIDIA GeForce RTX 4090",
    power="[N/A]",
    temperature="[N/A]",
)
# The scripted inventory: mixed cards, the A100 busy with a process dockfleet did not start.
INVENTORY = (RTX3060, RTX4090, A100, SPARE4090)
FOREIGN = {A100.uuid: [(4242, "40950")]}


def _context(
    gpus: tuple[FakeGpu, ...],
    apps: dict[str, list[tuple[int, str]]],
    fail: str | None,
    hang: bool = False,
) -> bytes:
    files = {
        "Dockerfile": (_DOCKERFILE, 0o644),
        "nvidia-smi": (_SCRIPT, 0o755),
        "fakegpu/gpus.csv": ("".join(g.line() + "\n" for g in gpus).encode(), 0o644),
        "fakegpu/apps.csv": (
            "".join(
                f"{u}, {pid}, {mem}\n" for u, rows in apps.items() for pid, mem in rows
            ).encode(),
            0o644,
        ),
        "fakegpu/health.csv": ("".join(f"{g.uuid}, 0, No\n" for g in gpus).encode(), 0o644),
    }
    if fail is not None:
        files["fakegpu/fail"] = (fail.encode() + b"\n", 0o644)
    if hang:
        files["fakegpu/hang"] = (b"", 0o644)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, (data, mode) in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def build_probe_image(
    socket_path: str,
    gpus: tuple[FakeGpu, ...] = INVENTORY,
    apps: dict[str, list[tuple[int, str]]] | None = None,
    *,
    fail: str | None = None,
    hang: bool = False,
    tag: str = PROBE_IMAGE,
) -> str:
    """Build (or rebuild) the probe image on a daemon; returns its tag. `fail`: nvidia-smi
    prints it and exits 9 (a broken driver); `hang`: nvidia-smi never returns."""
    query = urlencode([("t", tag), ("rm", "1"), ("forcerm", "1")])
    status, body = dockerapi.request(
        socket_path,
        "POST",
        f"/build?{query}",
        body=_context(gpus, FOREIGN if apps is None else apps, fail, hang),
        headers={"Content-Type": "application/x-tar"},
        timeout=120.0,
    )
    errors = [line for line in body.decode(errors="replace").splitlines() if '"error' in line]
    if status != 200 or errors:
        raise RuntimeError(f"probe image build failed ({status}): {errors or body[-300:]!r}")
    status, body = dockerapi.request(socket_path, "GET", f"/images/{tag}/json")
    if status != 200:
        raise RuntimeError(f"probe image missing after build: {json.loads(body)}")
    return tag
