"""`make image-test`: the service image, built and run with no image registry in reach.

The base is made from Debian packages (tests/image/base.py, cached), imported into a build
dockerd of the fleet (tests/image/builder.py), and the Dockerfile built on it (its build stage
installs the pinned requirements from PyPI). The container then runs as a user would run it:
non-root, the socket of a fleet daemon mounted with `--group-add` of the socket's gid, the
token from an env file, SQLite on a volume. A run is launched through its API, and the fleet
daemon's own event log must show the task container created, started and exited 0 there.
Timings and the image size are printed and written to .ci/artifacts/image-test.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fleet import Fleet
from tests.fleet.observe import container_events
from tests.image.base import SUITE, base_tarball
from tests.image.builder import add_builder, docker
from tests.integration.runs_helpers import add_directive, add_task, launch, run_logs, wait_run
from tests.live_server import ROOT, free_port

pytestmark = [pytest.mark.image, pytest.mark.integration]

CACHE = ROOT / ".cache" / "image"
ARTIFACTS = ROOT / ".ci" / "artifacts"
BASE_TAG = f"dockfleet-base:{SUITE}"
IMAGE = "dockfleet:image-test"
TOKEN = "tok-image-" + "i" * 40
SOCKET_IN_CONTAINER = "/var/run/docker.sock"


@pytest.fixture(scope="module")
def timings() -> Iterator[dict[str, Any]]:
    found: dict[str, Any] = {}
    yield found
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "image-test.json").write_text(json.dumps(found, indent=2) + "\n")
    print("\n[image-test] " + json.dumps(found))


def _need_debootstrap() -> None:
    if shutil.which("debootstrap") and shutil.which("docker"):
        return
    reason = "make image-test needs debootstrap and the docker CLI (it installs them as root)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true: {reason}")
    pytest.skip(reason)


def _build(builder: Any) -> tuple[float, str]:
    started = time.monotonic()
    done = docker(
        builder,
        "build",
        "--network=host",  # RUN pip install reaches PyPI as this machine does
        f"--build-arg=BASE_IMAGE={BASE_TAG}",
        f"--tag={IMAGE}",
        str(ROOT),
    )
    return time.monotonic() - started, done.stdout


def _inspect(builder: Any, what: str) -> Any:
    return json.loads(docker(builder, "inspect", what).stdout)[0]


async def _wait_healthy(builder: Any, name: str, within: float = 90.0) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        state: dict[str, Any] = (await asyncio.to_thread(_inspect, builder, name))["State"]
        health = state.get("Health", {}).get("Status")
        if health == "healthy":
            return state
        assert state["Running"], f"container exited: {state}"
        assert time.monotonic() < deadline, f"not healthy in {within}s: {state}"
        await asyncio.sleep(0.5)


async def _serving(url: str, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(timeout=2) as http:
        while True:
            try:
                if (await http.get(f"{url}/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"{url} not serving in {within}s"
            await asyncio.sleep(0.3)


def _start(builder: Any, fleet: Fleet, name: str, env_file: Path, volume: str) -> None:
    sock = fleet.sock.socket_path
    docker(
        builder,
        "run",
        "--detach",
        f"--name={name}",
        "--network=host",  # the test reaches it on loopback; it binds 127.0.0.1 (env file)
        f"--group-add={os.stat(sock).st_gid}",  # the socket's group: the user is not root
        f"--volume={sock}:{SOCKET_IN_CONTAINER}",
        f"--volume={volume}:/data",
        f"--env-file={env_file}",
        "--health-interval=1s",  # the image's HEALTHCHECK, checked more often here
        "--health-start-period=30s",
        IMAGE,
    )


CONNECT = (
    "import socket; s = socket.socket(socket.AF_UNIX); s.settimeout(5); "
    f"s.connect('{SOCKET_IN_CONTAINER}')"
)


def _socket_needs_the_group(builder: Any, sock: str) -> None:
    """Without `--group-add` the container's user may not connect to the socket (mode 660)."""
    mode = os.stat(sock).st_mode
    assert mode & 0o006 == 0, f"{sock} is open to everyone ({oct(mode)}): nothing to prove"
    refused = docker(
        builder,
        *("run", "--rm", "--network=none", f"--volume={sock}:{SOCKET_IN_CONTAINER}", IMAGE),
        *("python3", "-c", CONNECT),
        check=False,
    )
    assert refused.returncode != 0 and "PermissionError" in refused.stderr, refused


