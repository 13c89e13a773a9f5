"""The hollow Docker engine (bench/hollow) answers aiodocker the way a real daemon does."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiodocker
import httpx
import pytest

from bench.hollow import running

LABELS = {
    "dockfleet.managed": "true",
    "dockfleet.run_id": "7",
    "dockfleet.task_id": "3",
    "dockfleet.attempt": "1",
    "dockfleet.instance": "test",
}


def config(**env: str) -> dict[str, object]:
    return {
        "Image": "busybox:1.36",
        "Cmd": ["true"],
        "Env": [f"{k}={v}" for k, v in env.items()],
        "Labels": LABELS,
        "HostConfig": {"NetworkMode": "none"},
    }


async def test_one_container_lifecycle(tmp_path: Path) -> None:
    async with running(tmp_path / "h", hosts=3, latency_ms=1, run_ms=50) as hollow:
        async with aiodocker.Docker(url=f"unix://{hollow.paths[1]}") as docker:
            assert (await docker.version())["ApiVersion"] == "1.41"
            info = await docker.system.info()
            assert info["Name"] == "h0001" and info["NCPU"] == 4 and "runc" in info["Runtimes"]
            await docker.images.inspect("busybox:1.36")

            created = await docker.containers.create(
                config(HOLLOW_STDERR="careful\n"), name="r7-t3-a1"
            )
            with pytest.raises(aiodocker.DockerError) as dup:
                await docker.containers.create(config(), name="r7-t3-a1")
            assert dup.value.status == 409 and "already in use" in dup.value.message
            shown = await docker.containers.get("r7-t3-a1")  # by name
            assert shown["State"]["Status"] == "created"
            assert shown["Config"]["Labels"] == LABELS
            assert shown["HostConfig"] == {"NetworkMode": "none"}

            await created.start()
            by_key = await docker.containers.list(filters={"label": ["dockfleet.managed"]})
            by_value = await docker.containers.list(
                filters={"label": ["dockfleet.managed=true", "dockfleet.run_id=7"]}
            )
            other = await docker.containers.list(filters={"label": ["dockfleet.run_id=8"]})
            assert [c.id for c in by_key] == [c.id for c in by_value] == [created.id]
            assert other == []

            result = await docker.containers.container(created.id[:12]).wait()  # id prefix
            assert result["StatusCode"] == 0
            state = (await created.show())["State"]
            assert state["Status"] == "exited" and state["FinishedAt"] > state["StartedAt"]
            both = "".join(await created.log(stdout=True, stderr=True))
            out = "".join(await created.log(stdout=True, tail="1"))
            assert "r7-t3-a1 running true" in both and "careful" in both
            assert "careful" not in out and "running true" in out
            assert await docker.containers.list() == []  # only running ones without all
            exited = await docker.containers.list(all=True, filters={"status": ["exited"]})
            assert [c.id for c in exited] == [created.id]

            await created.delete(force=True)
            with pytest.raises(aiodocker.DockerError) as gone:
                await docker.containers.get(created.id)
            assert gone.value.status == 404
        stats = hollow.engine.by_name["h0001"].stats()
        assert stats["creates"] == 1 and stats["starts"] == 1 and stats["exits"] == 1
        assert stats["peak_running"] == 1 and stats["duplicate_starts"] == 0
        assert hollow.engine.by_name["h0000"].stats()["requests"] == 0


async def test_overrides_missing_images_stop_and_duplicates(tmp_path: Path) -> None:
    async with running(tmp_path / "h", hosts=2, latency_ms=0, run_ms=50) as hollow:
        async with (
            aiodocker.Docker(url=f"unix://{hollow.paths[0]}") as one,
            aiodocker.Docker(url=f"unix://{hollow.paths[1]}") as two,
        ):
            failing = await one.containers.run(config(HOLLOW_EXIT_CODE="3"), name="first")
            assert (await failing.wait())["StatusCode"] == 3

            # The same (run, task, attempt) started again on another host: a duplicate start.
            again = await two.containers.run(config(), name="second")
            await again.wait()
            assert hollow.engine.stats()["totals"]["duplicate_starts"] == 1

            with pytest.raises(aiodocker.DockerError) as missing:
                await one.containers.create({"Image": "alpine:3.20"})
            assert missing.value.status == 404 and "No such image" in missing.value.message
            await one.images.pull("alpine:3.20")
            await one.images.inspect("alpine:3.20")

            slow = await one.containers.run(
                {"Image": "alpine:3.20", "Env": ["HOLLOW_RUN_MS=60000"]}, name="slow"
            )
            with pytest.raises(aiodocker.DockerError) as busy:
                await slow.delete()
            assert busy.value.status == 409
            async with asyncio.timeout(2):
                await slow.stop(t=1)
            assert (await slow.show())["State"]["ExitCode"] == 143
            await slow.delete()


async def test_versions_ping_and_control(tmp_path: Path) -> None:
    async with running(tmp_path / "h", hosts=1, latency_ms=0) as hollow:
        transport = httpx.AsyncHTTPTransport(uds=hollow.paths[0])
        async with httpx.AsyncClient(transport=transport, base_url="http://hollow") as client:
            for path in ("/_ping", "/v1.41/_ping"):
                r = await client.get(path)
                assert r.text == "OK" and r.headers["api-version"] == "1.41"
            too_new = await client.get("/v1.45/containers/json")
            assert too_new.status_code == 400 and "too new" in too_new.json()["message"]
            assert (await client.get("/v1.41/containers/json?all=1")).json() == []
            stats = (await client.get("/_hollow/stats")).json()
            assert stats["totals"]["requests"] == 4 and set(stats["hosts"]) == {"h0000"}
            await client.post("/_hollow/reset")
            assert (await client.get("/_hollow/host")).json()["requests"] == 0
