"""What the sync and async clients share: where the server is, the one error, and a request.

A `Call` is one HTTP request plus the function that reads its answer; building calls
(`calls.py`) and reading answers happen here, so the two clients only do the I/O.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Generic, Protocol, TypeVar

import httpx
from pydantic import BaseModel

from app.runs.schemas import FINAL, RunRead

DEFAULT_URL = "http://localhost:9595"
DEFAULT_TIMEOUT = 30.0

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
M = TypeVar("M", bound=BaseModel)
Item = TypeVar("Item", covariant=True)


class DockfleetError(Exception):
    """Every failure the client reports: an error answer (`status`) or no answer (`status` None).

    `detail` is the server's `detail` (a string, or FastAPI's list of field errors), `code` its
    stable error code, `body` the whole JSON error body (e.g. `hosts` of a 503 on launch).
    """

    def __init__(
        self,
        status: int | None,
        detail: Any,
        *,
        code: str | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> None:
        self.status = status
        self.detail = detail
        self.code = code
        self.body: Mapping[str, Any] = body or {}
        super().__init__(self.message)

    @property
    def message(self) -> str:
        """One line a person can read: `404: worker host 9 not found`."""
        text = format_detail(self.detail)
        return text if self.status is None else f"{self.status}: {text}"

    def __str__(self) -> str:
        return self.message


class RunWaitTimeout(DockfleetError, TimeoutError):
    """`wait_for_run` gave up before the run reached a final status; `.run` is its last state."""

    def __init__(self, run: RunRead, timeout: float) -> None:
        self.run = run
        super().__init__(None, f"run {run.id} is still {run.status.value} after {timeout:g}s")


def format_detail(detail: Any) -> str:
    """A server `detail` as text; FastAPI's field errors become `field: message; …`."""
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, Mapping) and "msg" in item:
                loc = [str(p) for p in item.get("loc", []) if p not in ("body", "query", "path")]
                parts.append(f"{'.'.join(loc)}: {item['msg']}" if loc else str(item["msg"]))
            else:
                parts.append(str(item))
        return "; ".join(parts)
    return str(detail)


def resolve_url(url: str | None) -> str:
    """The base URL: the argument, else $DOCKFLEET_URL, else http://localhost:9595."""
    chosen = (url or os.environ.get("DOCKFLEET_URL") or DEFAULT_URL).strip().rstrip("/")
    if "://" not in chosen:
        chosen = "http://" + chosen
    return chosen


def auth_headers(token: str | None) -> dict[str, str]:
    """The bearer header: the argument, else $DOCKFLEET_API_TOKEN, else none."""
    chosen = token if token is not None else os.environ.get("DOCKFLEET_API_TOKEN")
    return {"Authorization": f"Bearer {chosen}"} if chosen else {}


def transport_error(url: str, exc: httpx.TransportError) -> DockfleetError:
    """No answer at all: the server is down, the URL is wrong, or it did not answer in time."""
    reason = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
        return DockfleetError(None, f"dockfleet at {url} did not answer in time: {reason}")
    return DockfleetError(None, f"cannot reach dockfleet at {url}: {reason}")


def error_from(response: httpx.Response) -> DockfleetError:
    """The DockfleetError of an error answer (its body must have been read)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "detail" in body:
        return DockfleetError(
            response.status_code, body["detail"], code=body.get("code"), body=body
        )
    text = response.text.strip() or response.reason_phrase
    return DockfleetError(response.status_code, text)


def checked(response: httpx.Response) -> httpx.Response:
    """The response itself, or its DockfleetError raised."""
    if response.is_error:
        raise error_from(response)
    return response


def model(cls: type[M]) -> Callable[[httpx.Response], M]:
    """A reader that parses the JSON answer into `cls`."""
    return lambda response: cls.model_validate_json(checked(response).content)


def nothing(response: httpx.Response) -> None:
    """A reader for answers without a body (204)."""
    checked(response)


@dataclass(frozen=True)
class Call(Generic[T_co]):
    """One request and the function that reads its answer."""

    method: str
    path: str
    read: Callable[[httpx.Response], T_co]
    params: Mapping[str, Any] | None = None
    json: Any = None

    def follow(self, next_url: str) -> Call[T_co]:
        """The same list call for the page `next_url` names (its query, our path)."""
        return replace(self, params=dict(httpx.URL(next_url).params))


class Page(Protocol[Item]):
    """What every paginated list answer has."""

    @property
    def next(self) -> str | None: ...

    @property
    def results(self) -> Sequence[Item]: ...


class Waiter:
    """The clock of `wait_for_run`: when to poll again, and when to give up."""

    def __init__(self, timeout: float | None, interval: float) -> None:
        self.timeout = timeout
        self.interval = interval
        self.deadline = None if timeout is None else time.monotonic() + timeout

    @staticmethod
    def done(run: RunRead) -> bool:
        """Whether the run reached a final status (succeeded, failed, cancelled)."""
        return run.status in FINAL

    def delay(self, run: RunRead) -> float:
        """Seconds to sleep before the next poll; RunWaitTimeout once the time is up."""
        if self.deadline is None:
            return self.interval
        left = self.deadline - time.monotonic()
        if left <= 0:
            assert self.timeout is not None
            raise RunWaitTimeout(run, self.timeout)
        return min(self.interval, left)


def body_of(body: BaseModel | Mapping[str, Any] | None, fields: Mapping[str, Any]) -> Any:
    """A JSON request body from a model or a mapping, with keyword fields on top."""
    if isinstance(body, BaseModel):
        data: dict[str, Any] = body.model_dump(mode="json", exclude_unset=True)
    else:
        data = dict(body or {})
    for key, value in fields.items():
        data[key] = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
    return data