async def test_the_image_builds_runs_as_non_root_and_launches_a_run(
    fleet: Fleet, tmp_path: Path, timings: dict[str, Any]
) -> None:
    _need_debootstrap()
    test_started = time.monotonic()
    tarball, made = await asyncio.to_thread(base_tarball, CACHE)
    timings["base_tarball_seconds"] = round(time.monotonic() - test_started, 1)
    timings["base_tarball_made_now"] = made
    builder = await asyncio.to_thread(add_builder, fleet)
    await asyncio.to_thread(docker, builder, "import", str(tarball), BASE_TAG)

    cold, _ = await asyncio.to_thread(_build, builder)
    warm, warm_log = await asyncio.to_thread(_build, builder)
    assert "Using cache" in warm_log
    timings |= {"build_cold_seconds": round(cold, 1), "build_warm_seconds": round(warm, 1)}
    image = await asyncio.to_thread(_inspect, builder, IMAGE)
    timings["image_size_mb"] = round(image["Size"] / 1e6, 1)
    config = image["Config"]
    assert config["User"] == "dockfleet"
    assert "/data" in config["Volumes"]
    assert any("/healthz" in part for part in config["Healthcheck"]["Test"])
    assert config["Cmd"] == ["dockfleet", "serve"]

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env_file = tmp_path / "dockfleet.env"
    env_file.write_text(
        f"DOCKFLEET_API_TOKEN={TOKEN}\nDOCKFLEET_HOST=127.0.0.1\nDOCKFLEET_PORT={port}\n"
        "DOCKFLEET_HEALTH_INTERVAL_SECONDS=2\nDOCKFLEET_LOG_LEVEL=info\n"
    )
    name, volume = f"dockfleet-it-{fleet.suffix}", f"dockfleet-data-{fleet.suffix}"
    await asyncio.to_thread(_start, builder, fleet, name, env_file, volume)
    try:
        await _serving(url)
        await _wait_healthy(builder, name)
        uid = await asyncio.to_thread(docker, builder, "exec", name, "id", "-u")
        assert uid.stdout.strip() == "10001"
        # multi-stage: no build directory, no pip in the final image
        lean = "test ! -e /src && ! python3 -m pip --version"
        await asyncio.to_thread(docker, builder, "exec", name, "sh", "-c", lean)
        await asyncio.to_thread(_socket_needs_the_group, builder, fleet.sock.socket_path)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as api:
            await _launch_and_check(api, fleet, timings)
            host_id = (await api.get("/api/worker-hosts/")).json()["results"][0]["id"]
        # SQLite lives on the volume: a new container on it has the same registry
        await asyncio.to_thread(docker, builder, "rm", "--force", name)
        await asyncio.to_thread(_start, builder, fleet, name, env_file, volume)
        await _serving(url)
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as api:
            again = await api.get(f"/api/worker-hosts/{host_id}/")
            assert again.status_code == 200 and again.json()["name"] == "fleet-sock"
        async with httpx.AsyncClient(base_url=url, timeout=10) as anonymous:
            assert (await anonymous.get("/api/runs/")).status_code == 401
            assert set((await anonymous.get("/healthz")).json()) == {"status", "version"}
    except BaseException:
        logs = await asyncio.to_thread(docker, builder, "logs", "--tail=60", name, check=False)
        print(f"container logs:\n{logs.stdout}\n{logs.stderr}")
        raise
    finally:
        await asyncio.to_thread(docker, builder, "rm", "--force", name, check=False)
        await asyncio.to_thread(docker, builder, "volume", "rm", volume, check=False)
    timings["image_test_seconds"] = round(time.monotonic() - test_started, 1)


async def _launch_and_check(api: httpx.AsyncClient, fleet: Fleet, timings: dict[str, Any]) -> None:
    """Register the mounted socket, run one task through it; the daemon saw exactly that."""
    trusted = (await api.get("/healthz")).json()
    instance = trusted["instance_id"]
    body = {
        "name": "fleet-sock",
        "type": "docker_socket",
        "base_url": f"unix://{SOCKET_IN_CONTAINER}",
    }
    r = await api.post("/api/worker-hosts/", json=body)
    assert r.status_code == 201, r.text
    host_id = r.json()["id"]
    r = await api.get(f"/api/worker-hosts/{host_id}/health/", params={"check": "true"})
    assert r.status_code == 200 and r.json()["healthy"] is True, r.text
    task = await add_task(api, "hello", "echo hello-from-the-image; id -u")
    directive = await add_directive(api, "image-test", tasks=[task])
    since = time.time() - 1
    started = time.monotonic()
    run = await launch(api, directive, target_host_id=host_id)
    done = await wait_run(api, run["id"], within=60)
    timings["run_seconds"] = round(time.monotonic() - started, 2)
    assert done["status"] == "succeeded", done
    logs = json.dumps(await run_logs(api, run["id"]))
    assert "hello-from-the-image" in logs
    labels = (f"dockfleet.run_id={run['id']}", f"dockfleet.instance={instance}")
    events = await container_events(fleet.sock, since, None, *labels)
    actions = [e["Action"] for e in events]
    assert actions.count("create") == 1 and actions.count("start") == 1, actions
    dies = [e for e in events if e["Action"] == "die"]
    assert len(dies) == 1 and dies[0]["Actor"]["Attributes"]["exitCode"] == "0", dies
