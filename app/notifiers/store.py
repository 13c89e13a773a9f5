"""Queries and writes for notifiers and their deliveries; callers own the transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.errors import InvalidField
from app.named import NamedStore
from app.notifiers import address
from app.notifiers.models import Delivery, Notifier
from app.notifiers.schemas import MAX_SECRET, Attempt, DeliveryRead, NotifierRead

_rows = NamedStore(Notifier, "notifier")
get_or_raise = _rows.get_or_raise
create = _rows.create
update = _rows.update
delete = _rows.delete


def check_url(url: str, networks: list[Any]) -> None:
    """422 on `url` (never echoing its path or query)."""
    try:
        address.check_url(url, networks)
    except address.AddressError as exc:
        raise InvalidField("url", f"the URL {exc}") from None


def check_secret(secret: str) -> str:
    """422 on `secret` when it is too long (never echoing it)."""
    if len(secret) > MAX_SECRET:
        raise InvalidField("secret", f"longer than {MAX_SECRET} characters")
    return secret


async def list_notifiers(
    session: AsyncSession, *, limit: int = 100, offset: int = 0
) -> tuple[int, list[Notifier]]:
    """A page of notifiers ordered by id, and the total count."""
    return await _rows.page(session, select(Notifier), limit, offset)


async def deliveries(
    session: AsyncSession, notifier_id: int, *, status: str | None, limit: int, offset: int
) -> tuple[int, list[DeliveryRead]]:
    """A page of a notifier's deliveries, newest first."""
    where = [col(Delivery.notifier_id) == notifier_id]
    if status is not None:
        where.append(col(Delivery.status) == status)
    total = (await session.exec(select(func.count()).select_from(Delivery).where(*where))).one()
    query = (
        select(Delivery).where(*where).order_by(col(Delivery.id).desc()).limit(limit).offset(offset)
    )
    return total, [delivery_read(d) for d in (await session.exec(query)).all()]


def delivery_read(d: Delivery) -> DeliveryRead:
    """The API view of a delivery."""
    values = d.model_dump(exclude={"lease_owner", "lease_expires_at", "log"})
    return DeliveryRead(**values, log=[Attempt.model_validate(a) for a in d.log or []])


def to_read(n: Notifier) -> NotifierRead:
    """The API view of a notifier: the URL masked, the secret only as `has_secret`."""
    values = n.model_dump(exclude={"url", "secret"})
    return NotifierRead(**values, url_masked=address.masked(n.url), has_secret=bool(n.secret))
