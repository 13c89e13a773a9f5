"""HTTP routes for /api/notifiers/: where events are sent (webhook, ntfy, Discord, Slack),
their deliveries, and a test."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response, status

from app.deps import PageDep, SessionDep, StateDep, page_links
from app.named import parse_key
from app.notifiers import store
from app.notifiers.models import Notifier
from app.notifiers.schemas import (
    DeliveryPage,
    DeliveryRead,
    DeliveryStatus,
    NotifierCreate,
    NotifierPage,
    NotifierRead,
    NotifierUpdate,
)
from app.notifiers.worker import Notifications
from app.openapi import ERRORS, examples

router = APIRouter(prefix="/notifiers", tags=["notifiers"])

NotifierKey = Annotated[
    str, Path(max_length=200, description="The notifier's id (all digits) or its name.")
]
_NOT_NULL = frozenset(
    "name url enabled event_types directive_ids schedule_ids host_ids on_change_only".split()
)


async def _test(state: Any, notifier: Notifier) -> Any:
    service: Notifications | None = state.services.get("notifications")
    if service is not None:
        return await service.test(notifier)
    service = Notifications(state)  # the app runs without its loops (tests, ASGI transport)
    try:
        return await service.test(notifier)
    finally:
        await service.http.aclose()


@router.post(
    "/",
    status_code=status.HTTP_201_CREATED,
    response_model=NotifierRead,
    summary="Create a notifier",
    responses=ERRORS(409, 422),
)
async def create_notifier(
    body: Annotated[NotifierCreate, examples("notifier_webhook", "notifier_ntfy")],
    session: SessionDep,
    state: StateDep,
) -> NotifierRead:
    """A URL of a kind (`webhook`: signed JSON; `ntfy`, `discord`, `slack`: their native
    payloads) and what to send it: event types (`run.failed`, `host.*`, ...), optionally only
    for some directives, schedules or hosts, and `on_change_only`.

    The URL must be allowed by DOCKFLEET_NOTIFIER_ALLOWED_NETWORKS (default: the hosts' policy);
    it and `secret` are never shown again. 422 names the field; 409 on a duplicate name."""
    url = body.url.get_secret_value()
    store.check_url(url, state.settings.notifier_networks())
    values = body.model_dump(exclude={"url", "secret"})
    secret = store.check_secret(body.secret.get_secret_value()) if body.secret else None
    notifier = Notifier(**values, url=url, secret=secret or None)
    await store.create(session, notifier)
    await session.commit()
    return store.to_read(notifier)


@router.get("/", response_model=NotifierPage, summary="List notifiers", responses=ERRORS(422))
async def list_notifiers(request: Request, session: SessionDep, page: PageDep) -> NotifierPage:
    """Every notifier (URLs masked, secrets never shown)."""
    count, rows = await store.list_notifiers(session, limit=page.limit, offset=page.offset)
    nxt, prev = page_links(request, page, count)
    return NotifierPage(
        count=count, next=nxt, previous=prev, results=[store.to_read(n) for n in rows]
    )


@router.get(
    "/{key}/", response_model=NotifierRead, summary="Get one notifier", responses=ERRORS(404)
)
async def get_notifier(key: NotifierKey, session: SessionDep) -> NotifierRead:
    """One notifier, by id or name."""
    return store.to_read(await store.get_or_raise(session, parse_key(key)))


@router.patch(
    "/{key}/",
    response_model=NotifierRead,
    summary="Change a notifier",
    responses=ERRORS(404, 409, 422),
)
async def update_notifier(
    key: NotifierKey,
    body: Annotated[NotifierUpdate, examples("notifier_patch")],
    session: SessionDep,
    state: StateDep,
) -> NotifierRead:
    """Change only the fields given; `secret: ""` removes the secret."""
    notifier = await store.get_or_raise(session, parse_key(key))
    changes: dict[str, Any] = body.model_dump(exclude_unset=True, exclude={"url", "secret"})
    for name in _NOT_NULL:
        if name in changes and changes[name] is None:
            del changes[name]
    if body.url is not None:
        url = body.url.get_secret_value()
        store.check_url(url, state.settings.notifier_networks())
        changes["url"] = url
    if "secret" in body.model_fields_set:
        given = store.check_secret(body.secret.get_secret_value()) if body.secret else None
        changes["secret"] = given or None
    await store.update(session, notifier, changes)
    await session.commit()
    return store.to_read(notifier)


@router.delete(
    "/{key}/",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a notifier",
    responses=ERRORS(404),
)
async def delete_notifier(key: NotifierKey, session: SessionDep) -> Response:
    """Delete a notifier and its deliveries (those not sent yet are dropped)."""
    notifier = await store.get_or_raise(session, parse_key(key))
    await store.delete(session, notifier)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{key}/test/",
    response_model=DeliveryRead,
    summary="Send a test notification",
    responses=ERRORS(404),
)
async def test_notifier(key: NotifierKey, session: SessionDep, state: StateDep) -> DeliveryRead:
    """Queue a `notifier.test` event for this notifier and try it at once (bounded by
    DOCKFLEET_NOTIFIER_TIMEOUT_SECONDS): the answer is the delivery with its status code or
    error; a failed try is retried like any other delivery."""
    notifier = await store.get_or_raise(session, parse_key(key))
    await session.commit()
    delivery = await _test(state, notifier)
    assert delivery is not None
    return store.delivery_read(delivery)


@router.get(
    "/{key}/deliveries/",
    response_model=DeliveryPage,
    summary="A notifier's deliveries",
    responses=ERRORS(404, 422),
)
async def list_deliveries(
    key: NotifierKey,
    request: Request,
    session: SessionDep,
    page: PageDep,
    status_: Annotated[
        DeliveryStatus | None, Query(alias="status", description="Only deliveries in this state.")
    ] = None,
) -> DeliveryPage:
    """The delivery log, newest first: event, status, attempts, and per attempt its time, status
    code or error and duration."""
    notifier = await store.get_or_raise(session, parse_key(key))
    assert notifier.id is not None
    count, rows = await store.deliveries(
        session,
        notifier.id,
        status=status_.value if status_ else None,
        limit=page.limit,
        offset=page.offset,
    )
    nxt, prev = page_links(request, page, count)
    return DeliveryPage(count=count, next=nxt, previous=prev, results=rows)
