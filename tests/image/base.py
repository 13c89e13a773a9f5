"""The image's base, made from Debian packages when no image registry can be reached.

`base_tarball()` debootstraps a minimal bookworm with python3, its venv module and CA
certificates (plus this machine's own CAs from /usr/local/share/ca-certificates, so pip in the
build stage trusts what the machine trusts) from the Debian mirror apt already uses, trims
docs, locales and apt's lists, and packs it for `docker import`. The tarball is cached under
.cache/image/ (git-ignored), named by a hash of everything that goes into it, so a rerun skips
the minute of debootstrap.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.fleet.cleanup import mounts_under, umount_under

SUITE = "bookworm"
PACKAGES = ("python3", "python3-venv", "ca-certificates")
FALLBACK_MIRROR = "http://deb.debian.org/debian"
SITE_CAS = Path("/usr/local/share/ca-certificates")
TRIM = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale")
TRIM_CONTENTS = ("var/cache/apt", "var/lib/apt/lists", "var/log", "tmp")
DEBOOTSTRAP_TIMEOUT = 900.0


def debian_mirror(sources: Path = Path("/etc/apt")) -> str:
    """The first Debian mirror apt is configured with for the main archive (deb822 or one-line
    format); deb.debian.org when none is found."""
    deb822 = sorted(sources.glob("sources.list.d/*.sources"))
    texts = [p.read_text(errors="replace") for p in deb822]
    one_line = [sources / "sources.list", *sorted(sources.glob("sources.list.d/*.list"))]
    texts += [p.read_text(errors="replace") for p in one_line if p.is_file()]
    for text in texts:
        for stanza in re.split(r"\n\s*\n", text):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
            suites = re.search(r"^Suites:\s*(.+)$", stanza, re.M)
            if uris and suites and SUITE in suites.group(1).split():
                return uris.group(1).rstrip("/")
        for m in re.finditer(rf"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+{SUITE}\s", text, re.M):
            return m.group(1).rstrip("/")
    return FALLBACK_MIRROR


def _site_cas() -> list[Path]:
    return sorted(SITE_CAS.glob("*.crt")) if SITE_CAS.is_dir() else []


def cache_key(mirror: str) -> str:
    """A hash of the suite, packages, mirror and site CAs: a new one means a new tarball."""
    digest = hashlib.sha256(f"{SUITE} {' '.join(PACKAGES)} {mirror}\n".encode())
    for ca in _site_cas():
        digest.update(ca.name.encode() + b"\0" + ca.read_bytes())
    digest.update(Path(__file__).read_bytes())  # how it is made is part of what it is
    return digest.hexdigest()[:16]


def _debootstrap(root: Path, mirror: str, log: Path) -> None:
    argv = ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}"]
    argv += [SUITE, str(root), mirror]
    with log.open("wb") as out:
        done = subprocess.run(
            argv, stdout=out, stderr=subprocess.STDOUT, timeout=DEBOOTSTRAP_TIMEOUT, check=False
        )
    if done.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise RuntimeError(f"debootstrap failed ({done.returncode}):\n" + "\n".join(tail))


def _finish(root: Path) -> None:
    cas = _site_cas()
    for ca in cas:
        shutil.copy(ca, root / "usr/local/share/ca-certificates" / ca.name)
    if cas:
        subprocess.run(
            ["chroot", str(root), "update-ca-certificates"],
            capture_output=True,
            timeout=120,
            check=True,
        )
    for rel in TRIM:
        shutil.rmtree(root / rel, ignore_errors=True)
    for rel in TRIM_CONTENTS:
        for child in (root / rel).glob("*"):
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
    (root / "etc/hostname").write_text("dockfleet\n")


def base_tarball(cache: Path) -> tuple[Path, bool]:
    """The cached tarball of the base (made first when missing); -> (path, made_now)."""
    mirror = debian_mirror()
    cache.mkdir(parents=True, exist_ok=True)
    tarball = cache / f"base-{SUITE}-{cache_key(mirror)}.tar"
    with (cache / "base.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two image tests at once make it once
        if tarball.is_file():
            return tarball, False
        work = Path(tempfile.mkdtemp(prefix="dfl-base-", dir=cache))
        try:
            root = work / "root"
            _debootstrap(root, mirror, cache / "debootstrap.log")
            _finish(root)
            partial = work / "base.tar"
            subprocess.run(
                ["tar", "-C", str(root), "--numeric-owner", "-cf", str(partial), "."],
                capture_output=True,
                timeout=300,
                check=True,
            )
            for old in cache.glob(f"base-{SUITE}-*.tar"):
                old.unlink()
            os.replace(partial, tarball)
        finally:
            errors: list[str] = []
            umount_under(str(work), errors)  # /proc and /sys of a debootstrap that failed
            if not mounts_under(str(work)):
                shutil.rmtree(work, ignore_errors=True)
        return tarball, True
