"""Wires the rooms beyond hosts into the app: their routers and background services."""

from __future__ import annotations

from fastapi import APIRouter

from app.deps import AppState


def routers() -> list[APIRouter]:
    """Routers of directives, tasks, runs, events, GPUs, the doctor, schedules and notifiers."""
    from app.directives.routes import router as directives_router
    from app.doctor.routes import router as doctor_router
    from app.events.routes import router as events_router
    from app.gpus.routes import router as gpus_router
    from app.notifiers.routes import router as notifiers_router
    from app.runs.routes import router as runs_router
    from app.schedules.routes import router as schedules_router
    from app.tasks.routes import router as tasks_router

    return [
        directives_router,
        tasks_router,
        runs_router,
        events_router,
        gpus_router,
        doctor_router,
        schedules_router,
        notifiers_router,
    ]


async def start_services(state: AppState) -> None:
    """Start the reconciler (adopts what survived a restart), the scheduler, the event janitor,
    the GPU prober, the schedules' firing loop and the notifications (feed and delivery)."""
    from app.events.janitor import Janitor
    from app.gpus.probe import GpuProber
    from app.notifiers.worker import Notifications
    from app.schedules.firing import Firer
    from app.scheduling.reconciler import Reconciler
    from app.scheduling.scheduler import Scheduler

    scheduler = Scheduler(state)
    reconciler = Reconciler(state, scheduler)
    prober = GpuProber(state)
    state.services["scheduler"] = scheduler
    state.services["reconciler"] = reconciler
    state.services["gpus"] = prober
    if state.monitor is not None:
        state.monitor.sweeper = reconciler.sweep  # a host that failed a check is swept first
        state.monitor.on_change.append(scheduler.host_changed)
        state.monitor.on_failure.append(scheduler.host_trouble)
        state.monitor.on_change.append(prober.host_changed)  # probe GPUs once it is healthy
    state.services["events_janitor"] = Janitor(state)
    reconciler.start()
    scheduler.start()
    state.services["events_janitor"].start()
    prober.start()
    state.services["schedules"] = Firer(state)
    state.services["schedules"].start()
    state.services["notifications"] = Notifications(state)
    state.services["notifications"].start()


async def stop_services(state: AppState) -> None:
    """Stop what start_services started."""
    for name in ("notifications", "schedules", "gpus", "events_janitor", "reconciler", "scheduler"):
        service = state.services.pop(name, None)
        if service is not None:
            await service.stop()
