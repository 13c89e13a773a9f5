"""What both clients need to follow GET /api/events/: a decoder of server-sent events and the
reconnect policy (resume with Last-Event-ID, back off, give up after a bounded outage).

The clients yield `EventRead`; a `stream.reset` (the resume point was no longer kept) is one
too, with `data` saying which ids are kept: whoever follows should re-read the state.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from app import clock
from app.client._core import DockfleetError
from app.events.schemas import STREAM_RESET, EventRead

KEEPALIVE = object()  # what the decoder yields for a comment line (a keep-alive)
OPEN = object()  # what a stream yields each time a connection is answered (subscribed)
EVENTS = "/api/events/"
RECONNECT_SECONDS = 30.0  # an outage longer than this ends the iteration with an error
READ_TIMEOUT = 60.0  # the server sends a keep-alive every 15 s (by default) when idle


@dataclass
class Decoder:
    """Turns the lines of an event stream into `EventRead`s (or KEEPALIVE for comments)."""

    _id: str | None = None
    _event: str = "message"
    _data: list[str] = field(default_factory=list)

    def line(self, text: str) -> EventRead | object | None:
        """Feed one line (without its newline); returns a whole message when one ended."""
        if text == "":
            return self._dispatch()
        if text.startswith(":"):
            return KEEPALIVE
        name, _, value = text.partition(":")
        value = value.removeprefix(" ")
        if name == "id":
            self._id = value
        elif name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        return None

    def _dispatch(self) -> EventRead | None:
        data, event, ident = "\n".join(self._data), self._event, self._id
        self._data, self._event = [], "message"
        if not data:
            return None
        try:
            body: Any = json.loads(data)
        except ValueError:
            return None
        if event == STREAM_RESET:
            return EventRead(
                id=int(ident or 0), created_at=clock.now(), type=STREAM_RESET, data=body
            )
        return EventRead.model_validate(body)


def stream_params(
    types: str | list[str] | None,
    run_id: int | None,
    host_id: int | None,
    after: int | None,
) -> dict[str, Any]:
    """The query of GET /api/events/."""
    params: dict[str, Any] = {}
    if types:
        params["types"] = types if isinstance(types, str) else ",".join(types)
    if run_id is not None:
        params["run_id"] = run_id
    if host_id is not None:
        params["host_id"] = host_id
    if after is not None:
        params["after"] = after
    return params


class Resume:
    """Where to resume, and how long to wait before the next connection attempt."""

    def __init__(self, after: int | None, reconnect_seconds: float = RECONNECT_SECONDS) -> None:
        self.last_id = after
        self.reconnect_seconds = reconnect_seconds
        self._down_since: float | None = None
        self._delay = 0.25
        self._ever_connected = False

    def headers(self) -> dict[str, str]:
        """Last-Event-ID once an event was seen (or `after` was given)."""
        return {"Last-Event-ID": str(self.last_id)} if self.last_id is not None else {}

    def connected(self) -> None:
        """A connection was answered: the next outage starts afresh."""
        self._down_since, self._delay = None, 0.25
        self._ever_connected = True

    def seen(self, event: EventRead) -> None:
        """Remember the id to resume after."""
        self.last_id = event.id

    def retry_in(self, error: DockfleetError) -> float:
        """Seconds to wait before reconnecting; raises `error` once the outage is too long,
        or at once when no connection was ever answered (a wrong URL, a server not there)."""
        if not self._ever_connected:
            raise error
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
        if now - self._down_since > self.reconnect_seconds:
            raise error
        delay, self._delay = self._delay, min(self._delay * 2, 5.0)
        return delay


def retryable(status: int | None) -> bool:
    """No answer, or a server that is restarting or has no database just now."""
    return status is None or status in (502, 503, 504)
