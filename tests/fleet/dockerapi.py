"""Tiny synchronous Docker Engine API client over a unix socket: ping, remove containers, build.

The busybox image is built FROM scratch with /bin/busybox plus applet symlinks (no RUN step).
"""

from __future__ import annotations

import functools
import http.client
import io
import json
import socket
import subprocess
import tarfile
from urllib.parse import urlencode

IMAGE_TAGS = ("fleet/busybox:latest", "busybox:1.36", "busybox:latest")
BUSYBOX = "/bin/busybox"
_DOCKERFILE = b'FROM scratch\nCOPY bin/ /bin/\nCMD ["/bin/sh"]\n'


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def request(
    sock_path: str,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> tuple[int, bytes]:
    conn = _UnixHTTPConnection(sock_path, timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def ping(sock_path: str) -> bool:
    try:
        status, body = request(sock_path, "GET", "/_ping", timeout=2.0)
    except (OSError, http.client.HTTPException):
        return False
    return status == 200 and body == b"OK"


def remove_all_containers(sock_path: str) -> int:
    status, body = request(sock_path, "GET", "/containers/json?all=1")
    if status != 200:
        raise RuntimeError(f"list containers: {status} {body[:200]!r}")
    ids = [c["Id"] for c in json.loads(body)]
    for cid in ids:
        request(sock_path, "DELETE", f"/containers/{cid}?force=1&v=1")
    return len(ids)


@functools.cache
def busybox_context() -> bytes:
    applets = subprocess.run(
        [BUSYBOX, "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(_DOCKERFILE)
        tar.addfile(info, io.BytesIO(_DOCKERFILE))
        info = tarfile.TarInfo("bin")
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
        with open(BUSYBOX, "rb") as fh:
            data = fh.read()
        info = tarfile.TarInfo("bin/busybox")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
        for name in applets:
            if name == "busybox":
                continue
            info = tarfile.TarInfo(f"bin/{name}")
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, "busybox", 0o777
            tar.addfile(info)
    return buf.getvalue()


def build_busybox(sock_path: str, tags: tuple[str, ...] = IMAGE_TAGS) -> None:
    query = urlencode([*(("t", t) for t in tags), ("rm", "1"), ("forcerm", "1")])
    status, body = request(
        sock_path,
        "POST",
        f"/build?{query}",
        body=busybox_context(),
        headers={"Content-Type": "application/x-tar"},
        timeout=120.0,
    )
    errors = [line for line in body.decode(errors="replace").splitlines() if '"error' in line]
    if status != 200 or errors:
        raise RuntimeError(f"image build failed ({status}): {errors or body[-500:]!r}")
    for tag in tags:
        status, body = request(sock_path, "GET", f"/images/{tag}/json")
        if status != 200:
            raise RuntimeError(f"image {tag} missing after build: {status} {body[:200]!r}")
