"""HTTP routes for /api/tasks/: task definitions, addressed by id or by name."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response, status

from app.deps import PageDep, SessionDep, StateDep, page_links
from app.errors import InvalidField
from app.named import parse_key
from app.openapi import ERRORS, examples
from app.tasks import store
from app.tasks.models import (
    GPU_NEEDS_FLAG,
    POLICY_ONLY,
    TaskCreate,
    TaskDefinition,
    TaskPage,
    TaskRead,
    TaskUpdate,
)
from app.tasks.policy import refuse

router = APIRouter(prefix="/tasks", tags=["tasks"])

TaskKey = Annotated[
    str,
    Path(
        max_length=100,
        description="The task's id (all digits) or its name.",
        examples=["log_triage"],
    ),
]
# Table columns that cannot be NULL: a null in a PATCH leaves them unchanged.
_NOT_NULL = frozenset(
    "name description image env requires_gpu gpu_count max_retries binds enabled".split()
)


@router.post(
    "/",
    status_code=status.HTTP_201_CREATED,
    response_model=TaskRead,
    summary="Create a task definition",
    responses=ERRORS(409, 422),
)
async def create_task(
    body: Annotated[TaskCreate, examples("task")], session: SessionDep, state: StateDep
) -> TaskRead:
    """Define one container of a run: image, command, env, binds, network mode, limits, GPUs.

    `command` is an argv list, or a string split like a shell would. 409 on a duplicate name.
    The task policy applies (see the README's security model): 422 naming the field and rule.
    """
    values = body.model_dump(exclude_none=True, exclude=set(POLICY_ONLY))
    refuse(state.policy.task_problems(values))
    task = TaskDefinition(**values)
    await store.create(session, task)
    await session.commit()
    return store.to_read(task)


@router.get("/", response_model=TaskPage, summary="List task definitions")
async def list_tasks(
    request: Request,
    session: SessionDep,
    page: PageDep,
    enabled: Annotated[bool | None, Query(description="Only enabled (or disabled) tasks.")] = None,
) -> TaskPage:
    """Every task definition, ordered by id, a page at a time."""
    count, tasks = await store.list_tasks(
        session, enabled=enabled, limit=page.limit, offset=page.offset
    )
    nxt, prev = page_links(request, page, count)
    return TaskPage(count=count, next=nxt, previous=prev, results=[store.to_read(t) for t in tasks])


@router.get(
    "/{key}/", response_model=TaskRead, summary="Get one task definition", responses=ERRORS(404)
)
async def get_task(key: TaskKey, session: SessionDep) -> TaskRead:
    """One task definition, by id or by name."""
    return store.to_read(await store.get_or_raise(session, parse_key(key)))


@router.patch(
    "/{key}/",
    response_model=TaskRead,
    summary="Change a task definition",
    responses=ERRORS(404, 409, 422),
)
async def update_task(
    key: TaskKey,
    body: Annotated[TaskUpdate, examples("task_patch")],
    session: SessionDep,
    state: StateDep,
) -> TaskRead:
    """Change only the fields given; the result is checked as a whole (GPUs).

    null clears an optional field (command, timeout, limits, network mode) and leaves the
    others unchanged. Runs already launched keep the snapshot they were launched with.
    """
    task = await store.get_or_raise(session, parse_key(key))
    changes: dict[str, Any] = body.model_dump(exclude_unset=True)
    for name in _NOT_NULL:
        if name in changes and changes[name] is None:
            del changes[name]
    for name in POLICY_ONLY:
        changes.pop(name, None)
    refuse(state.policy.task_problems({**task.model_dump(), **changes}))
    requires_gpu = changes.get("requires_gpu", task.requires_gpu)
    if changes.get("gpu_count", task.gpu_count) > 0 and not requires_gpu:
        field = "gpu_count" if "gpu_count" in changes else "requires_gpu"
        raise InvalidField(field, GPU_NEEDS_FLAG)
    for name in ("gpu_memory_mb", "gpu_name"):
        if changes.get(name, getattr(task, name)) and not requires_gpu:
            field = name if name in changes else "requires_gpu"
            raise InvalidField(field, f"{name} needs requires_gpu: true")
    await store.update(session, task, changes)
    await session.commit()
    return store.to_read(task)


@router.delete(
    "/{key}/",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a task definition",
    responses=ERRORS(404),
)
async def delete_task(key: TaskKey, session: SessionDep) -> Response:
    """Delete a task definition; runs that used it keep their own snapshot of it."""
    task = await store.get_or_raise(session, parse_key(key))
    await store.delete(session, task)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
