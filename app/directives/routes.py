"""HTTP routes for /api/directives/: named defaults that runs are launched from."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status

from app.deps import DirectiveId, PageDep, SessionDep, page_links
from app.directives import store
from app.directives.models import (
    Directive,
    DirectiveCreate,
    DirectivePage,
    DirectiveRead,
    DirectiveUpdate,
)
from app.openapi import ERRORS, examples
from app.tasks.policy import env_problems, refuse

router = APIRouter(prefix="/directives", tags=["directives"])


@router.post(
    "/",
    status_code=status.HTTP_201_CREATED,
    response_model=DirectiveRead,
    summary="Create a directive",
    responses=ERRORS(409, 422),
)
async def create_directive(
    body: Annotated[DirectiveCreate, examples("directive")], session: SessionDep
) -> DirectiveRead:
    """Create a directive: its default `tasks` (empty = every enabled task) and `env`.

    Every name in `tasks` must be a task definition (422 naming the unknown ones).
    """
    await store.check_tasks(session, body.tasks)
    refuse(env_problems(body.env))
    directive = Directive(**body.model_dump())
    await store.create(session, directive)
    await session.commit()
    return store.to_read(directive)


@router.get("/", response_model=DirectivePage, summary="List directives")
async def list_directives(
    request: Request,
    session: SessionDep,
    page: PageDep,
    name: Annotated[
        str | None, Query(max_length=200, description="Only the directive with this exact name.")
    ] = None,
) -> DirectivePage:
    """Every directive, ordered by id, a page at a time."""
    count, directives = await store.list_directives(
        session, name=name, limit=page.limit, offset=page.offset
    )
    nxt, prev = page_links(request, page, count)
    results = [store.to_read(d) for d in directives]
    return DirectivePage(count=count, next=nxt, previous=prev, results=results)


@router.get(
    "/{directive_id}/",
    response_model=DirectiveRead,
    summary="Get one directive",
    responses=ERRORS(404),
)
async def get_directive(directive_id: DirectiveId, session: SessionDep) -> DirectiveRead:
    """One directive by id."""
    return store.to_read(await store.get_or_raise(session, directive_id))


@router.patch(
    "/{directive_id}/",
    response_model=DirectiveRead,
    summary="Change a directive",
    responses=ERRORS(404, 409, 422),
)
async def update_directive(
    directive_id: DirectiveId,
    body: Annotated[DirectiveUpdate, examples("directive_patch")],
    session: SessionDep,
) -> DirectiveRead:
    """Change only the fields given; null leaves a field unchanged.

    Runs already launched keep the snapshot they were launched with.
    """
    directive = await store.get_or_raise(session, directive_id)
    changes: dict[str, Any] = {
        k: v for k, v in body.model_dump(exclude_unset=True).items() if v is not None
    }
    if "tasks" in changes:
        await store.check_tasks(session, changes["tasks"])
    refuse(env_problems(changes.get("env") or {}))
    await store.update(session, directive, changes)
    await session.commit()
    return store.to_read(directive)


@router.delete(
    "/{directive_id}/",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a directive",
    responses=ERRORS(404),
)
async def delete_directive(directive_id: DirectiveId, session: SessionDep) -> Response:
    """Delete a directive; its runs stay, each with the snapshot it was launched from."""
    directive = await store.get_or_raise(session, directive_id)
    await store.delete(session, directive)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
