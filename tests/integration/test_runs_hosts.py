"""Runs on each kind of host (local socket, TCP+TLS, SSH-only), in order, and the launch forms."""

from __future__ import annotations

import asyncio
from datetime import datetime

import httpx
import pytest
from fastapi import FastAPI

from tests.fleet import Fleet
from tests.integration.runs_helpers import (
    add_directive,
    add_host,
    add_task,
    containers,
    get_run,
    launch,
    run_logs,
    uniq,
    wait_run,
)

KINDS = ("sock", "tls", "ssh")


def _instance(app: FastAPI) -> str:
    instance: str = app.state.dockfleet.instance_id
    assert instance
    return instance


@pytest.mark.parametrize("kind", KINDS)
async def test_run_lands_on_the_targeted_daemon(
    fleet: Fleet, app: FastAPI, client: httpx.AsyncClient, kind: str
) -> None:
    ids = {k: await add_host(client, getattr(fleet, k), uniq(k)) for k in KINDS}
    daemon = getattr(fleet, kind)
    instance = _instance(app)
    script = (
        'echo "host=$(hostname)"; echo "run=$DOCKFLEET_RUN_ID $GREETING"; sleep 2;'
        " echo done; echo warn >&2"
    )
    task = await add_task(client, uniq("where"), script)
    directive = await add_directive(client, uniq("dir"), env={"GREETING": "from-directive"})

    run = await launch(client, directive, tasks=[task], target_host_id=ids[kind])
    rid = run["id"]
    assert run["status"] == "starting", run  # a free slot: placed at once
    assert run["worker_host_id"] == ids[kind]
    mine = (f"dockfleet.run_id={rid}", f"dockfleet.instance={instance}")

    run = await wait_run(client, rid, {"running"}, within=20, poll=0.05)
    found = await containers(daemon, *mine)
    assert len(found) == 1, found
    (box,) = found
    assert box["State"] == "running"
    assert box["Id"] == run["tasks"][0]["container_id"]
    labels = {k: v for k, v in box["Labels"].items() if k.startswith("dockfleet.")}
    assert labels == {
        "dockfleet.managed": "true",
        "dockfleet.run_id": str(rid),
        "dockfleet.task_id": str(run["tasks"][0]["id"]),
        "dockfleet.attempt": "1",
        "dockfleet.instance": instance,
    }
    for other in KINDS:
        if other != kind:
            assert await containers(getattr(fleet, other), *mine) == [], other

    run = await wait_run(client, rid, within=30)
    assert run["status"] == "succeeded", run
    assert run["worker_host_name"] is not None and run["error"] is None
    (done,) = run["tasks"]
    assert (done["status"], done["exit_code"], done["attempt"]) == ("succeeded", 0, 1)
    logs = (await run_logs(client, rid))["tasks"][0]["logs"]
    assert f"host={box['Id'][:12]}" in logs  # the container's hostname is its short id
    assert f"run={rid} from-directive" in logs
    assert "done" in logs and "warn" in logs  # stdout and stderr
    assert await containers(daemon, *mine) == []  # removed after the run


async def test_two_tasks_run_in_order_one_container_at_a_time(
    fleet: Fleet, app: FastAPI, client: httpx.AsyncClient
) -> None:
    host_id = await add_host(client, fleet.sock, uniq("sock"))
    first = await add_task(client, uniq("first"), "echo a-start; sleep 1; echo a-end")
    second = await add_task(client, uniq("second"), "echo b-start; sleep 1; echo b-end")
    directive = await add_directive(client, uniq("dir"), tasks=[first, second])
    instance = _instance(app)

    run = await launch(client, directive)
    rid = run["id"]
    assert [t["task_name"] for t in run["tasks"]] == [first, second]
    task_ids = [str(t["id"]) for t in run["tasks"]]
    seen: list[str] = []  # task_id label of every container sample, in time order
    most = 0
    async with asyncio.timeout(30):
        while True:
            found = await containers(
                fleet.sock, f"dockfleet.run_id={rid}", f"dockfleet.instance={instance}"
            )
            most = max(most, len(found))
            seen += [c["Labels"]["dockfleet.task_id"] for c in found]
            if (await get_run(client, rid))["status"] in ("succeeded", "failed", "cancelled"):
                break
            await asyncio.sleep(0.05)
    run = await get_run(client, rid)
    assert run["status"] == "succeeded", run
    assert run["worker_host_id"] == host_id
    assert most == 1, f"{most} containers of one run existed at once"
    assert seen and seen == sorted(seen, key=task_ids.index), seen  # never back to the first
    assert set(seen) == set(task_ids)
    a, b = run["tasks"]
    assert datetime.fromisoformat(a["finished_at"]) <= datetime.fromisoformat(b["started_at"])
    assert [(t["status"], t["exit_code"]) for t in run["tasks"]] == [("succeeded", 0)] * 2
    logs = [t["logs"] for t in (await run_logs(client, rid))["tasks"]]
    assert logs == ["a-start\na-end\n", "b-start\nb-end\n"]
    assert await containers(fleet.sock, f"dockfleet.instance={instance}") == []


async def test_runbook_launch_forms(fleet: Fleet, app: FastAPI, client: httpx.AsyncClient) -> None:
    sock_id = await add_host(client, fleet.sock, uniq("a-sock"))
    tls_id = await add_host(client, fleet.tls, uniq("b-tls"))
    one = await add_task(client, uniq("one"), 'echo "one $WHO"')
    two = await add_task(client, uniq("two"), 'echo "two $WHO"')
    directive = await add_directive(client, uniq("default"), tasks=[one, two], env={"WHO": "me"})

    # 1. default task selection: the directive's list, in its order
    default = await launch(client, directive)
    # 2. named tasks (duplicates keep the first)
    named = await launch(client, directive, tasks=[two, one, two])
    # 3. a specific host
    targeted = await launch(client, directive, tasks=[one], target_host_id=tls_id)

    assert [t["task_name"] for t in default["tasks"]] == [one, two]
    assert [t["task_name"] for t in named["tasks"]] == [two, one]
    assert [t["task_name"] for t in targeted["tasks"]] == [one]
    assert targeted["target_host_id"] == tls_id
    for run in (default, named, targeted):
        assert run["directive_name"] == (await get_run(client, run["id"]))["directive_name"]
        done = await wait_run(client, run["id"], within=30)
        assert done["status"] == "succeeded", done
        assert done["worker_host_id"] in (sock_id, tls_id)
        logs = [t["logs"] for t in (await run_logs(client, run["id"]))["tasks"]]
        printed = {one: "one me\n", two: "two me\n"}
        assert logs == [printed[t["task_name"]] for t in run["tasks"]], logs
    assert (await get_run(client, targeted["id"]))["worker_host_id"] == tls_id
    instance = _instance(app)
    for daemon in (fleet.sock, fleet.tls):
        assert await containers(daemon, f"dockfleet.instance={instance}") == []
