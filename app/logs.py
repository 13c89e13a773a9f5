"""Process logging: text for people or JSON lines for machines, secrets scrubbed from both.

`configure(settings)` is called once per process (`dockfleet serve`, `app_factory`). A record
says which run or host it is about through `extra={"run_id": …, "host_id": …}` or, for every
line of a task, the context variables RUN_ID / HOST_ID (set by a run's supervisor and by a
host's live check). Every API token and the database password are replaced by `***` in the
message and the traceback of both formats, by the same function.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from app.config import Settings

RUN_ID: ContextVar[int | None] = ContextVar("dockfleet_run_id", default=None)
HOST_ID: ContextVar[int | None] = ContextVar("dockfleet_host_id", default=None)

TEXT_FORMAT = "%(levelname)s:     %(name)s: %(message)s"
_secrets: set[str] = set()
_UVICORN = ("uvicorn", "uvicorn.error", "uvicorn.access")


def add_secret(value: str | None) -> None:
    """Never let `value` reach a log line (e.g. a webhook's token); short values are ignored."""
    if value and len(value) >= 6:
        _secrets.add(value)


def scrub(text: str) -> str:
    """`text` with every known secret replaced by ***."""
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, "***")
    return text


def _about(record: logging.LogRecord) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, var in (("run_id", RUN_ID), ("host_id", HOST_ID)):
        value = getattr(record, key, None)
        if value is None:
            value = var.get()
        if value is not None:
            out[key] = value
    event = getattr(record, "event", None)
    if event:
        out["event"] = event
    return out


class TextFormatter(logging.Formatter):
    """The usual one-line text, scrubbed."""

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, run_id/host_id, exc."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC)
        body: dict[str, Any] = {
            "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": scrub(record.getMessage()),
            **_about(record),
        }
        if record.exc_info:
            body["exc"] = scrub(self.formatException(record.exc_info))
        elif record.exc_text:
            body["exc"] = scrub(record.exc_text)
        return json.dumps(body, ensure_ascii=False, default=str)


def _settings_secrets(settings: Settings) -> None:
    try:
        for token in settings.tokens():
            add_secret(token)
    except (OSError, ValueError):
        pass
    from sqlalchemy.engine import make_url

    try:
        add_secret(make_url(settings.database_url).password)
    except Exception:  # a URL that does not parse is reported by whoever uses it
        pass


def configure(settings: Settings) -> None:
    """Set the root logger up once for this process: level, format, scrubbing."""
    _settings_secrets(settings)
    json_lines = settings.log_format.lower() == "json"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    if json_lines:  # uvicorn's own lines (access log included) become JSON lines too
        for name in _UVICORN:
            logger = logging.getLogger(name)
            logger.handlers.clear()
            logger.propagate = True


def pass_failed(logger: logging.Logger, what: str, exc: BaseException | None = None) -> None:
    """Log a background pass that failed (`exc`, else the exception being handled): a database
    that cannot answer (locked, out of connections, away) is one warning line, since the next
    pass tries again; anything else is an error with its traceback."""
    from app.db import unavailable_reason

    exc = exc if exc is not None else sys.exc_info()[1]
    reason = unavailable_reason(exc) if exc is not None else None
    if reason is not None:
        logger.warning("%s: database unavailable (%s); the next pass tries again", what, reason)
    else:
        logger.error(what, exc_info=exc)
