"""Log lines: text for people, JSON for machines, run_id/host_id attached, secrets scrubbed."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Iterator

import pytest

from app import logs
from app.config import Settings
from tests.conftest import make_settings

SECRET = "s3cret-token-value-0123456789"


def _record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("dockfleet.test", logging.WARNING, __file__, 1, message, args, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


@pytest.fixture(autouse=True)
def _root_restored() -> Iterator[None]:
    """configure() sets the process's root logger up: put pytest's back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def settings(db_url: str) -> Settings:
    return make_settings(db_url, api_token=f"{SECRET},another-token-abcdef")


def test_json_lines_carry_the_fields_and_scrub_like_text(settings: Settings) -> None:
    logs.configure(settings)
    record = _record("run %s failed: %s", 7, f"bad auth {SECRET}", run_id=7, host_id=3)
    text = logs.TextFormatter(logs.TEXT_FORMAT).format(record)
    line = logs.JsonFormatter().format(record)
    body = json.loads(line)
    assert body["level"] == "warning" and body["logger"] == "dockfleet.test"
    assert body["time"].endswith("Z") and "T" in body["time"]
    assert body["message"] == "run 7 failed: bad auth ***"
    assert (body["run_id"], body["host_id"]) == (7, 3)
    assert SECRET not in line and SECRET not in text
    assert text.endswith(body["message"])  # the same scrubbed message in both formats


def test_context_variables_name_the_run_and_host_of_a_task() -> None:
    async def inside() -> str:
        logs.RUN_ID.set(42)
        logs.HOST_ID.set(5)
        return logs.JsonFormatter().format(_record("attempt started"))

    body = json.loads(asyncio.run(inside()))
    assert (body["run_id"], body["host_id"]) == (42, 5)
    assert "run_id" not in json.loads(logs.JsonFormatter().format(_record("elsewhere")))


def test_tracebacks_are_scrubbed_and_kept() -> None:
    logs.add_secret(SECRET)
    try:
        raise RuntimeError(f"cannot use {SECRET}")
    except RuntimeError:
        record = logging.LogRecord(
            "dockfleet",
            logging.ERROR,
            __file__,
            1,
            "boom",
            None,
            exc_info=sys.exc_info(),
        )
    body = json.loads(logs.JsonFormatter().format(record))
    assert "RuntimeError: cannot use ***" in body["exc"]
    assert SECRET not in logs.TextFormatter(logs.TEXT_FORMAT).format(record)


def test_database_password_is_a_secret() -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, database_url="postgresql+asyncpg://dockfleet:pa55-word-xyz@127.0.0.1/db"
    )
    logs.configure(settings)
    assert logs.scrub("connect failed for pa55-word-xyz") == "connect failed for ***"


def test_the_format_setting_is_checked() -> None:
    with pytest.raises(ValueError, match="log_format"):
        Settings(_env_file=None, log_format="xml")  # type: ignore[call-arg]


def test_a_background_pass_that_meets_a_busy_database_logs_one_warning_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    from app.logs import pass_failed

    logger = logging.getLogger("dockfleet.test")
    with caplog.at_level(logging.WARNING, logger="dockfleet.test"):
        try:
            raise PoolTimeout("QueuePool limit of size 5 overflow 10 reached")
        except PoolTimeout:
            pass_failed(logger, "scheduler pass failed")
        pass_failed(logger, "health check of host 7 failed", RuntimeError("a bug"))
    busy, bug = caplog.records
    assert busy.levelno == logging.WARNING and busy.exc_info is None
    assert busy.getMessage() == (
        "scheduler pass failed: database unavailable (no database connection free in time); "
        "the next pass tries again"
    )
    assert bug.levelno == logging.ERROR and bug.exc_info is not None
