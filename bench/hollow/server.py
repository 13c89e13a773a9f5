"""The Engine API of the hollow daemons: one aiohttp low-level server per unix socket.

Every socket is a separate simulated host; all of them share one process and one event loop.
Paths are answered versioned (`/v1.41/containers/json`) and unversioned, as Docker does.
`/_hollow/...` is the control API (stats, reset, settings); it is answered without latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import re
import struct
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from bench.hollow.engine import (
    API_VERSION,
    ENGINE_VERSION,
    FILTERS,
    MIN_API_VERSION,
    ApiError,
    Engine,
    Host,
    NotModified,
    Settings,
    image_id,
    normalise_image,
    rfc3339,
)

JSON = "application/json"
RAW_STREAM = "application/vnd.docker.raw-stream"
_VERSIONED = re.compile(r"^/v(\d+)\.(\d+)(/.*)?$")
_COMMON = {
    "Api-Version": API_VERSION,
    "Docker-Experimental": "false",
    "Ostype": "linux",
    "Server": f"Docker/{ENGINE_VERSION} (linux)",
}
_VERSION = {
    "Platform": {"Name": "Docker Engine - hollow"},
    "Components": [
        {
            "Name": "Engine",
            "Version": ENGINE_VERSION,
            "Details": {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION},
        }
    ],
    "Version": ENGINE_VERSION,
    "ApiVersion": API_VERSION,
    "MinAPIVersion": MIN_API_VERSION,
    "GitCommit": "hollow",
    "GoVersion": "go1.20",
    "Os": "linux",
    "Arch": "amd64",
    "KernelVersion": os.uname().release,
    "BuildTime": "2024-01-01T00:00:00.000000000+00:00",
}


def _json(data: Any, status: int = 200) -> web.Response:
    # Exactly "application/json": aiodocker reads an error's message only then.
    body = json.dumps(data).encode()
    return web.Response(status=status, body=body, headers={**_COMMON, "Content-Type": JSON})


def _empty(status: int) -> web.Response:
    return web.Response(status=status, headers=_COMMON)


def _bool(query: Any, key: str, default: bool = False) -> bool:
    """Docker's BoolValue: "", 0, no, false, none are false; anything else is true."""
    value = query.get(key)
    if value is None:
        return default
    return value.strip().lower() not in ("", "0", "no", "false", "none")


def _filters(raw: str | None, allowed: tuple[str, ...]) -> dict[str, list[str]]:
    """`{"label": ["a=b"]}` or the older `{"label": {"a=b": true}}`."""
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ApiError(400, f"invalid filter: {exc}") from exc
    if not isinstance(data, dict):
        raise ApiError(400, "invalid filter: not an object")
    out: dict[str, list[str]] = {}
    for key, value in data.items():
        if key not in allowed:
            raise ApiError(400, f"invalid filter '{key}'")
        if isinstance(value, dict):
            out[key] = [str(k) for k, on in value.items() if on]
        elif isinstance(value, list):
            out[key] = [str(v) for v in value]
        else:
            out[key] = [str(value)]
    return out


def _seconds(value: str | None) -> float:
    if not value:
        return 0.0
    try:
        return float(value)
    except ValueError as exc:
        raise ApiError(400, f"invalid time value {value!r}") from exc


