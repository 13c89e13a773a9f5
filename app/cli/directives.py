"""`dockfleet directives …` and `dockfleet tasks …`: what runs are made of."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from app.cli import render
from app.cli.common import (
    JsonOpt,
    client,
    directive_id,
    emit,
    key_values,
    out,
    print_json,
    split_names,
)
from app.client import TaskRead

directives = typer.Typer(
    help="Directives: named defaults (tasks, env) runs are launched from.", no_args_is_help=True
)
tasks = typer.Typer(
    help="Task definitions: one container each (image, command, GPUs, limits).",
    no_args_is_help=True,
)

DirectiveArg = Annotated[
    str, typer.Argument(help="The directive's id or name.", show_default=False)
]
TaskArg = Annotated[str, typer.Argument(help="The task's id or name.", show_default=False)]
EnvOpt = Annotated[
    list[str] | None, typer.Option("--env", help="An environment variable KEY=VALUE (repeatable).")
]


@directives.command("list")
def list_directives(ctx: typer.Context, json: JsonOpt = False) -> None:
    """List every directive."""
    found = list(client(ctx).directives.iter())
    if json:
        print_json(found)
    elif not found:
        out().print("no directives: add one with dockfleet directives add default")
    else:
        out().print(render.directives_table(found))


@directives.command("add")
def add_directive(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A unique name, e.g. default.", show_default=False)],
    description: Annotated[str, typer.Option(help="What it is for.")] = "",
    task: Annotated[
        list[str] | None,
        typer.Option(help="A default task (repeatable, in order); none = every enabled task."),
    ] = None,
    env: EnvOpt = None,
    json: JsonOpt = False,
) -> None:
    """Create a directive.

    Example: dockfleet directives add default --description "Default orchestrator directive"
    """
    body = {
        "name": name,
        "description": description,
        "tasks": split_names(task) or [],
        "env": key_values(env, "--env"),
    }
    created = client(ctx).directives.create(body)
    emit(created, json, lambda: f"created directive {created.name} (#{created.id})")


@directives.command("show")
def show_directive(ctx: typer.Context, directive: DirectiveArg, json: JsonOpt = False) -> None:
    """Show one directive."""
    found = client(ctx).directives.get(directive_id(ctx, directive))
    emit(found, json, lambda: render.directive_detail(found))


@directives.command("rm")
def remove_directive(ctx: typer.Context, directive: DirectiveArg, json: JsonOpt = False) -> None:
    """Delete a directive (its runs stay, with the snapshot they were launched from)."""
    key = directive_id(ctx, directive)
    client(ctx).directives.delete(key)
    emit({"id": key, "deleted": True}, json, lambda: f"directive {directive} deleted")


@tasks.command("list")
def list_tasks(
    ctx: typer.Context,
    json: JsonOpt = False,
    enabled: Annotated[
        bool | None, typer.Option("--enabled/--disabled", help="Only enabled (or disabled) tasks.")
    ] = None,
) -> None:
    """List task definitions."""
    found = list(client(ctx).tasks.iter(enabled=enabled))
    emit(found, json, lambda: render.tasks_table(found))


@tasks.command("add")
def add_task(
    ctx: typer.Context,
    name: Annotated[
        str, typer.Argument(help="Slug: lower-case letters, digits, _ . -", show_default=False)
    ],
    image: Annotated[str, typer.Option(help="Image, e.g. busybox:1.36.", show_default=False)],
    command: Annotated[
        list[str] | None,
        typer.Argument(help="The container's command, after --. Default: the image's."),
    ] = None,
    description: Annotated[str, typer.Option(help="What it does.")] = "",
    env: EnvOpt = None,
    gpus: Annotated[int, typer.Option(min=0, help="GPUs one container needs (0 = none).")] = 0,
    gpu_memory_mb: Annotated[
        int | None, typer.Option(min=1, help="Each GPU has at least this much memory (MiB).")
    ] = None,
    gpu_name: Annotated[
        str | None, typer.Option(help='Each GPU\'s name contains this, e.g. "4090".')
    ] = None,
    timeout: Annotated[
        int | None, typer.Option(min=1, help="Kill the container after this many seconds.")
    ] = None,
    retries: Annotated[
        int, typer.Option(min=0, help="Further attempts after a failed one (or a lost host).")
    ] = 0,
    bind: Annotated[
        list[str] | None, typer.Option(help="A bind SRC:/container/path[:ro] (repeatable).")
    ] = None,
    network: Annotated[str | None, typer.Option(help="Network mode: bridge, host, none…")] = None,
    cpus: Annotated[float | None, typer.Option(min=0.01, help="CPU limit, e.g. 0.5.")] = None,
    memory_mb: Annotated[int | None, typer.Option(min=1, help="Memory limit in MiB.")] = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="Create it disabled.")] = False,
    json: JsonOpt = False,
) -> None:
    """Define a task.

    Example: dockfleet tasks add disk_report --image busybox:1.36 --timeout 60 -- df -h /
    """
    body: dict[str, Any] = {
        "name": name,
        "image": image,
        "description": description,
        "env": key_values(env, "--env"),
        "requires_gpu": gpus > 0,
        "gpu_count": gpus,
        "max_retries": retries,
        "binds": bind or [],
        "enabled": not disabled,
    }
    optional: dict[str, Any] = {
        "command": command or None,
        "timeout_seconds": timeout,
        "network_mode": network,
    }
    optional |= {"cpu_limit": cpus, "memory_limit_mb": memory_mb}
    optional |= {"gpu_memory_mb": gpu_memory_mb, "gpu_name": gpu_name}
    body |= {k: v for k, v in optional.items() if v is not None}
    created = client(ctx).tasks.create(body)
    _show_task(created, json, "created")


def _show_task(task: TaskRead, json: bool, verb: str) -> None:
    emit(task, json, lambda: f"task {task.name} (#{task.id}) {verb}")


@tasks.command("show")
def show_task(ctx: typer.Context, task: TaskArg, json: JsonOpt = False) -> None:
    """Show one task definition."""
    found = client(ctx).tasks.get(task)
    emit(found, json, lambda: render.task_detail(found))


@tasks.command("enable")
def enable_task(ctx: typer.Context, task: TaskArg, json: JsonOpt = False) -> None:
    """Enable a task: runs may use it again."""
    _show_task(client(ctx).tasks.update(task, enabled=True), json, "enabled")


@tasks.command("disable")
def disable_task(ctx: typer.Context, task: TaskArg, json: JsonOpt = False) -> None:
    """Disable a task: launches naming it are refused (422)."""
    _show_task(client(ctx).tasks.update(task, enabled=False), json, "disabled")


@tasks.command("rm")
def remove_task(ctx: typer.Context, task: TaskArg, json: JsonOpt = False) -> None:
    """Delete a task definition (runs keep their own snapshot of it)."""
    found = client(ctx).tasks.get(task)
    client(ctx).tasks.delete(found.id)
    emit(
        {"id": found.id, "deleted": True}, json, lambda: f"task {found.name} (#{found.id}) deleted"
    )
