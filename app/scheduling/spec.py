"""How a task of a run becomes a container: its name, labels, env and limits."""

from __future__ import annotations

from app.engine.containers import ContainerSpec
from app.runs.models import Run, RunTask


def container_name(instance: str, run_id: int, task_id: int, attempt: int) -> str:
    """Deterministic, so a restarted orchestrator finds (and never duplicates) a container."""
    return f"dockfleet-{instance}-r{run_id}-t{task_id}-a{attempt}"


def labels(instance: str, run_id: int, task_id: int, attempt: int) -> dict[str, str]:
    """The labels every container of ours carries (how the reconciler finds them)."""
    return {
        "dockfleet.managed": "true",
        "dockfleet.run_id": str(run_id),
        "dockfleet.task_id": str(task_id),
        "dockfleet.attempt": str(attempt),
        "dockfleet.instance": instance,
    }


def build(instance: str, run: Run, task: RunTask) -> ContainerSpec:
    """The container for the current attempt of `task`."""
    assert run.id is not None and task.id is not None
    snap = task.task_snapshot
    env = {
        **(run.directive_snapshot or {}).get("env", {}),
        **(snap.get("env") or {}),
        "DOCKFLEET_RUN_ID": str(run.id),
        "DOCKFLEET_TASK": task.task_name,
        "DOCKFLEET_ATTEMPT": str(task.attempt),
    }
    return ContainerSpec(
        name=container_name(instance, run.id, task.id, task.attempt),
        image=snap["image"],
        command=snap.get("command") or None,
        env=env,
        labels=labels(instance, run.id, task.id, task.attempt),
        binds=list(snap.get("binds") or []),
        network_mode=snap.get("network_mode"),
        cpu_limit=snap.get("cpu_limit"),
        memory_limit_mb=snap.get("memory_limit_mb"),
        gpu_ids=list(run.gpu_device_ids) if snap.get("requires_gpu") else [],
    )
