"""Database faults for SQLite: a write lock held by another connection, and a full filesystem.

    with hold_sqlite_write_lock(db_path, seconds=30):   # no root needed
        ...   # other writers wait busy_timeout, then "database is locked"; readers still read

    with full_tmpfs(size_mb=4) as fs:                   # root: mounts a tmpfs of its own
        db = os.path.join(fs.path, "db.sqlite")         # put the database there
        fs.fill()   # writes now fail: "database or disk is full" (reads still work)
        fs.free()   # and work again

The lock is `BEGIN IMMEDIATE` (or EXCLUSIVE) in a thread with its own sqlite3 connection, held
until the block ends or `seconds` pass. The tmpfs lives at /tmp/dflfs-<pid>-<start>-<random>
(owner in the name: `cleanup_leftovers()` unmounts it if this process dies) and is unmounted
(lazily if busy) on exit.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from .cleanup import remove_tmpfs, sweep_tmpfs_leftovers, tmpfs_prefix
from .procs import run


@dataclass
class HeldLock:
    """Handle on a held SQLite write lock."""

    path: str
    mode: str  # IMMEDIATE or EXCLUSIVE
    _release: threading.Event = field(default_factory=threading.Event, repr=False)
    released: threading.Event = field(default_factory=threading.Event, repr=False)

    def release(self) -> None:
        """Give the lock back now (the block's exit does the same)."""
        self._release.set()

    @property
    def held(self) -> bool:
        return not self.released.is_set()


def _hold(lock: HeldLock, seconds: float, acquired: threading.Event, errors: list[str]) -> None:
    conn = sqlite3.connect(lock.path, timeout=10, isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"BEGIN {lock.mode}")
        acquired.set()
        lock._release.wait(seconds)
        conn.execute("ROLLBACK")
    except sqlite3.Error as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        conn.close()
        lock.released.set()
        acquired.set()


@contextmanager
def hold_sqlite_write_lock(
    path: str | os.PathLike[str], seconds: float = 60.0, *, exclusive: bool = False
) -> Iterator[HeldLock]:
    """Hold the database's write lock (another connection) until exit or `seconds` pass.

    IMMEDIATE (default): other writers are locked out, readers still read (also in WAL mode).
    `exclusive=True`: BEGIN EXCLUSIVE, which in rollback-journal mode also locks out readers.
    """
    lock = HeldLock(os.fspath(path), "EXCLUSIVE" if exclusive else "IMMEDIATE")
    acquired, errors = threading.Event(), list[str]()
    thread = threading.Thread(
        target=_hold, args=(lock, seconds, acquired, errors), name="sqlite-lock", daemon=True
    )
    thread.start()
    try:
        if not acquired.wait(15) or errors:
            raise RuntimeError(f"could not take the write lock on {lock.path}: {errors}")
        yield lock
    finally:
        lock.release()
        thread.join(15)
        if thread.is_alive():
            raise RuntimeError(f"the lock holder of {lock.path} did not finish")


@dataclass
class Tmpfs:
    """A small tmpfs of our own; `fill()` uses up every byte, `free()` gives the space back."""

    path: str
    size_mb: int

    @property
    def filler(self) -> str:
        return os.path.join(self.path, ".filler")

    @property
    def free_bytes(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def fill(self) -> int:
        """Write a filler file until ENOSPC (down to the last byte); returns bytes written."""
        written = 0
        with open(self.filler, "ab", buffering=0) as fh:
            for size in (1 << 20, 1 << 16, 4096, 512, 1):
                chunk = b"\0" * size
                while True:
                    try:
                        n = fh.write(chunk)
                    except OSError as exc:
                        if exc.errno != errno.ENOSPC:
                            raise
                        break
                    written += n or 0
                    if not n or n < size:
                        break
        return written

    def free(self) -> None:
        """Remove the filler file (no-op when there is none)."""
        try:
            os.unlink(self.filler)
        except FileNotFoundError:
            pass


@contextmanager
def full_tmpfs(size_mb: int = 4) -> Iterator[Tmpfs]:
    """Mount a `size_mb` tmpfs (root) in a new dir under /tmp; unmounted and removed on exit.

    Named for its use: call `.fill()` to make it full (it starts empty).
    """
    if os.geteuid() != 0:
        raise PermissionError("full_tmpfs() mounts a tmpfs: needs root")
    sweep_tmpfs_leftovers()
    path = tempfile.mkdtemp(dir="/tmp", prefix=tmpfs_prefix())
    try:
        run("mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", "dflfs", path)
        yield Tmpfs(path, size_mb)
    finally:
        errors: list[str] = []
        remove_tmpfs(path, errors)
        if errors or os.path.exists(path):
            raise RuntimeError(f"tmpfs {path} not removed: {errors}")
