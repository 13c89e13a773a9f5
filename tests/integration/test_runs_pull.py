"""A missing image is pulled from a real (local, in-netns) registry, then the task runs.

The registry (tests/fleet/registry.py) listens on 127.0.0.1 inside the sock daemon's network
namespace, so dockerd pulls over plain HTTP (127.0.0.0/8 is insecure by default) and no traffic
ever leaves the namespaces the fleet made.
"""

from __future__ import annotations

import contextlib

import aiodocker
import httpx
import pytest
from fastapi import FastAPI

from tests.fleet import Fleet
from tests.fleet.aio import docker_for
from tests.fleet.registry import local_registry
from tests.integration.runs_helpers import (
    add_directive,
    add_host,
    add_task,
    containers,
    launch,
    run_logs,
    uniq,
    wait_run,
)


async def test_missing_image_is_pulled_from_a_registry_and_runs(
    fleet: Fleet, app: FastAPI, client: httpx.AsyncClient
) -> None:
    ours = f"dockfleet.instance={app.state.dockfleet.instance_id}"
    with local_registry(fleet.sock) as registry:
        image = registry.image
        async with docker_for(fleet.sock) as docker:
            with pytest.raises(aiodocker.DockerError) as missing:
                await docker.images.inspect(image)
            assert missing.value.status == 404
        try:
            host_id = await add_host(client, fleet.sock, uniq("sock"))
            task = await add_task(client, uniq("pulled"), "echo pulled-ok", image=image)
            directive = await add_directive(client, uniq("dir"))
            run = await launch(client, directive, tasks=[task], target_host_id=host_id)
            run = await wait_run(client, run["id"], within=60)

            assert run["status"] == "succeeded", (run, registry.log)
            assert run["worker_host_id"] == host_id
            (t,) = run["tasks"]
            assert (t["status"], t["exit_code"]) == ("succeeded", 0), t
            logs = (await run_logs(client, run["id"]))["tasks"][0]["logs"]
            assert "pulled-ok" in logs, logs
            assert registry.manifest_gets >= 1, registry.log
            async with docker_for(fleet.sock) as docker:
                pulled = await docker.images.inspect(image)
            assert image in pulled["RepoTags"], pulled["RepoTags"]
            assert pulled["RepoDigests"] == [
                f"127.0.0.1:{registry.port}/{registry.name}@{registry.manifest_digest}"
            ], pulled["RepoDigests"]
            assert await containers(fleet.sock, ours, f"dockfleet.run_id={run['id']}") == []
        finally:
            async with docker_for(fleet.sock) as docker:
                with contextlib.suppress(aiodocker.DockerError):
                    await docker.images.delete(image, force=True)
    async with docker_for(fleet.sock) as docker:  # the session's fleet is as it was
        with pytest.raises(aiodocker.DockerError) as gone:
            await docker.images.inspect(image)
        assert gone.value.status == 404
