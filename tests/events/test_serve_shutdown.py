"""`dockfleet serve` stops promptly on SIGTERM even with event streams open (uvicorn waits for
every connection to finish; the streams end themselves on shutdown), in JSON log lines."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.live_server import ROOT, free_port, server_env


@pytest.mark.parametrize(
    "command",
    [["-m", "app", "serve"], ["-m", "uvicorn", "app.main:app_factory", "--factory"]],
    ids=["dockfleet-serve", "uvicorn-factory"],
)
def test_sigterm_ends_open_streams_and_the_server(tmp_path: Path, command: list[str]) -> None:
    port = free_port()
    env = server_env(
        tmp_path / "d.db", {"DOCKFLEET_LOG_FORMAT": "json", "DOCKFLEET_LOG_LEVEL": "info"}
    )
    argv = [sys.executable, *command, "--port", str(port)]
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    ended: list[str] = []

    def hold() -> None:
        url = f"http://127.0.0.1:{port}/api/events/"
        try:
            with httpx.stream("GET", url, timeout=httpx.Timeout(5, read=30)) as response:
                for _ in response.iter_lines():
                    pass
            ended.append("closed by the server")
        except httpx.HTTPError as exc:
            ended.append(type(exc).__name__)

    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        readers = [threading.Thread(target=hold, daemon=True) for _ in range(3)]
        for reader in readers:
            reader.start()
        time.sleep(1.0)
        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        took = time.monotonic() - began
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
    for reader in readers:
        reader.join(5)
    assert took < 5, f"serve took {took:.1f}s to stop with streams open"
    assert ended == ["closed by the server"] * 3
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert any(r["message"] == "Application shutdown complete." for r in lines)
