"""A loopback HTTP receiver for notifier tests: records every request, answers the status
codes it is told (in order, then a default), optionally slowly."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    """One request as the receiver saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """`with Receiver() as rx:` — listens on 127.0.0.1 (an ephemeral port) until the block ends."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.statuses: deque[int] = deque()
        self.default = 200
        self.delay = 0.0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with receiver._lock:
                    code = receiver.statuses.popleft() if receiver.statuses else receiver.default
                    delay = receiver.delay
                if delay:
                    time.sleep(delay)
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver._lock:
                    receiver.requests.append(
                        Received("POST", self.path, headers, body, code, time.monotonic())
                    )
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if r.path.split("?")[0] == path]

    async def until(self, count: int, path: str | None = None, limit: float = 10) -> list[Received]:
        """Wait (bounded) until `count` requests (to `path`) arrived; returns them."""
        deadline = time.monotonic() + limit
        while True:
            got = self.at(path) if path else list(self.requests)
            if len(got) >= count or time.monotonic() > deadline:
                return got
            await asyncio.sleep(0.05)

    def wait(self, count: int, path: str | None = None, timeout: float = 20) -> list[Received]:
        """The blocking `until`, for sync tests."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.at(path) if path else list(self.requests)
            if len(got) >= count or time.monotonic() > deadline:
                return got
            time.sleep(0.05)
