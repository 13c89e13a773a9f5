"""FastAPI dependencies: the app's state, a session per request, settings, the API token."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel.ext.asyncio.session import AsyncSession

from app.auth import matches
from app.config import Settings
from app.db import Database
from app.engine.pool import DockerPool
from app.errors import Unauthorized
from app.limits import DB_INT_MAX

if TYPE_CHECKING:
    from app.hosts.monitor import HealthMonitor


@dataclass
class AppState:
    """Everything a request or a loop needs, built once in create_app."""

    settings: Settings
    db: Database
    pool: DockerPool
    instance_id: str = ""
    tokens: list[str] = field(default_factory=list)
    policy: Any = None  # app.tasks.policy.TaskPolicy (built from the settings)
    monitor: HealthMonitor | None = None
    services: dict[str, Any] = field(default_factory=dict)


async def get_state(request: Request) -> AppState:
    """The AppState of the app serving this request."""
    state: AppState = request.app.state.dockfleet
    return state


StateDep = Annotated[AppState, Depends(get_state)]


async def get_settings(state: StateDep) -> Settings:
    """The app's settings."""
    return state.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_session(state: StateDep) -> AsyncIterator[AsyncSession]:
    """One session per request; the route commits."""
    async with state.db.sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


_bearer = HTTPBearer(auto_error=False, description="DOCKFLEET_API_TOKEN, when the server sets one")


async def require_token(
    state: StateDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """When DOCKFLEET_API_TOKEN is set, demand `Authorization: Bearer <token>`.

    The ingress TokenGate has already refused a request without a right token (before its
    body was read); this is the same check again, and what declares the scheme in OpenAPI."""
    if not state.tokens:
        return
    given = credentials.credentials if credentials is not None else None
    if not matches(given, [t.encode() for t in state.tokens]):
        raise Unauthorized("missing or wrong bearer token")


@dataclass
class PageParams:
    """?limit= and ?offset= of a list."""

    limit: int
    offset: int


async def page_params(
    limit: Annotated[int, Query(ge=1, le=1000, description="Items per page.")] = 100,
    offset: Annotated[int, Query(ge=0, le=DB_INT_MAX, description="Items to skip.")] = 0,
) -> PageParams:
    """Parse pagination parameters."""
    return PageParams(limit, offset)


PageDep = Annotated[PageParams, Depends(page_params)]

# Path ids, bounded to the database's integer range (a bigger one is a 422, not an overflow).
HostId = Annotated[int, Path(ge=1, le=DB_INT_MAX, description="The worker host's id.")]
DirectiveId = Annotated[int, Path(ge=1, le=DB_INT_MAX, description="The directive's id.")]
RunId = Annotated[int, Path(ge=1, le=DB_INT_MAX, description="The run's id.")]
# ?filter= ids likewise.
IdQuery = Annotated[int | None, Query(ge=1, le=DB_INT_MAX)]


def page_links(request: Request, page: PageParams, count: int) -> tuple[str | None, str | None]:
    """The next and previous URLs of a page."""
    url = request.url
    nxt = prev = None
    if page.offset + page.limit < count:
        nxt = str(url.include_query_params(limit=page.limit, offset=page.offset + page.limit))
    if page.offset > 0:
        prev = str(
            url.include_query_params(limit=page.limit, offset=max(0, page.offset - page.limit))
        )
    return nxt, prev
