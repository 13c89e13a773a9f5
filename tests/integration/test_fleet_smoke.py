"""Smoke tests of the fleet fixture itself (not of the app): every daemon and access path works."""

from __future__ import annotations

import asyncio

import aiodocker
import aiohttp
import asyncssh
import pytest

from tests.fleet import Fleet
from tests.fleet.aio import docker_for, ping, run_container, ssh_tunnel, tls_docker
from tests.fleet.procs import run


async def test_every_daemon_pings_on_its_unix_socket(fleet: Fleet) -> None:
    for daemon in fleet:
        async with docker_for(daemon) as docker:
            assert await ping(docker) == "OK", daemon.name
            images = {t for img in await docker.images.list() for t in img["RepoTags"] or []}
            assert {"fleet/busybox:latest", "busybox:1.36", "busybox:latest"} <= images


async def test_namespaces_have_no_default_route(fleet: Fleet) -> None:
    for daemon in fleet:
        assert daemon.ns_ip.startswith("10.231.")
        assert "default" not in run("ip", "-n", daemon.netns, "route", "show")


async def test_busybox_136_echo_on_sock_daemon(fleet: Fleet) -> None:
    async with docker_for(fleet.sock) as docker:
        assert await run_container(docker, ["echo", "hi"]) == (0, "hi\n")


async def test_tls_daemon_needs_client_cert(fleet: Fleet) -> None:
    assert fleet.tls.base_url == f"tcp://{fleet.tls.ns_ip}:2376"
    async with tls_docker(fleet.tls) as docker:
        assert await ping(docker) == "OK"
        assert (await docker.version())["ApiVersion"] == "1.41"
    async with tls_docker(fleet.tls, client_cert=False) as docker:
        with pytest.raises((aiodocker.DockerError, aiohttp.ClientError)):
            await docker.version()


async def test_ssh_tunnel_reaches_dockerd_in_netns(fleet: Fleet) -> None:
    payload = fleet.ssh.host_payload("ssh-host")
    assert payload["base_url"] == "tcp://127.0.0.1:2375"
    assert payload["ssh_config"]["host"] == fleet.ssh.ns_ip
    async with (
        ssh_tunnel(fleet.ssh) as port,
        aiodocker.Docker(url=f"http://127.0.0.1:{port}") as docker,
    ):
        assert await ping(docker) == "OK"
        assert await run_container(docker, ["sh", "-c", "echo via-ssh"]) == (0, "via-ssh\n")


async def test_ssh_wrong_key_is_rejected(fleet: Fleet) -> None:
    assert fleet.ssh.ssh is not None
    with pytest.raises(asyncssh.PermissionDenied):
        async with ssh_tunnel(fleet.ssh, key_path=fleet.ssh.ssh.wrong_key_path):
            pass


async def test_gpu_daemon_passes_device_ids(fleet: Fleet) -> None:
    assert fleet.gpu.gpu_ids == ["0", "1"]
    assert fleet.gpu.host_payload("g")["capabilities"] == {
        "gpus": True,
        "gpu_count": 2,
        "max_concurrency": 3,
    }
    request = {"Driver": "nvidia", "DeviceIDs": ["1"], "Capabilities": [["gpu"]]}
    async with docker_for(fleet.gpu) as docker:
        code, out = await run_container(docker, ["env"], host_config={"DeviceRequests": [request]})
    assert code == 0
    assert "NVIDIA_VISIBLE_DEVICES=1" in out.splitlines()


async def test_restart_sshd_drops_sessions_then_new_tunnel_works(fleet: Fleet) -> None:
    access = fleet.ssh.ssh
    assert access is not None
    async with asyncssh.connect(
        access.host,
        port=access.port,
        username=access.user,
        client_keys=[access.key_path],
        known_hosts=access.known_hosts,
    ) as old:
        await asyncio.to_thread(fleet.restart_sshd)
        await asyncio.wait_for(old.wait_closed(), timeout=10)  # the old session was killed
    async with ssh_tunnel(fleet.ssh) as port, aiodocker.Docker(url=f"http://127.0.0.1:{port}") as d:
        assert await ping(d) == "OK"


async def test_stop_and_start_sock_daemon(fleet: Fleet) -> None:
    await asyncio.to_thread(fleet.sock.stop)
    async with docker_for(fleet.sock) as docker:
        with pytest.raises((aiodocker.DockerError, aiohttp.ClientError, OSError)):
            await ping(docker)
    await asyncio.to_thread(fleet.sock.start)
    async with docker_for(fleet.sock) as docker:
        assert await ping(docker) == "OK"
        assert await run_container(docker, ["echo", "back"]) == (0, "back\n")
