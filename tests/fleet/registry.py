"""A minimal Docker Registry HTTP API v2 that serves ONE busybox image, built on the fly.

Pure standard library. Run it inside a daemon's network namespace on 127.0.0.1: dockerd treats
127.0.0.0/8 registries as insecure, so plain HTTP works without any daemon flag.

    with local_registry(fleet.sock) as reg:   # reg.image == "127.0.0.1:<port>/dockfleet/pulled:1"
        ...                                   # reg.manifest_gets: manifest GETs served so far

Served: a gzip'd layer (/bin/busybox + a few applet symlinks), its image config (diff_ids = the
sha256 of the UNcompressed tar) and a schema2 manifest. Endpoints: `GET /v2/`,
`GET|HEAD /v2/<name>/manifests/<tag|digest>`, `GET|HEAD /v2/<name>/blobs/<digest>`; the rest 404.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .daemons import Daemon

BUSYBOX = "/bin/busybox"
APPLETS = ("sh", "echo", "cat", "env", "true")
MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_V1 = "application/vnd.docker.container.image.v1+json"
LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "i386": "386"}
_ROOT = Path(__file__).resolve().parents[2]  # the repo root (for `python -m tests.fleet.registry`)
_EPOCH = 1_700_000_000  # fixed mtimes: the same machine always builds the same digests


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Image:
    manifest: bytes
    manifest_digest: str
    blobs: dict[str, bytes]  # digest -> bytes (the config and the gzip'd layer)


def build_image(busybox: str = BUSYBOX) -> Image:
    """The layer, config and manifest of a FROM-scratch busybox image."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("bin")
        info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, _EPOCH
        tar.addfile(info)
        data = Path(busybox).read_bytes()
        info = tarfile.TarInfo("bin/busybox")
        info.size, info.mode, info.mtime = len(data), 0o755, _EPOCH
        tar.addfile(info, io.BytesIO(data))
        for name in APPLETS:
            info = tarfile.TarInfo(f"bin/{name}")
            info.type, info.linkname, info.mode, info.mtime = (
                tarfile.SYMTYPE,
                "/bin/busybox",
                0o777,
                _EPOCH,
            )
            tar.addfile(info)
    tar_bytes = raw.getvalue()
    layer = gzip.compress(tar_bytes, mtime=0)
    machine = platform.machine()
    config = json.dumps(
        {
            "architecture": _ARCH.get(machine, machine),
            "os": "linux",
            "created": "2023-11-14T22:13:20Z",
            "config": {
                "Cmd": ["/bin/sh"],
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            },
            "rootfs": {"type": "layers", "diff_ids": [_digest(tar_bytes)]},
            "history": [{"created": "2023-11-14T22:13:20Z", "created_by": "dockfleet tests"}],
        },
        sort_keys=True,
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_V2,
            "config": {"mediaType": CONFIG_V1, "size": len(config), "digest": _digest(config)},
            "layers": [{"mediaType": LAYER_GZIP, "size": len(layer), "digest": _digest(layer)}],
        },
        indent=3,
    ).encode()
    return Image(
        manifest=manifest,
        manifest_digest=_digest(manifest),
        blobs={_digest(config): config, _digest(layer): layer},
    )


class Registry(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, name: str, tag: str, state_dir: str, image: Image) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.repo, self.tag, self.image = name, tag, image
        self.state_dir = state_dir
        self.manifest_gets = 0
        self._lock = threading.Lock()

    def count_manifest_get(self) -> None:
        with self._lock:
            self.manifest_gets += 1
            _write_atomic(os.path.join(self.state_dir, "manifest_gets"), str(self.manifest_gets))


