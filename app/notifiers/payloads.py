"""What an event says (`message`), and how each kind wants it (its native payload), signed.

The webhook's signature: `X-Dockfleet-Timestamp: <unix seconds>` and
`X-Dockfleet-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>` where body is
the exact bytes sent. The timestamp is inside the signed text, so a receiver that refuses
timestamps older than a few minutes refuses replays too (Stripe's scheme):

    expected = hmac.new(secret, f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    ok = hmac.compare_digest(f"sha256={expected}", header) and abs(time.time() - int(ts)) < 300
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime
from typing import Any

from app.notifiers.schemas import NotifierKind

GOOD = {"run.succeeded", "host.healthy", "notifier.test"}
BAD = {"run.failed", "host.unhealthy", "host.lost", "schedule.failed", "schedule.missed"}
COLOURS = {"error": 0xD83C3E, "ok": 0x2EB67D, "info": 0x5865F2}
USER_AGENT = "dockfleet-notifier"


def severity(event_type: str) -> str:
    """error, ok or info."""
    if event_type in BAD:
        return "error"
    return "ok" if event_type in GOOD else "info"


def describe(event: dict[str, Any], facts: dict[str, Any]) -> tuple[str, str]:
    """A title and one line of text for people."""
    kind, data = event["type"], event.get("data") or {}
    subject, _, verb = kind.partition(".")
    if subject == "run":
        title = f"run {event.get('run_id')} {verb}"
        about = [
            f"directive {data['directive']}" if data.get("directive") else "",
            f"schedule {facts['schedule']}" if facts.get("schedule") else "",
            f"host {data['host']}" if data.get("host") else "",
        ]
    elif subject == "host":
        title = f"host {data.get('host') or event.get('host_id')} {verb}"
        about = []
    elif subject == "schedule":
        title = f"schedule {data.get('schedule')} {verb}"
        code = data.get("status_code")
        about = [f"due {data['due_at']}" if data.get("due_at") else "", f"{code}" if code else ""]
    else:
        title, about = kind, []
    text = title
    parts = [p for p in about if p]
    if parts:
        text += f" ({', '.join(parts)})"
    if data.get("error"):
        text += f": {str(data['error'])[:500]}"
    return f"dockfleet: {title}", text


def message(event: dict[str, Any], facts: dict[str, Any]) -> dict[str, Any]:
    """The neutral message a delivery stores (the webhook's body, others are shaped from it)."""
    title, text = describe(event, facts)
    return {
        "event": event,
        "title": title,
        "text": text,
        "severity": severity(event["type"]),
        **{k: v for k, v in facts.items() if v is not None},
    }


def shape(kind: NotifierKind, msg: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """The body and headers of the kind (signature headers are added by `sign`)."""
    headers = {"User-Agent": USER_AGENT}
    if kind == NotifierKind.ntfy:
        # ntfy: the body is the message, headers carry title, priority and tags.
        headers |= {
            "Title": msg["title"],
            "Priority": "high" if msg["severity"] == "error" else "default",
            "Tags": {"error": "rotating_light", "ok": "white_check_mark"}.get(
                msg["severity"], "information_source"
            ),
            "Content-Type": "text/plain; charset=utf-8",
        }
        return msg["text"].encode(), headers
    headers["Content-Type"] = "application/json"
    if kind == NotifierKind.discord:
        event = msg["event"]
        fields = [{"name": "event", "value": event["type"], "inline": True}]
        if event.get("run_id"):
            fields.append({"name": "run", "value": str(event["run_id"]), "inline": True})
        body: dict[str, Any] = {
            "username": "dockfleet",
            "content": msg["title"],
            "embeds": [
                {
                    "title": msg["title"][:256],
                    "description": msg["text"][:4000],
                    "color": COLOURS[msg["severity"]],
                    "fields": fields,
                    "timestamp": event.get("created_at"),
                }
            ],
            "allowed_mentions": {"parse": []},
        }
    elif kind == NotifierKind.slack:
        body = {
            "text": msg["text"],
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": msg["title"][:150]}},
                {"type": "section", "text": {"type": "mrkdwn", "text": msg["text"][:3000]}},
            ],
        }
    else:
        body = msg
    return json.dumps(body, separators=(",", ":"), default=str).encode(), headers


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>` of HMAC-SHA256(secret, timestamp + "." + body)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def request(
    kind: NotifierKind, msg: dict[str, Any], secret: str | None, now: datetime, delivery_id: int
) -> tuple[bytes, dict[str, str]]:
    """The body and every header of one attempt."""
    body, headers = shape(kind, msg)
    if kind == NotifierKind.webhook:
        timestamp = str(int(now.timestamp()))
        headers |= {
            "X-Dockfleet-Event": str(msg["event"]["type"]),
            "X-Dockfleet-Delivery": str(delivery_id),
            "X-Dockfleet-Timestamp": timestamp,
        }
        if secret:
            headers["X-Dockfleet-Signature"] = signature(secret, timestamp, body)
    elif kind == NotifierKind.ntfy and secret:
        headers["Authorization"] = f"Bearer {secret}"
    return body, headers