class HollowServer:
    """Binds one unix socket per host in `directory` and answers on all of them."""

    def __init__(self, engine: Engine, directory: str | Path) -> None:
        self.engine = engine
        self.directory = Path(directory)
        self._servers: list[tuple[asyncio.AbstractServer, web.Server]] = []

    @property
    def settings(self) -> Settings:
        return self.engine.settings

    async def start(self, hosts: int, prefix: str = "h", backlog: int = 256) -> list[str]:
        """Create `hosts` sockets (`<dir>/h0000.sock`, …); their paths."""
        self.directory.mkdir(parents=True, exist_ok=True)
        width = max(4, len(str(hosts - 1)))
        loop = asyncio.get_running_loop()
        paths = []
        for i in range(hosts):
            name = f"{prefix}{i:0{width}d}"
            path = str(self.directory / f"{name}.sock")
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # a stale socket of an earlier run
            host = self.engine.add_host(name, path)
            handler = functools.partial(self.handle, host)
            web_server = web.Server(handler, handler_cancellation=True, access_log=None)
            server = await loop.create_unix_server(web_server, path, backlog=backlog)
            self._servers.append((server, web_server))
            paths.append(path)
        return paths

    async def close(self) -> None:
        """Stop listening, end open connections (and long polls), remove the sockets."""
        for server, _ in self._servers:
            server.close()
        for server, web_server in self._servers:
            await server.wait_closed()
            await web_server.shutdown(0.5)
        for host in self.engine.hosts:
            for c in host.containers.values():
                c.cancel_timers()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(host.path)
        self._servers.clear()

    # -- dispatch ------------------------------------------------------------------------------

    async def handle(self, host: Host, request: web.BaseRequest) -> web.StreamResponse:
        path = request.path
        version: tuple[int, int] | None = None
        match = _VERSIONED.match(path)
        if match:
            version = (int(match[1]), int(match[2]))
            path = match[3] or "/"
        if path.startswith("/_hollow/"):
            try:
                return await self.control(host, request, path)
            except ApiError as exc:
                return _json({"message": exc.message}, exc.status)
        host.requests += 1
        try:
            if version is not None:
                if version > (1, 41):
                    raise ApiError(
                        400,
                        f"client version {version[0]}.{version[1]} is too new. "
                        f"Maximum supported API version is {API_VERSION}",
                    )
                if version < (1, 12):
                    raise ApiError(
                        400,
                        f"client version {version[0]}.{version[1]} is too old. "
                        f"Minimum supported API version is {MIN_API_VERSION}, please upgrade "
                        "your client to a newer version",
                    )
            if self.settings.latency_s > 0:
                await asyncio.sleep(self.settings.latency_s)
            return await self.route(host, request, path)
        except ApiError as exc:
            return _json({"message": exc.message}, exc.status)
        except NotModified:
            return _empty(304)

    def _count(self, key: str) -> None:
        self.engine.calls[key] += 1

    async def route(self, host: Host, request: web.BaseRequest, path: str) -> web.StreamResponse:
        method = request.method
        parts = path.strip("/").split("/")
        head = parts[0]
        n = len(parts)
        if head == "_ping" and n == 1 and method in ("GET", "HEAD"):
            self._count(f"{method} /_ping")
            headers = {**_COMMON, "Content-Type": "text/plain; charset=utf-8"}
            headers["Cache-Control"] = "no-cache, no-store, must-revalidate"
            return web.Response(body=b"OK" if method == "GET" else None, headers=headers)
        if head == "version" and n == 1 and method == "GET":
            self._count("GET /version")
            return _json(_VERSION)
        if head == "info" and n == 1 and method == "GET":
            self._count("GET /info")
            return _json(self._info(host))
        if head == "events" and n == 1 and method == "GET":
            self._count("GET /events")
            return await self._events(host, request)
        if head == "images":
            return await self._images(host, request, parts)
        if head == "containers" and n >= 2:
            return await self._containers(host, request, parts)
        raise ApiError(404, "page not found")

    # -- system --------------------------------------------------------------------------------

    def _info(self, host: Host) -> dict[str, Any]:
        s = self.settings
        total = len(host.containers)
        stopped = sum(1 for c in host.containers.values() if c.status == "exited")
        return {
            "ID": f"HOLLOW:{host.index:08d}",
            "Containers": total,
            "ContainersRunning": host.running,
            "ContainersPaused": 0,
            "ContainersStopped": stopped,
            "Images": len(host.images()),
            "Driver": "hollow",
            "NCPU": s.ncpu,
            "MemTotal": s.mem_total,
            "Name": host.name,
            "ServerVersion": ENGINE_VERSION,
            "SystemTime": rfc3339(time.time_ns()),
            "DockerRootDir": "/var/lib/docker",
            "OperatingSystem": "hollow",
            "OSType": "linux",
            "Architecture": "x86_64",
            "KernelVersion": _VERSION["KernelVersion"],
            "Runtimes": {r: {"path": r} for r in s.runtimes},
            "DefaultRuntime": "runc",
            "Labels": [],
            "ExperimentalBuild": False,
            "Swarm": {"LocalNodeState": "inactive"},
        }

    async def _events(self, host: Host, request: web.BaseRequest) -> web.StreamResponse:
        allowed = ("type", "event", "label", "container")
        filters = _filters(request.query.get("filters"), allowed)
        until = _seconds(request.query.get("until"))
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        entry = (queue, filters)
        resp = web.StreamResponse(headers={**_COMMON, "Content-Type": JSON})
        await resp.prepare(request)
        host.subscribers.append(entry)
        try:
            while True:
                timeout = until - time.time() if until else None
                if timeout is not None and timeout <= 0:
                    break
                try:
                    async with asyncio.timeout(timeout):
                        event = await queue.get()
                except TimeoutError:
                    break
                await resp.write(json.dumps(event).encode() + b"\n")
        finally:
            host.subscribers.remove(entry)
        await resp.write_eof()
        return resp

    # -- images --------------------------------------------------------------------------------

    async def _images(
        self, host: Host, request: web.BaseRequest, parts: list[str]
    ) -> web.StreamResponse:
        method = request.method
        if parts == ["images", "json"] and method == "GET":
            self._count("GET /images/json")
            return _json([self._image(ref, summary=True) for ref in host.images()])
        if parts == ["images", "create"] and method == "POST":
            self._count("POST /images/create")
            return await self._pull(host, request)
        if len(parts) >= 3 and parts[-1] == "json" and method == "GET":
            self._count("GET /images/{name}/json")
            name = "/".join(parts[1:-1])
            if name.startswith("sha256:"):
                found = next((r for r in host.images() if image_id(r) == name), None)
                if found:
                    return _json(self._image(found))
            elif host.has_image(name):
                return _json(self._image(normalise_image(name)))
            raise ApiError(404, f"No such image: {name}")
        raise ApiError(404, "page not found")

    @staticmethod
    def _image(ref: str, summary: bool = False) -> dict[str, Any]:
        if summary:
            return {
                "Id": image_id(ref),
                "ParentId": "",
                "RepoTags": [ref],
                "RepoDigests": [],
                "Created": 1704067200,
                "Size": 4_500_000,
                "SharedSize": -1,
                "Labels": None,
                "Containers": -1,
            }
        return {
            "Id": image_id(ref),
            "RepoTags": [ref],
            "RepoDigests": [],
            "Parent": "",
            "Created": "2024-01-01T00:00:00.000000000Z",
            "Architecture": "amd64",
            "Os": "linux",
            "Size": 4_500_000,
            "Config": {"Cmd": ["sh"], "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/bin"]},
            "RootFS": {"Type": "layers", "Layers": []},
        }

    async def _pull(self, host: Host, request: web.BaseRequest) -> web.StreamResponse:
        from_image = request.query.get("fromImage") or ""
        tag = request.query.get("tag") or ""
        if not from_image:
            raise ApiError(400, "hollow: only fromImage pulls are supported")
        ref = from_image
        if tag and "@" not in ref and ":" not in ref.rsplit("/", 1)[-1]:
            ref = f"{ref}@{tag}" if tag.startswith("sha256:") else f"{ref}:{tag}"
        ref = normalise_image(ref)
        repo = ref.rsplit("@", 1)[0].rsplit(":", 1)[0] if "@" in ref else ref.rsplit(":", 1)[0]
        present = host.has_image(ref)
        if not present and not self.settings.pull:
            raise ApiError(
                404,
                f"pull access denied for {repo}, repository does not exist or may require "
                "'docker login': denied: requested access to the resource is denied",
            )
        resp = web.StreamResponse(headers={**_COMMON, "Content-Type": JSON})
        await resp.prepare(request)
        tag_shown = ref.rsplit(":", 1)[-1] if "@" not in ref else ref.rsplit("@", 1)[-1]
        lines: list[dict[str, Any]] = [{"status": f"Pulling from {repo}", "id": tag_shown}]
        if present:
            lines.append({"status": f"Status: Image is up to date for {ref}"})
        else:
            layer = image_id(ref)[7:19]
            lines += [
                {"status": "Pulling fs layer", "progressDetail": {}, "id": layer},
                {"status": "Download complete", "progressDetail": {}, "id": layer},
                {"status": "Pull complete", "progressDetail": {}, "id": layer},
                {"status": f"Digest: {image_id(ref)}"},
                {"status": f"Status: Downloaded newer image for {ref}"},
            ]
        for i, line in enumerate(lines):
            if i == 1 and not present and self.settings.pull_s > 0:
                await asyncio.sleep(self.settings.pull_s)
            await resp.write(json.dumps(line).encode() + b"\r\n")
        if not present:
            host.pulled.add(ref)
            host.pulls += 1
        await resp.write_eof()
        return resp

    # -- containers ----------------------------------------------------------------------------

    async def _containers(
        self, host: Host, request: web.BaseRequest, parts: list[str]
    ) -> web.StreamResponse:
        method = request.method
        q = request.query
        if len(parts) == 2:
            what = parts[1]
            if what == "json" and method == "GET":
                self._count("GET /containers/json")
                filters = _filters(q.get("filters"), FILTERS)
                limit = int(q.get("limit") or -1)
                all_ = _bool(q, "all") or limit > 0
                items = host.list(all_, filters, limit if limit > 0 else None)
                return _json(items)
            if what == "create" and method == "POST":
                self._count("POST /containers/create")
                try:
                    body = json.loads(await request.read() or b"{}")
                except ValueError as exc:
                    raise ApiError(400, f"invalid JSON: {exc}") from exc
                if not isinstance(body, dict):
                    raise ApiError(400, "invalid JSON: not an object")
                c = host.create(q.get("name"), body)
                return _json({"Id": c.id, "Warnings": []}, 201)
            if method == "DELETE":
                self._count("DELETE /containers/{id}")
                host.remove(host.lookup(what), force=_bool(q, "force"))
                return _empty(204)
            raise ApiError(404, "page not found")
        if len(parts) != 3:
            raise ApiError(404, "page not found")
        ref, action = parts[1], parts[2]
        if action == "json" and method == "GET":
            self._count("GET /containers/{id}/json")
            return _json(host.lookup(ref).inspect())
        if action == "logs" and method == "GET":
            self._count("GET /containers/{id}/logs")
            return await self._logs(host.lookup(ref), request)
        if method != "POST":
            raise ApiError(404, "page not found")
        if action == "start":
            self._count("POST /containers/{id}/start")
            host.start(host.lookup(ref))
            return _empty(204)
        if action == "wait":
            self._count("POST /containers/{id}/wait")
            c = host.lookup(ref)
            condition = q.get("condition") or "not-running"
            if condition not in ("not-running", "next-exit", "removed"):
                raise ApiError(400, f"invalid condition: {condition!r}")
            # Docker sends the headers at once (the wait is registered), the body at the exit.
            resp = web.StreamResponse(headers={**_COMMON, "Content-Type": JSON})
            await resp.prepare(request)
            code = await host.wait(c, condition)
            await resp.write(json.dumps({"StatusCode": code, "Error": None}).encode() + b"\n")
            await resp.write_eof()
            return resp
        if action == "stop":
            self._count("POST /containers/{id}/stop")
            grace = float(q.get("t") or 10)
            await host.stop(host.lookup(ref), grace, q.get("signal"))
            return _empty(204)
        if action == "kill":
            self._count("POST /containers/{id}/kill")
            host.kill(host.lookup(ref), q.get("signal"))
            return _empty(204)
        if action == "restart":
            self._count("POST /containers/{id}/restart")
            c = host.lookup(ref)
            if c.running:
                await host.stop(c, float(q.get("t") or 10), q.get("signal"))
            host.start(c)
            return _empty(204)
        raise ApiError(404, "page not found")

    async def _logs(self, c: Any, request: web.BaseRequest) -> web.StreamResponse:
        q = request.query
        streams = {1} if _bool(q, "stdout") else set()
        if _bool(q, "stderr"):
            streams.add(2)
        if not streams:
            raise ApiError(400, "Bad parameters: you must choose at least one stream")
        follow = _bool(q, "follow") and c.running  # Docker follows only a running container
        stamps = _bool(q, "timestamps")
        since, until = _seconds(q.get("since")), _seconds(q.get("until"))
        try:
            tail = int(q.get("tail") or "all")
        except ValueError:
            tail = -1

        def encode(frames: list[tuple[int, int, bytes]]) -> bytes:
            out = []
            for stream, ns, line in frames:
                if stream not in streams:
                    continue
                if since and ns / 1e9 < since:
                    continue
                if until and ns / 1e9 > until:
                    continue
                data = (rfc3339(ns).encode() + b" " + line) if stamps else line
                out.append(data if c.tty else struct.pack(">BxxxL", stream, len(data)) + data)
            return b"".join(out)

        frames = [f for f in c.frames if f[0] in streams]
        if tail >= 0:
            frames = frames[-tail:] if tail else []
        headers = {**_COMMON, "Content-Type": RAW_STREAM}
        if not follow:
            return web.Response(body=encode(frames), headers=headers)
        resp = web.StreamResponse(headers=headers)
        await resp.prepare(request)
        await resp.write(encode(frames))
        seen = len(c.frames)
        while c.running and not c.removed:
            await c.changed()
            new, seen = c.frames[seen:], len(c.frames)
            if new:
                await resp.write(encode(new))
        await resp.write_eof()
        return resp

    # -- control -------------------------------------------------------------------------------

    async def control(self, host: Host, request: web.BaseRequest, path: str) -> web.Response:
        method = request.method
        if path == "/_hollow/stats" and method == "GET":
            return _json(self.engine.stats(per_host=_bool(request.query, "hosts", True)))
        if path == "/_hollow/host" and method == "GET":
            return _json(host.stats())
        if path == "/_hollow/reset" and method == "POST":
            self.engine.reset(containers=_bool(request.query, "containers"))
            return _json({"reset": True})
        if path == "/_hollow/config":
            if method == "POST":
                body = json.loads(await request.read() or b"{}")
                self.settings.update(body)
            return _json(self.settings.as_dict())
        raise ApiError(404, "hollow: no such control endpoint")