class _Handler(BaseHTTPRequestHandler):
    server: Registry
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._serve(head=False)

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_POST(self) -> None:
        self._error(404, "UNSUPPORTED", "this registry is read-only")

    do_PUT = do_PATCH = do_DELETE = do_POST

    def _serve(self, head: bool) -> None:
        srv = self.server
        path = self.path.split("?", 1)[0]
        if path in ("/v2", "/v2/"):
            return self._send(200, b"{}", "application/json", head)
        m = re.fullmatch(r"/v2/(.+)/(manifests|blobs)/([^/]+)", path)
        if m is None:
            return self._error(404, "NOT_FOUND", f"no such endpoint: {path}")
        name, kind, ref = m.groups()
        if name != srv.repo:
            return self._error(404, "NAME_UNKNOWN", f"repository {name} not known")
        if kind == "manifests":
            if ref not in (srv.tag, srv.image.manifest_digest):
                return self._error(404, "MANIFEST_UNKNOWN", f"manifest {ref} not known")
            if not head:
                srv.count_manifest_get()
            digest = srv.image.manifest_digest
            return self._send(200, srv.image.manifest, MANIFEST_V2, head, digest)
        blob = srv.image.blobs.get(ref)
        if blob is None:
            return self._error(404, "BLOB_UNKNOWN", f"blob {ref} not known")
        return self._send(200, blob, "application/octet-stream", head, ref)

    def _error(self, status: int, code: str, message: str) -> None:
        body = json.dumps({"errors": [{"code": code, "message": message, "detail": None}]})
        self._send(status, body.encode(), "application/json", head=self.command == "HEAD")

    def _send(
        self, status: int, body: bytes, ctype: str, head: bool, digest: str | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        if digest:
            self.send_header("Docker-Content-Digest", digest)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        # escaped: dockerd tries TLS first, and the ClientHello lands here as a "request line"
        text = (format % args).encode("unicode_escape").decode("ascii")
        sys.stderr.write(f"{self.log_date_time_string()} {text}\n")
        sys.stderr.flush()


def _write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0: any free port (see --state-dir)")
    parser.add_argument("--name", default="dockfleet/pulled")
    parser.add_argument("--tag", default="1")
    parser.add_argument("--state-dir", required=True, help="gets `port` and `manifest_gets`")
    args = parser.parse_args(argv)
    server = Registry(args.port, args.name, args.tag, args.state_dir, build_image())
    _write_atomic(os.path.join(args.state_dir, "manifest_gets"), "0")
    _write_atomic(os.path.join(args.state_dir, "manifest_digest"), server.image.manifest_digest)
    # listening from here on: the port file doubles as the "ready" signal
    _write_atomic(os.path.join(args.state_dir, "port"), str(server.server_address[1]))
    server.serve_forever()


# --- the test side: run it inside a daemon's network namespace -----------------------------


@dataclass
class RegistryHandle:
    port: int
    name: str
    tag: str
    state_dir: str
    pid: int

    @property
    def image(self) -> str:
        return f"127.0.0.1:{self.port}/{self.name}:{self.tag}"

    @property
    def manifest_gets(self) -> int:
        """How many manifest GETs the registry has served (HEADs not counted)."""
        return int(Path(self.state_dir, "manifest_gets").read_text())

    @property
    def manifest_digest(self) -> str:
        return Path(self.state_dir, "manifest_digest").read_text()

    @property
    def log(self) -> str:
        return Path(self.state_dir, "registry.log").read_text(errors="replace")


@contextmanager
def local_registry(
    daemon: Daemon,
    port: int = 0,
    name: str = "dockfleet/pulled",
    tag: str = "1",
    timeout: float = 20.0,
) -> Iterator[RegistryHandle]:
    """Serve the image on 127.0.0.1:<port> inside `daemon`'s netns; always stopped on exit."""
    state_dir = tempfile.mkdtemp(dir="/tmp", prefix="dflreg-")
    log_path = os.path.join(state_dir, "registry.log")
    argv = [
        "nsenter",
        f"--net=/run/netns/{daemon.netns}",
        sys.executable,
        "-m",
        "tests.fleet.registry",
        f"--port={port}",
        f"--name={name}",
        f"--tag={tag}",
        f"--state-dir={state_dir}",
    ]
    proc: subprocess.Popen | None = None
    try:
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                argv,
                cwd=_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        port_file = Path(state_dir, "port")
        deadline = time.monotonic() + timeout
        while not port_file.exists():
            if proc.poll() is not None:
                raise RuntimeError(
                    f"registry exited with {proc.returncode}: {Path(log_path).read_text()}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"registry not listening in {timeout}s: {Path(log_path).read_text()}"
                )
            time.sleep(0.02)
        yield RegistryHandle(int(port_file.read_text()), name, tag, state_dir, proc.pid)
    finally:
        if proc is not None:  # nsenter exec()s python: this pid IS the server
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
            proc.wait(10)
        shutil.rmtree(state_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
