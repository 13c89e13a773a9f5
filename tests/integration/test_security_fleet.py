"""Security on the real fleet: SSH host keys trusted on first use and pinned (a changed key
makes the host unhealthy until accepted), strict known_hosts, and the seeded tasks running
under the default task policy."""

from __future__ import annotations

from typing import Any

import httpx

from tests.fleet import Fleet
from tests.integration.runs_helpers import add_directive, add_host, launch, wait_run


async def _check(client: httpx.AsyncClient, host_id: int) -> dict[str, Any]:
    r = await client.get(f"/api/worker-hosts/{host_id}/health/", params={"check": "true"})
    assert r.status_code == 200, r.text
    host = (await client.get(f"/api/worker-hosts/{host_id}/")).json()
    data: dict[str, Any] = {**r.json(), **host}
    return data


async def test_an_ssh_host_key_is_pinned_on_first_use_and_a_change_needs_accepting(
    fleet: Fleet, client: httpx.AsyncClient
) -> None:
    assert fleet.sshd is not None
    body = fleet.ssh.host_payload("tofu")
    del body["ssh_config"]["known_hosts"]
    r = await client.post("/api/worker-hosts/", json=body)
    assert r.status_code == 201, r.text
    host_id = r.json()["id"]
    first = await _check(client, host_id)
    original = fleet.sshd.host_key_fingerprint()
    assert first["healthy"] is True and first["ssh_host_key_fingerprint"] == original, first

    with fleet.sshd.other_host_key() as rotated:
        changed = await _check(client, host_id)
        accept = f"/api/worker-hosts/{host_id}/ssh-host-key/"
        wrong = await client.post(accept, json={"fingerprint": original})
        right = await client.post(accept, json={"fingerprint": rotated})
        healed = await _check(client, host_id)
    back = await _check(client, host_id)  # the original key again: a change once more
    restored = await client.post(accept, json={"fingerprint": original})

    assert changed["healthy"] is False, changed
    assert "host key changed" in changed["last_error"] and rotated in changed["last_error"]
    assert original in changed["last_error"]
    assert wrong.status_code == 409 and rotated in wrong.json()["detail"]
    assert right.status_code == 200, right.text
    assert right.json()["ssh_host_key_fingerprint"] == rotated
    assert healed["healthy"] is True
    assert back["healthy"] is False and restored.status_code == 200
    assert fleet.ssh.ssh is not None and fleet.ssh.ssh.key_path not in changed["last_error"]


async def test_with_known_hosts_a_changed_key_is_refused_and_not_acceptable(
    fleet: Fleet, client: httpx.AsyncClient
) -> None:
    assert fleet.sshd is not None
    host_id = await add_host(client, fleet.ssh, "strict")
    with fleet.sshd.other_host_key() as rotated:
        changed = await _check(client, host_id)
        r = await client.post(
            f"/api/worker-hosts/{host_id}/ssh-host-key/", json={"fingerprint": rotated}
        )
    assert changed["healthy"] is False and "host key" in changed["last_error"], changed
    assert r.status_code == 409 and "known_hosts" in r.json()["detail"]
    assert (await _check(client, host_id))["healthy"] is True


async def test_the_seeded_tasks_run_under_the_default_policy(
    fleet: Fleet, client: httpx.AsyncClient
) -> None:
    host_id = await add_host(client, fleet.sock, "seeded")
    directive = await add_directive(client, "seeded")
    run = await launch(
        client, directive, tasks=["log_triage", "service_map"], target_host_id=host_id
    )
    done = await wait_run(client, run["id"], within=60)
    assert done["status"] == "succeeded", done
    assert [t["status"] for t in done["tasks"]] == ["succeeded", "succeeded"]
