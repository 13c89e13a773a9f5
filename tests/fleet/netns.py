"""Per-daemon network namespaces joined to the host by one veth pair each.

Host end 10.231.K.1/30, netns end (`eth0`) 10.231.K.2/30, `lo` up, deliberately no default route.

Faults (used through `Daemon`): `link_down()`/`link_up()` set the host end of the veth down/up;
`partition()`/`heal()` add/remove iptables DROP rules for everything but `lo` inside the netns
(silent: SYNs vanish, no RST, no ICMP). Rules die with the netns.

While the host end is down its connected route is gone, and the host HAS a default route: packets
for 10.231.K.2 would leave the machine through it. `link_down()` therefore first adds a guard
`unreachable 10.231.K.0/30 metric 4242`, so a connect fails at once with EHOSTUNREACH and nothing
leaves; `link_up()` removes it, `remove_stale_guards()` (teardown, leftovers) sweeps orphans.
"""

from __future__ import annotations

import ipaddress
import random
import re
import shutil
import subprocess
from dataclasses import dataclass

from .procs import run

NET_PREFIX = "10.231"
GUARD_METRIC = 4242  # metric of the `unreachable` guard route that link_down() adds


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


def subnet(ns_ip: str) -> str:
    """The /30 of a namespace address: 10.231.K.2 -> 10.231.K.0/30."""
    return str(ipaddress.ip_interface(f"{ns_ip}/30").network)


def link_down(host_if: str, ns_ip: str) -> None:
    """Guard route first (see the module docstring), then the host end of the veth down."""
    guard = ("unreachable", subnet(ns_ip), "metric", str(GUARD_METRIC))
    run("ip", "route", "replace", *guard)
    run("ip", "link", "set", host_if, "down")


def link_up(host_if: str, ns_ip: str) -> None:
    """Host end up again (its connected route comes back), then the guard route away."""
    run("ip", "link", "set", host_if, "up")
    guard = ("unreachable", subnet(ns_ip), "metric", str(GUARD_METRIC))
    run("ip", "route", "del", *guard, check=False)


def link_is_down(host_if: str) -> bool:
    out = run("ip", "-o", "link", "show", "dev", host_if)
    flags = out.split("<", 1)[1].split(">", 1)[0].split(",") if "<" in out else []
    return "UP" not in flags


def remove_stale_guards() -> list[str]:
    """Delete guard routes whose /30 no host interface has an address in any more."""
    addr_re = rf"inet ({re.escape(NET_PREFIX)}\.\d+\.\d+)/"
    held = {subnet(m.group(1)) for m in re.finditer(addr_re, run("ip", "-4", "-o", "addr"))}
    removed = []
    for line in run("ip", "-4", "route", "show", "type", "unreachable").splitlines():
        parts = line.split()
        if len(parts) < 2 or not parts[1].startswith(f"{NET_PREFIX}."):
            continue
        if f"metric {GUARD_METRIC}" in line and parts[1] not in held:
            run("ip", "route", "del", *parts, check=False)
            removed.append(parts[1])
    return removed


# --- silent partition: iptables DROP inside the namespace ----------------------------------

_DROP_RULES = (("INPUT", "-i"), ("OUTPUT", "-o"))


def _iptables(ns_path: str, *args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("iptables")
    if binary is None:
        raise RuntimeError("partition() needs iptables (Debian package `iptables`)")
    cmd = ["nsenter", f"--net={ns_path}", binary, "-w", "5", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)


def _drop_rule(chain: str, flag: str) -> list[str]:
    return [chain, "!", flag, "lo", "-j", "DROP"]


def partition(ns_path: str) -> None:
    """Drop every packet in or out of the netns except on `lo` (idempotent)."""
    for chain, flag in _DROP_RULES:
        if _iptables(ns_path, "-C", *_drop_rule(chain, flag)).returncode == 0:
            continue
        res = _iptables(ns_path, "-I", chain, "1", *_drop_rule(chain, flag)[1:])
        if res.returncode != 0:
            raise RuntimeError(f"iptables -I {chain} in {ns_path} failed: {res.stderr.strip()}")


def heal(ns_path: str) -> None:
    """Remove the DROP rules again (all copies; no-op when there are none)."""
    for chain, flag in _DROP_RULES:
        for _attempt in range(10):
            if _iptables(ns_path, "-D", *_drop_rule(chain, flag)).returncode != 0:
                break


def is_partitioned(ns_path: str) -> bool:
    return any(
        _iptables(ns_path, "-C", *_drop_rule(chain, flag)).returncode == 0
        for chain, flag in _DROP_RULES
    )
