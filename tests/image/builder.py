"""A build dockerd of the fleet in the machine's own network namespace, for `make image-test`.

The fleet's daemons sit in namespaces with no route out, so a `RUN pip install` could not
reach PyPI there. This one runs beside them in the host's namespace (the fleet recipe's "own
pre-created bridge" form: `-b dfl-<suffix>-build --iptables=false --ip-masq=false`, and
`--ip-forward=false` so it leaves the host's sysctl alone); builds and the dockfleet container
use `--network host`. It is a `Daemon` of the fleet, so `Fleet.teardown()` stops it and
`destroy()` / `cleanup_leftovers()` remove its bridge (`dfl-<suffix>-<name>`), cgroup
(`dfl-<name>-<suffix>`), mounts and directory like any other.
"""

from __future__ import annotations

import os
import subprocess

from tests.fleet import Daemon, Fleet
from tests.fleet.netns import NET_PREFIX, free_octets
from tests.fleet.procs import run

DOCKER_CLI_TIMEOUT = 900.0  # a cold build downloads ~50 wheels from PyPI


def add_builder(fleet: Fleet, name: str = "build") -> Daemon:
    """Start the build daemon (removed with the fleet); its unix socket is `socket_path`."""
    with fleet._lock:
        if name in fleet.daemons:
            return fleet.daemons[name]
    bridge = f"dfl-{fleet.suffix}-{name}"
    octet = free_octets(1)[0]
    run("ip", "link", "add", bridge, "type", "bridge")
    try:
        run("ip", "addr", "add", f"{NET_PREFIX}.{octet}.1/30", "dev", bridge)
        run("ip", "link", "set", bridge, "up")
    except BaseException:
        run("ip", "link", "del", bridge, check=False)
        raise
    d = os.path.join(fleet.base, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "daemon.json"), "w") as fh:
        fh.write("{}\n")  # never pick up /etc/docker/daemon.json
    tag = f"dfl-{name}-{fleet.suffix}"
    sock = os.path.join(d, "docker.sock")
    argv = [
        "dockerd",
        f"--config-file={d}/daemon.json",
        f"--host=unix://{sock}",
        f"--data-root={d}/data",
        f"--exec-root={d}/x",
        f"--pidfile={d}/docker.pid",
        f"--cgroup-parent=/{tag}",
        f"--containerd-namespace={tag}",
        f"--containerd-plugins-namespace={tag}-plugins",
        f"--bridge={bridge}",
        "--iptables=false",
        "--ip6tables=false",
        "--ip-masq=false",
        "--ip-forward=false",
        "--shutdown-timeout=2",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "NOTIFY_SOCKET"))}
    daemon = Daemon(
        name=name,
        socket_path=sock,
        base_url=f"unix://{sock}",
        tls=None,
        ssh=None,
        gpu_ids=[],
        dir=d,
        _argv=argv,
        _env=env,
    )
    with fleet._lock:
        fleet.daemons[name] = daemon
    daemon.start()
    return daemon


def docker(
    daemon: Daemon, *args: str, timeout: float = DOCKER_CLI_TIMEOUT, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """The docker CLI against `daemon` (classic builder: API 1.41, no buildx needed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env |= {"DOCKER_HOST": daemon.base_url, "DOCKER_BUILDKIT": "0", "DOCKER_CLI_HINTS": "false"}
    done = subprocess.run(
        ["docker", *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise RuntimeError(
            f"docker {' '.join(args[:3])} failed ({done.returncode}):\n"
            f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return done
