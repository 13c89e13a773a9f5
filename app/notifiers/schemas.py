"""The notifier API's schemas: create and update bodies, a notifier as shown (secrets masked),
its deliveries."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, Strict, field_validator

from app.limits import DB_INT_MAX

DEFAULT_TYPES = ["run.failed", "schedule.failed", "host.unhealthy"]
MAX_IDS = 100
MAX_SECRET = 4096  # checked by the routes: a 422 from pydantic would echo part of the value


class NotifierKind(StrEnum):
    """Where a notification goes, and the payload it gets."""

    webhook = "webhook"  # our JSON, signed (X-Dockfleet-Signature)
    ntfy = "ntfy"  # a topic URL of an ntfy server
    discord = "discord"  # a Discord webhook URL
    slack = "slack"  # a Slack incoming-webhook URL


class DeliveryStatus(StrEnum):
    """Where a delivery is in the outbox."""

    pending = "pending"  # waits for its (next) attempt
    delivering = "delivering"  # an attempt holds its lease
    delivered = "delivered"  # a 2xx answer
    failed = "failed"  # gave up: attempts exhausted, or an answer retrying cannot change


KindField = Annotated[NotifierKind, Strict(False)]
Id = Annotated[int, Field(ge=1, le=DB_INT_MAX)]
EventType = Annotated[str, Field(min_length=1, max_length=64)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)

    @field_validator("event_types", check_fields=False)
    @classmethod
    def _types(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        from app.events.schemas import parse_types

        parse_types(",".join(value))  # ValueError names the malformed entry
        return list(dict.fromkeys(value))


class _NotifierFields(_Strict):
    url: SecretStr | None = Field(
        None,
        description="http(s) URL: the webhook, ntfy topic, Discord or Slack hook (never shown "
        "again: answers carry `url_masked`).",
    )
    secret: SecretStr | None = Field(
        None,
        description="webhook: the HMAC-SHA256 key of X-Dockfleet-Signature; ntfy: an access "
        "token (sent as Bearer). Never shown again (`has_secret`).",
    )
    enabled: bool | None = None
    event_types: list[EventType] | None = Field(
        None, max_length=50, description="Types to send (`run.*` for a prefix)."
    )
    directive_ids: list[Id] | None = Field(None, max_length=MAX_IDS)
    schedule_ids: list[Id] | None = Field(None, max_length=MAX_IDS)
    host_ids: list[Id] | None = Field(None, max_length=MAX_IDS)
    on_change_only: bool | None = None


class NotifierCreate(_NotifierFields):
    """Body of POST /api/notifiers/."""

    name: str = Field(min_length=1, max_length=200)
    kind: KindField
    url: SecretStr = Field(description="http(s) URL (see the kinds); never shown again.")
    enabled: bool = True
    event_types: list[EventType] = Field(
        default_factory=lambda: list(DEFAULT_TYPES),
        min_length=1,
        max_length=50,
        description="Types to send; `run.*` for a prefix.",
    )
    directive_ids: list[Id] = Field(default_factory=list, max_length=MAX_IDS)
    schedule_ids: list[Id] = Field(default_factory=list, max_length=MAX_IDS)
    host_ids: list[Id] = Field(default_factory=list, max_length=MAX_IDS)
    on_change_only: bool = Field(
        False,
        description="Only when an outcome changes: a schedule's (else directive's) runs start "
        "failing or recover, a host goes unhealthy or back.",
    )


class NotifierUpdate(_NotifierFields):
    """Body of PATCH /api/notifiers/{id}/: only the fields given change; `secret: ""` removes
    the secret."""

    name: str | None = Field(None, min_length=1, max_length=200)


class NotifierRead(BaseModel):
    """A notifier as the API shows it: never its URL's path or query, never its secret."""

    id: int
    name: str
    kind: NotifierKind
    url_masked: str = Field(description="Scheme, host and port only.")
    has_secret: bool
    enabled: bool
    event_types: list[str]
    directive_ids: list[int]
    schedule_ids: list[int]
    host_ids: list[int]
    on_change_only: bool
    created_at: datetime
    updated_at: datetime


class NotifierPage(BaseModel):
    """A page of notifiers."""

    count: int
    next: str | None
    previous: str | None
    results: list[NotifierRead]


class Attempt(BaseModel):
    """One try of a delivery."""

    at: datetime
    status_code: int | None = None
    error: str | None = None
    ms: int = Field(description="How long the try took.")


class DeliveryRead(BaseModel):
    """One notification in the outbox: its event, status, attempts, and their answers."""

    id: int
    notifier_id: int
    event_id: int | None
    event_type: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    log: list[Attempt]
    message: dict[str, Any] = Field(description="What was sent, before the kind's shaping.")
    created_at: datetime
    delivered_at: datetime | None


class DeliveryPage(BaseModel):
    """A page of a notifier's deliveries, newest first."""

    count: int
    next: str | None
    previous: str | None
    results: list[DeliveryRead]
