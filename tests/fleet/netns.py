"""Per-daemon network namespaces joined to the host by one veth pair each.

Host end 10.231.K.1/30, netns end (`eth0`) 10.231.K.2/30, `lo` up, deliberately no default route.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from .procs import run

NET_PREFIX = "10.231"


@dataclass
class NetNS:
    name: str  # dfl-<daemon>-<suffix>
    host_if: str  # dfl-<suffix>-<daemon>
    host_ip: str
    ns_ip: str

    @property
    def path(self) -> str:
        return f"/run/netns/{self.name}"

    def nsenter(self) -> list[str]:
        """Command prefix that runs a program inside this netns (keeps the host's /sys mounts)."""
        return ["nsenter", f"--net={self.path}"]


def free_octets(count: int) -> list[int]:
    """Third octets K for 10.231.K.0/30 that no host address or route uses yet."""
    text = run("ip", "-4", "-o", "addr", "show") + run("ip", "-4", "route", "show", "table", "all")
    used = {int(k) for k in re.findall(rf"\b{re.escape(NET_PREFIX)}\.(\d+)\.", text)}
    choices = [k for k in range(1, 255) if k not in used]
    if len(choices) < count:
        raise RuntimeError(f"no free {NET_PREFIX}.K.0/30 subnets left")
    return random.sample(choices, count)


def create(daemon: str, suffix: str, octet: int) -> NetNS:
    ns = NetNS(
        name=f"dfl-{daemon}-{suffix}",
        host_if=f"dfl-{suffix}-{daemon}",
        host_ip=f"{NET_PREFIX}.{octet}.1",
        ns_ip=f"{NET_PREFIX}.{octet}.2",
    )
    run("ip", "netns", "add", ns.name)
    run("ip", "link", "add", ns.host_if, "type", "veth", "peer", "name", "eth0", "netns", ns.name)
    run("ip", "addr", "add", f"{ns.host_ip}/30", "dev", ns.host_if)
    run("ip", "link", "set", ns.host_if, "up")
    run("ip", "-n", ns.name, "addr", "add", f"{ns.ns_ip}/30", "dev", "eth0")
    run("ip", "-n", ns.name, "link", "set", "eth0", "up")
    run("ip", "-n", ns.name, "link", "set", "lo", "up")
    routes = run("ip", "-n", ns.name, "route", "show")
    if "default" in routes:  # never: the namespace must not reach beyond the host
        raise RuntimeError(f"{ns.name} unexpectedly has a default route: {routes}")
    return ns
