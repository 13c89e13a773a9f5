"""Teardown of one fleet run (by suffix) and removal of leftovers from crashed runs.

Run ownership lives in /run/dfl-fleet/<suffix>.json, so concurrent live sessions are never touched.
`destroy(suffix, base, name)` removes just one daemon of a run (`Fleet.remove_daemon`).
Small tmpfs mounts of the database faults live at /tmp/dflfs-<pid>-<pid start time>-<random>:
their owner is in the name, and `cleanup_leftovers()` unmounts those whose owner is gone.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import time

from .netns import remove_stale_guards
from .procs import (
    alive,
    kill_all,
    pids_in_cgroups,
    pids_in_netns,
    pids_with_cmdline,
    run,
    start_time,
)

REGISTRY = "/run/dfl-fleet"
NETNS_DIR = "/run/netns"
_NS_RE = re.compile(r"^dfl-[a-z]+-([0-9a-f]{4})$")  # netns and cgroup names: dfl-<name>-<suffix>
_LINK_RE = re.compile(r"^dfl-([0-9a-f]{4})-[a-z]+$")  # host veth ends: dfl-<suffix>-<name>
_BASE_RE = re.compile(r"^dfl-([0-9a-f]{4})-")  # base dirs: /tmp/dfl-<suffix>-<random>
_TMPFS_RE = re.compile(r"^dflfs-(\d+)-(\d+)-")  # tmpfs mounts: /tmp/dflfs-<pid>-<start>-<random>


def tmpfs_prefix() -> str:
    """Name prefix for a tmpfs mount dir owned by this process (see the module docstring)."""
    me = os.getpid()
    return f"dflfs-{me}-{start_time(me)}-"


def remove_tmpfs(path: str, errors: list[str]) -> None:
    """Unmount (lazily if busy) and remove one tmpfs mount dir."""
    umount_under(path, errors)
    if not mounts_under(path):
        shutil.rmtree(path, ignore_errors=True)


def sweep_tmpfs_leftovers() -> list[str]:
    """Unmount and remove tmpfs mount dirs whose owning process is gone."""
    removed = []
    for path in glob.glob("/tmp/dflfs-*"):
        m = _TMPFS_RE.match(os.path.basename(path))
        if m and not alive(int(m.group(1)), m.group(2)):
            remove_tmpfs(path, [])
            removed.append(path)
    return removed


def register(suffix: str, base: str | None) -> None:
    os.makedirs(REGISTRY, exist_ok=True)
    me = os.getpid()
    with open(os.path.join(REGISTRY, f"{suffix}.json"), "w") as fh:
        json.dump({"pid": me, "start": start_time(me), "base": base}, fh)


def _registration(suffix: str) -> dict:
    try:
        with open(os.path.join(REGISTRY, f"{suffix}.json")) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return {}


def suffix_in_use(suffix: str) -> bool:
    reg = _registration(suffix)
    return bool(reg) and alive(reg["pid"], reg.get("start"))


def _netns_names(suffix: str | None = None) -> list[str]:
    names = os.listdir(NETNS_DIR) if os.path.isdir(NETNS_DIR) else []
    return [n for n in names if (m := _NS_RE.match(n)) and suffix in (None, m.group(1))]


def _cgroup_dirs(suffix: str | None = None) -> list[str]:
    found = glob.glob("/sys/fs/cgroup/*/dfl-*") + glob.glob("/sys/fs/cgroup/dfl-*")
    out = []
    for path in found:
        m = _NS_RE.match(os.path.basename(path))
        if m and os.path.isdir(path) and suffix in (None, m.group(1)):
            out.append(path)
    return out


def _host_links(suffix: str | None = None) -> list[str]:
    out = []
    for line in run("ip", "-o", "link", "show", check=False).splitlines():
        parts = line.split(":", 2)
        name = parts[1].strip().split("@")[0] if len(parts) > 2 else ""
        if (m := _LINK_RE.match(name)) and suffix in (None, m.group(1)):
            out.append(name)
    return out


def mounts_under(base: str) -> list[str]:
    """Mount points at or below base, deepest first (from /proc/self/mountinfo)."""
    base = base.rstrip("/")
    points = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            point = line.split()[4]
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), point)
            if point == base or point.startswith(base + "/"):
                points.append(point)
    return sorted(set(points), key=lambda p: (p.count("/"), len(p)), reverse=True)


def umount_under(base: str, errors: list[str]) -> None:
    for _attempt in range(3):
        points = mounts_under(base)
        if not points:
            return
        for point in points:
            run("umount", point, check=False, timeout=30)
            if point in mounts_under(base):
                run("umount", "-l", point, check=False, timeout=30)
    if points := mounts_under(base):
        errors.append(f"still mounted: {points}")


def _rmdir_tree(top: str, errors: list[str]) -> None:
    for _attempt in range(50):
        for dirpath, _dirs, _files in os.walk(top, topdown=False):
            try:
                os.rmdir(dirpath)
            except OSError:
                pass
        if not os.path.exists(top):
            return
        time.sleep(0.1)
    errors.append(f"cgroup dir not removable: {top}")


def destroy(suffix: str, base: str | None, name: str | None = None) -> list[str]:
    """Remove everything of run `suffix`: processes, mounts, cgroups, netns, veths, base dir.

    With `name`, only that daemon's: its netns, cgroup, veth and `<base>/<name>`.
    """
    errors: list[str] = []
    netns = _netns_names(suffix)
    cgroups = _cgroup_dirs(suffix)
    links = _host_links(suffix)
    if name is not None:
        netns = [n for n in netns if n == f"dfl-{name}-{suffix}"]
        cgroups = [c for c in cgroups if os.path.basename(c) == f"dfl-{name}-{suffix}"]
        links = [link for link in links if link == f"dfl-{suffix}-{name}"]
        base = os.path.join(base, name) if base else None
    kill_all(pids_in_cgroups(cgroups), timeout=0)  # container processes: PID 1s ignore SIGTERM
    pids = set(pids_in_netns(os.path.join(NETNS_DIR, n) for n in netns))
    if base:
        pids |= set(pids_with_cmdline(base.rstrip("/") + "/"))
    kill_all(pids)
    if base and os.path.isdir(base):
        umount_under(base, errors)
    for path in cgroups:
        kill_all(pids_in_cgroups([path]), timeout=0)
        _rmdir_tree(path, errors)
    for ns_name in netns:
        run("ip", "netns", "del", ns_name, check=False)
    for link in links:
        run("ip", "link", "del", link, check=False)
    remove_stale_guards()  # unreachable routes a link_down() left behind
    if base and os.path.isdir(base):
        if mounts_under(base):
            errors.append(f"not removing {base}: still has mounts")
        else:
            shutil.rmtree(base, ignore_errors=True)
            if os.path.exists(base):
                errors.append(f"could not remove {base}")
    if name is None:
        try:
            os.unlink(os.path.join(REGISTRY, f"{suffix}.json"))
        except FileNotFoundError:
            pass
    return errors


def cleanup_leftovers() -> list[str]:
    """Destroy leftovers of runs whose owning process is gone; returns their suffixes."""
    sweep_tmpfs_leftovers()
    bases: dict[str, set[str]] = {}
    for path in glob.glob("/tmp/dfl-*"):
        if (m := _BASE_RE.match(os.path.basename(path))) and os.path.isdir(path):
            bases.setdefault(m.group(1), set()).add(path)
    names = [*_netns_names(), *(os.path.basename(d) for d in _cgroup_dirs())]
    suffixes = set(bases) | {m.group(1) for n in names if (m := _NS_RE.match(n))}
    suffixes |= {m.group(1) for n in _host_links() if (m := _LINK_RE.match(n))}
    if os.path.isdir(REGISTRY):
        suffixes |= {f[:-5] for f in os.listdir(REGISTRY) if f.endswith(".json")}
    removed = []
    for suffix in sorted(suffixes):
        if suffix_in_use(suffix):
            continue
        reg_base = _registration(suffix).get("base")
        targets = bases.get(suffix, set()) | ({reg_base} if reg_base else set())
        for base in sorted(targets) or [None]:
            destroy(suffix, base)
        removed.append(suffix)
    return removed
