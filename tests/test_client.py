"""The Python clients against a real server subprocess (no Docker: hosts that cannot be reached).

Runs that actually execute (wait_for_run, follow_logs) are proven against the real fleet in
tests/integration/test_examples.py.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.client import (
    AsyncDockfleetClient,
    DirectiveRead,
    DockfleetClient,
    DockfleetError,
    HostCreate,
    HostHealth,
    HostRead,
    HostType,
    RunRead,
    RunStatus,
    RunWaitTimeout,
    TaskRead,
)
from app.client._core import Waiter, resolve_url
from tests.live_server import ROOT, LiveServer, free_port, live_server

MISSING_SOCKET = "unix:///nonexistent/dockfleet-test/docker.sock"


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, migrated_template: Path
) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("client"), template=migrated_template) as started:
        yield started


@pytest.fixture
def fleet(server: LiveServer) -> Iterator[DockfleetClient]:
    with DockfleetClient(server.url) as client:
        yield client


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def socket_host(name: str, **overrides: Any) -> dict[str, Any]:
    """A docker_socket host nobody listens on (its live check fails; nothing else is touched)."""
    body = {
        "name": name,
        "type": "docker_socket",
        "base_url": MISSING_SOCKET,
        "capabilities": {"gpus": False, "max_concurrency": 3},
    }
    return {**body, **overrides}


def test_host_lifecycle_typed_with_server_models(fleet: DockfleetClient) -> None:
    name = unique("sock")
    host = fleet.hosts.create(socket_host(name))
    assert isinstance(host, HostRead)
    assert host.type is HostType.docker_socket
    assert (host.enabled, host.healthy, host.is_stale) == (True, False, True)
    assert fleet.hosts.get(host.id) == host
    assert fleet.hosts.get_by_name(name).id == host.id
    assert any(h.id == host.id for h in fleet.hosts.iter(enabled=True))
    assert fleet.hosts.update(host.id, enabled=False).enabled is False
    assert fleet.hosts.drain(host.id).draining is True
    assert fleet.hosts.undrain(host.id).draining is False
    fleet.hosts.delete(host.id)
    with pytest.raises(DockfleetError) as info:
        fleet.hosts.get(host.id)
    assert info.value.status == 404


def test_create_accepts_a_model_and_keyword_fields(fleet: DockfleetClient) -> None:
    body = HostCreate(
        name=unique("model"),
        type=HostType.docker_socket,
        base_url=MISSING_SOCKET,
        enabled=False,
    )
    host = fleet.hosts.create(body, capabilities={"max_concurrency": 2})
    assert host.enabled is False
    assert host.capabilities.max_concurrency == 2
    fleet.hosts.delete(host.id)


def test_heartbeat_and_live_check(fleet: DockfleetClient) -> None:
    host = fleet.hosts.create(socket_host(unique("hb")))
    beat = fleet.hosts.health(host.id)
    assert isinstance(beat, HostHealth)
    assert beat.check is None
    assert beat.last_seen_at is not None and beat.is_stale is False
    checked = fleet.hosts.health(host.id, check=True)
    assert checked.check is not None and checked.check.ok is False
    assert "nonexistent" in (checked.check.error or "")
    assert checked.healthy is False
    fleet.hosts.delete(host.id)


def test_iterators_follow_next(server: LiveServer) -> None:
    requests: list[httpx.Request] = []
    http = httpx.Client(base_url=server.url, event_hooks={"request": [requests.append]})
    with DockfleetClient(server.url, http=http) as fleet:
        prefix = unique("page")
        made = [fleet.directives.create(name=f"{prefix}-{i}").id for i in range(5)]
        total = fleet.directives.list(limit=1).count
        requests.clear()
        seen = [d.id for d in fleet.directives.iter(page_size=2)]
        assert len(seen) == total and set(made) <= set(seen)
        assert len(requests) == -(-total // 2)  # one request per page
        assert requests[-1].url.params["offset"] == str(2 * (len(requests) - 1))
        for directive_id in made:
            fleet.directives.delete(directive_id)


def test_directives_crud(fleet: DockfleetClient) -> None:
    name = unique("dir")
    created = fleet.directives.create(
        name=name, description="d", tasks=["log_triage"], env={"A": "1"}
    )
    assert isinstance(created, DirectiveRead)
    assert fleet.directives.get_by_name(name).id == created.id
    updated = fleet.directives.update(created.id, description="changed")
    assert (updated.description, updated.tasks) == ("changed", ["log_triage"])
    fleet.directives.delete(created.id)
    with pytest.raises(DockfleetError) as info:
        fleet.directives.get_by_name(name)
    assert (info.value.status, info.value.code) == (404, "not_found")


def test_tasks_by_id_or_name(fleet: DockfleetClient) -> None:
    name = unique("task")
    created = fleet.tasks.create(name=name, image="busybox:1.36", command="echo hi")
    assert isinstance(created, TaskRead)
    assert created.command == ["echo", "hi"]
    assert fleet.tasks.get(name).id == created.id
    assert fleet.tasks.get(created.id).name == name
    assert fleet.tasks.update(name, enabled=False).enabled is False
    assert name not in {t.name for t in fleet.tasks.iter(enabled=True)}
    fleet.tasks.delete(created.id)
    assert {"log_triage", "gpu_report", "service_map"} <= {t.name for t in fleet.tasks.iter()}


def test_error_answers_carry_status_detail_and_code(fleet: DockfleetClient) -> None:
    host = fleet.hosts.create(socket_host(unique("dup")))
    with pytest.raises(DockfleetError) as conflict:
        fleet.hosts.create(socket_host(host.name))
    assert (conflict.value.status, conflict.value.code) == (409, "conflict")
    assert "already exists" in str(conflict.value)
    with pytest.raises(DockfleetError) as invalid:
        fleet.hosts.create(socket_host(unique("bad"), base_url="tcp://nowhere"))
    assert invalid.value.status == 422
    assert isinstance(invalid.value.detail, list)
    assert str(invalid.value) == "422: base_url: docker_socket needs base_url unix:///absolute/path"
    fleet.hosts.delete(host.id)


def test_launch_without_eligible_host_is_503_with_reasons(fleet: DockfleetClient) -> None:
    host = fleet.hosts.create(socket_host(unique("nohost")))
    directive = fleet.directives.create(name=unique("launch"))
    with pytest.raises(DockfleetError) as info:
        fleet.runs.launch(directive.id, tasks=["log_triage"])
    assert (info.value.status, info.value.detail) == (503, "No available hosts found")
    reasons = {h["name"]: h["reasons"] for h in info.value.body["hosts"]}
    assert "stale: never seen" in reasons[host.name]
    with pytest.raises(DockfleetError) as target:
        fleet.runs.launch(directive.id, tasks=["log_triage"], target_host_id=host.id)
    assert target.value.status == 409 and host.name in str(target.value)
    fleet.hosts.delete(host.id)
    fleet.directives.delete(directive.id)


def test_run_calls_on_unknown_runs(fleet: DockfleetClient) -> None:
    assert fleet.runs.list(status=[RunStatus.running, "pending"]).results == []
    assert list(fleet.runs.iter(status="succeeded,failed")) == []
    for call in (fleet.runs.get, fleet.runs.cancel, fleet.runs.logs, fleet.wait_for_run):
        with pytest.raises(DockfleetError) as info:
            call(987654)
        assert info.value.status == 404
    with pytest.raises(DockfleetError) as info:
        list(fleet.follow_logs(987654))
    assert info.value.status == 404 and "run 987654 not found" in str(info.value)
    with pytest.raises(DockfleetError) as bad:
        fleet.runs.list(status="bogus")
    assert bad.value.status == 422 and "bogus" in str(bad.value)


def test_unreachable_server_is_status_none_with_clear_message() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with DockfleetClient(url) as fleet, pytest.raises(DockfleetError) as info:
        fleet.hosts.list()
    assert info.value.status is None
    assert str(info.value).startswith(f"cannot reach dockfleet at {url}: ")


def test_url_and_token_from_environment(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DOCKFLEET_URL", raising=False)
    assert resolve_url(None) == "http://localhost:9595"
    assert resolve_url("example.lan:9595/") == "http://example.lan:9595"
    monkeypatch.setenv("DOCKFLEET_URL", server.url)
    with DockfleetClient() as fleet:
        assert fleet.url == server.url
        assert fleet.tasks.get("log_triage").name == "log_triage"


def test_bearer_token(
    tmp_path: Path, migrated_template: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"DOCKFLEET_API_TOKEN": "s3cret"}
    with live_server(tmp_path, env, template=migrated_template) as guarded:
        monkeypatch.delenv("DOCKFLEET_API_TOKEN", raising=False)
        with DockfleetClient(guarded.url) as anonymous, pytest.raises(DockfleetError) as info:
            anonymous.hosts.list()
        assert (info.value.status, info.value.code) == (401, "unauthorized")
        with DockfleetClient(guarded.url, token="s3cret") as fleet:
            assert fleet.hosts.list().count == 0
        monkeypatch.setenv("DOCKFLEET_API_TOKEN", "s3cret")
        with DockfleetClient(guarded.url) as fleet:
            assert fleet.tasks.list().count == 3


def _run(status: RunStatus) -> RunRead:
    now = datetime.now(UTC)
    return RunRead.model_validate(
        {
            "id": 7,
            "directive_id": 1,
            "directive_name": "default",
            "status": status,
            "worker_host_id": None,
            "worker_host_name": None,
            "target_host_id": None,
            "gpu_need": 0,
            "gpu_device_ids": [],
            "placements": 0,
            "cancel_requested": False,
            "error": None,
            "created_at": now,
            "placed_at": None,
            "started_at": None,
            "finished_at": None,
            "tasks": [],
        }
    )


def test_waiter_knows_final_statuses_and_times_out() -> None:
    assert [s for s in RunStatus if Waiter.done(_run(s))] == ["succeeded", "failed", "cancelled"]
    assert Waiter(None, 0.5).delay(_run(RunStatus.running)) == 0.5
    with pytest.raises(RunWaitTimeout) as info:
        Waiter(0, 0.5).delay(_run(RunStatus.running))
    assert isinstance(info.value, DockfleetError) and isinstance(info.value, TimeoutError)
    assert info.value.run.id == 7 and str(info.value) == "run 7 is still running after 0s"


async def test_async_client_same_methods(server: LiveServer) -> None:
    async with AsyncDockfleetClient(server.url) as fleet:
        names = [unique("async") for _ in range(3)]
        hosts = await asyncio.gather(*(fleet.hosts.create(socket_host(n)) for n in names))
        assert all(isinstance(h, HostRead) for h in hosts)
        found = await fleet.hosts.get_by_name(names[1])
        assert found.id == hosts[1].id
        listed = [h.name async for h in fleet.hosts.iter(page_size=1)]
        assert set(names) <= set(listed)
        checks = await asyncio.gather(*(fleet.hosts.health(h.id, check=True) for h in hosts))
        assert [c.check.ok if c.check else None for c in checks] == [False, False, False]
        with pytest.raises(DockfleetError) as info:
            await fleet.hosts.create(socket_host(names[0]))
        assert info.value.status == 409
        with pytest.raises(DockfleetError) as missing:
            [chunk async for chunk in fleet.follow_logs(987654)]
        assert missing.value.status == 404
        with pytest.raises(DockfleetError):
            await fleet.wait_for_run(987654, timeout=1)
        await asyncio.gather(*(fleet.hosts.delete(h.id) for h in hosts))


async def test_async_client_unreachable() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with AsyncDockfleetClient(url) as fleet:
        with pytest.raises(DockfleetError) as info:
            await fleet.tasks.list()
    assert info.value.status is None and f"cannot reach dockfleet at {url}" in str(info.value)


NO_DATABASE_LAYER = """
import sys
import app.cli, app.client
import app.directives.schemas, app.hosts.schemas, app.runs.schemas, app.tasks.schemas
loaded = [m for m in ("sqlalchemy", "sqlmodel", "app.db") if m in sys.modules]
assert not loaded, loaded
"""


def test_client_does_not_import_the_database_layer() -> None:
    # A fresh interpreter: this one has the server (and SQLAlchemy) loaded already.
    proc = subprocess.run(
        [sys.executable, "-c", NO_DATABASE_LAYER], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


def test_room_models_re_export_the_schemas() -> None:
    from app.hosts import models as host_models
    from app.hosts import schemas as host_schemas
    from app.runs import models as run_models
    from app.runs import schemas as run_schemas

    assert host_models.HostRead is host_schemas.HostRead is HostRead
    assert run_models.RunStatus is run_schemas.RunStatus is RunStatus
    assert run_models.FINAL is run_schemas.FINAL
