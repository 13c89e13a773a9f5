"""Process helpers for the fleet: run commands, and find/kill processes by cmdline, netns or cgroup.

Everything works on explicit pids read from /proc; nothing is matched by program name.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterable


def run(*cmd: str, check: bool = True, timeout: float = 60.0) -> str:
    """Run a command, return stdout; raise RuntimeError with stderr on failure."""
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if check and res.returncode != 0:
        msg = (res.stderr or res.stdout).strip()
        raise RuntimeError(f"{' '.join(cmd)} failed ({res.returncode}): {msg}")
    return res.stdout


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            data = fh.read()
    except OSError:
        return None
    return data.rsplit(")", 1)[1].split()  # fields from #3 (state) on


def start_time(pid: int) -> str | None:
    """Kernel start time of pid (to tell a live owner from a recycled pid)."""
    fields = _stat_fields(pid)
    return fields[19] if fields else None


def alive(pid: int, started: str | None = None) -> bool:
    fields = _stat_fields(pid)
    if not fields or fields[0] in ("Z", "X"):
        return False
    return started is None or fields[19] == started


def _all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _protected() -> set[int]:
    """Our own pid and its ancestors: never signalled."""
    pids, pid = set(), os.getpid()
    while pid > 1:
        pids.add(pid)
        fields = _stat_fields(pid)
        pid = int(fields[1]) if fields else 0
    return pids | {1}


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid in _all_pids():
        fields = _stat_fields(pid)
        if fields:
            children.setdefault(int(fields[1]), []).append(pid)
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def pids_with_cmdline(fragment: str) -> list[int]:
    needle = fragment.encode()
    out = []
    for pid in _all_pids():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if needle in fh.read().replace(b"\0", b" "):
                    out.append(pid)
        except OSError:
            pass
    return out


def pids_in_netns(ns_paths: Iterable[str]) -> list[int]:
    keys = set()
    for path in ns_paths:
        try:
            st = os.stat(path)
        except OSError:
            continue
        keys.add((st.st_dev, st.st_ino))
    if not keys:
        return []
    out = []
    for pid in _all_pids():
        try:
            st = os.stat(f"/proc/{pid}/ns/net")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in keys:
            out.append(pid)
    return out


def pids_in_cgroups(dirs: Iterable[str]) -> list[int]:
    out: set[int] = set()
    for top in dirs:
        for dirpath, _dirs, files in os.walk(top):
            if "cgroup.procs" in files:
                try:
                    with open(os.path.join(dirpath, "cgroup.procs")) as fh:
                        out.update(int(x) for x in fh.read().split())
                except OSError:
                    pass
    return sorted(out)


def kill_all(pids: Iterable[int], timeout: float = 5.0) -> None:
    """SIGTERM the given pids, SIGKILL whatever is still alive after `timeout`."""
    targets = {p: start_time(p) for p in set(pids) - _protected()}
    targets = {p: st for p, st in targets.items() if st is not None}
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        for pid, started in targets.items():
            if alive(pid, started):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            targets = {p: st for p, st in targets.items() if alive(p, st)}
            if not targets:
                return
            time.sleep(0.05)


def stop_popen(proc: subprocess.Popen | None, timeout: float) -> None:
    """SIGTERM a child we started, SIGKILL after timeout, and always reap it."""
    if proc is None:
        return
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    proc.wait(10)
