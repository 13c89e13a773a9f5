"""HTTP routes for /api/worker-hosts/: registry, heartbeat, live check, drain."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status

from app import clock
from app.deps import HostId, PageDep, SessionDep, StateDep, page_links
from app.engine.endpoint import Endpoint
from app.errors import Conflict
from app.events import store as events
from app.hosts import store
from app.hosts.eligibility import is_stale
from app.hosts.models import (
    HostCreate,
    HostHealth,
    HostKeyAccept,
    HostPage,
    HostRead,
    HostType,
    HostUpdate,
    SSHConfig,
    TLSConfig,
    WorkerHost,
)
from app.hosts.secrets import secrets_root
from app.hosts.validation import check_secret_files, merge_capabilities, validate_config
from app.openapi import ERRORS, examples

router = APIRouter(prefix="/worker-hosts", tags=["worker hosts"])


async def _read(session: SessionDep, state: StateDep, host: WorkerHost) -> HostRead:
    return (await store.read_many(session, [host], state.settings.stale_after_seconds))[0]


def _secrets(state: StateDep) -> Path:
    return secrets_root(state.settings.secrets_dir)


def _ssh_server(config: dict[str, Any] | None) -> tuple[Any, Any] | None:
    return (config.get("host"), config.get("port", 22)) if config else None


async def _record_update(
    session: SessionDep, host: WorkerHost, was_enabled: bool, fields: list[str]
) -> None:
    """host.enabled / host.disabled when that flipped, else host.updated (field names only:
    never their values, which may be secrets' paths)."""
    kind = "host.updated"
    if host.enabled != was_enabled:
        kind = "host.enabled" if host.enabled else "host.disabled"
    elif not fields:
        return  # an empty PATCH changes nothing
    await events.record(session, kind, host_id=host.id, host=host.name, fields=fields)


def _changed(state: StateDep, host_id: int) -> None:
    """Tell the scheduler the host changed (it reads the host again before its next pass),
    and the monitor's timer (it reads which hosts are enabled again)."""
    if state.monitor is not None:
        state.monitor.hosts_changed()
    scheduler = state.services.get("scheduler")
    if scheduler is not None:
        scheduler.host_changed(host_id)


@router.post(
    "/",
    status_code=status.HTTP_201_CREATED,
    response_model=HostRead,
    summary="Register a worker host",
    responses=ERRORS(409, 422),
)
async def create_host(
    body: Annotated[HostCreate, examples("host_socket", "host_tcp_ssh", "host_tcp_tls")],
    session: SessionDep,
    state: StateDep,
) -> HostRead:
    """Register a Docker daemon reached by unix socket, TCP+TLS or an SSH tunnel.

    An enabled host is live-checked at once in the background when checks are on.
    """
    validate_config(
        body.type, body.base_url, body.ssh_config, body.tls_config, state.settings.networks()
    )
    check_secret_files(body.ssh_config, body.tls_config, _secrets(state), body.enabled)
    host = WorkerHost(
        name=body.name,
        type=body.type.value,
        base_url=body.base_url,
        enabled=body.enabled,
        capabilities=body.capabilities.model_dump(),
        ssh_config=body.ssh_config.model_dump() if body.ssh_config else None,
        tls_config=body.tls_config.model_dump() if body.tls_config else None,
    )
    await store.create(session, host)
    assert host.id is not None
    await events.record(
        session, "host.created", host_id=host.id, host=host.name, enabled=host.enabled
    )
    await session.commit()
    if host.enabled and state.monitor is not None:
        state.monitor.check_soon(host.id)
    _changed(state, host.id)
    return await _read(session, state, host)


@router.get("/", response_model=HostPage, summary="List worker hosts")
async def list_hosts(
    request: Request,
    session: SessionDep,
    state: StateDep,
    page: PageDep,
    enabled: Annotated[bool | None, Query(description="Only enabled (or disabled) hosts.")] = None,
    healthy: Annotated[bool | None, Query(description="Only healthy (or unhealthy) hosts.")] = None,
    name: Annotated[
        str | None, Query(max_length=200, description="Only the host with this exact name.")
    ] = None,
) -> HostPage:
    """Every host with `is_stale`, `active_runs_count` and why it cannot take runs, if so."""
    count, hosts = await store.list_hosts(
        session, enabled=enabled, healthy=healthy, limit=page.limit, offset=page.offset, name=name
    )
    results = await store.read_many(session, hosts, state.settings.stale_after_seconds)
    nxt, prev = page_links(request, page, count)
    return HostPage(count=count, next=nxt, previous=prev, results=results)


@router.get(
    "/{host_id}/", response_model=HostRead, summary="Get one worker host", responses=ERRORS(404)
)
async def get_host(host_id: HostId, session: SessionDep, state: StateDep) -> HostRead:
    """One host; secrets are shown only as `has_ssh_config` / `has_tls_config`."""
    return await _read(session, state, await store.get_or_raise(session, host_id))


@router.patch(
    "/{host_id}/",
    response_model=HostRead,
    summary="Change a worker host",
    responses=ERRORS(404, 409, 422),
)
async def update_host(
    host_id: HostId,
    body: Annotated[HostUpdate, examples("host_patch")],
    session: SessionDep,
    state: StateDep,
) -> HostRead:
    """Change only the fields given; `ssh_config`/`tls_config` set to null remove them."""
    host = await store.get_or_raise(session, host_id)
    changes: dict[str, Any] = body.model_dump(exclude_unset=True, mode="json")
    for key in ("name", "type", "base_url", "enabled", "capabilities"):
        if key in changes and changes[key] is None:
            del changes[key]  # null means "unchanged" for fields that cannot be empty
    if "capabilities" in changes:
        changes["capabilities"] = merge_capabilities(host.capabilities, changes["capabilities"])
    merged = {**host.model_dump(), **changes}
    ssh = SSHConfig.model_validate(merged["ssh_config"]) if merged.get("ssh_config") else None
    tls = TLSConfig.model_validate(merged["tls_config"]) if merged.get("tls_config") else None
    validate_config(
        HostType(merged["type"]), merged["base_url"], ssh, tls, state.settings.networks()
    )
    check_secret_files(ssh, tls, _secrets(state), bool(merged["enabled"]))
    if _ssh_server(merged.get("ssh_config")) != _ssh_server(host.ssh_config):
        changes["ssh_host_key_fingerprint"] = None  # another SSH server: learn its key anew
    was_enabled = host.enabled
    await store.update(session, host, changes)
    await store.bump_seq(session, host_id)  # a plan made before this change must not apply
    await _record_update(session, host, was_enabled, sorted(changes))
    await session.commit()
    connection_changed = {"type", "base_url", "ssh_config", "tls_config"} & changes.keys()
    if connection_changed:
        await state.pool.forget(host_id)
    if state.monitor is not None and host.enabled and (connection_changed or not was_enabled):
        state.monitor.check_soon(host_id)
    _changed(state, host_id)
    await session.refresh(host)
    return await _read(session, state, host)


@router.delete(
    "/{host_id}/",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove a worker host",
    responses=ERRORS(404, 409),
)
async def delete_host(
    host_id: HostId,
    session: SessionDep,
    state: StateDep,
    force: Annotated[
        bool,
        Query(
            description="Also release slots still held for containers that could not be "
            "confirmed gone (only for a host that is gone for good)."
        ),
    ] = False,
) -> Response:
    """Remove a host; 409 while it has active runs (drain it first), pending runs pinned to
    it, or slots held until its leftover containers are known gone (`?force=true` for a host
    that will never come back)."""
    host = await store.get_or_raise(session, host_id)
    name = host.name
    await store.delete_checked(session, host, force=force)
    await events.record(session, "host.deleted", host_id=host_id, host=name)
    await session.commit()
    await state.pool.forget(host_id)
    _changed(state, host_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{host_id}/health/",
    response_model=HostHealth,
    response_model_exclude_unset=True,
    summary="Heartbeat, or a live Docker check with ?check=true",
    responses=ERRORS(404),
)
async def host_health(
    host_id: HostId,
    session: SessionDep,
    state: StateDep,
    check: Annotated[
        bool, Query(description="Ping Docker now through the host's connector.")
    ] = False,
) -> HostHealth:
    """Without `check`: a heartbeat that sets `last_seen_at` to now (the runbook's keys).

    With `check=true`: a live ping of the host's Docker (tunnel/TLS included); success makes it
    healthy and seen now, failure unhealthy with `last_error`. Always 200 for a known host.
    """
    host = await store.get_or_raise(session, host_id)
    result = None
    if check:
        assert state.monitor is not None
        await session.commit()  # hold no connection while Docker is asked
        result = await state.monitor.check(host_id)
        session.expire_all()
        host = await store.get_or_raise(session, host_id)
    else:
        await store.update(session, host, {"last_seen_at": clock.now()})
        await session.commit()
    active = (await store.active_counts(session, [host_id])).get(host_id, 0)
    health = HostHealth(
        host_id=host_id,
        name=host.name,
        healthy=host.healthy,
        last_seen_at=host.last_seen_at,
        is_stale=is_stale(host.last_seen_at, clock.now(), state.settings.stale_after_seconds),
        active_runs_count=active,
    )
    if result is not None:
        health.check = result
    return health


async def _set_draining(
    host_id: HostId, draining: bool, session: SessionDep, state: StateDep
) -> HostRead:
    host = await store.get_or_raise(session, host_id)
    was_draining = host.draining
    await store.update(session, host, {"draining": draining})
    await store.bump_seq(session, host_id)  # a plan made before the drain must not apply
    if was_draining != draining:
        kind = "host.draining" if draining else "host.undrained"
        await events.record(session, kind, host_id=host_id, host=host.name)
    await session.commit()
    _changed(state, host_id)
    await session.refresh(host)
    return await _read(session, state, host)


@router.post(
    "/{host_id}/drain/", response_model=HostRead, summary="Drain a host", responses=ERRORS(404)
)
async def drain_host(host_id: HostId, session: SessionDep, state: StateDep) -> HostRead:
    """A draining host takes no new runs; its running runs finish."""
    return await _set_draining(host_id, True, session, state)


@router.post(
    "/{host_id}/undrain/", response_model=HostRead, summary="Undrain a host", responses=ERRORS(404)
)
async def undrain_host(host_id: HostId, session: SessionDep, state: StateDep) -> HostRead:
    """The host takes new runs again."""
    return await _set_draining(host_id, False, session, state)


@router.post(
    "/{host_id}/ssh-host-key/",
    response_model=HostRead,
    summary="Accept a changed SSH host key",
    responses=ERRORS(404, 409, 422),
)
async def accept_host_key(
    host_id: HostId,
    body: Annotated[HostKeyAccept, examples("host_key")],
    session: SessionDep,
    state: StateDep,
) -> HostRead:
    """Pin the SSH host key the server offers now, if it is the one you checked (`fingerprint`).

    Only for SSH hosts without `known_hosts` (their key was trusted on first use); with a
    known_hosts file, that file decides. 409 when the server offers another key.
    """
    host = await store.get_or_raise(session, host_id)
    if not host.ssh_config:
        raise Conflict(f"worker host {host_id} is not reached through SSH")
    if host.ssh_config.get("known_hosts"):
        raise Conflict("this host's SSH key is checked against its known_hosts file; edit that")
    await session.commit()
    offered = await state.pool.offered_host_key(Endpoint.of(host))
    if offered != body.fingerprint:
        raise Conflict(f"the SSH server offers {offered}, not {body.fingerprint}")
    await store.update(session, host, {"ssh_host_key_fingerprint": offered})
    await session.commit()
    await state.pool.forget(host_id)
    _changed(state, host_id)
    if state.monitor is not None and host.enabled:
        await state.monitor.check(host_id)
        await session.refresh(host)
    return await _read(session, state, host)
