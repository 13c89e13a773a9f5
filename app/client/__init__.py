"""Python clients of the dockfleet API (sync and async, on httpx), typed with the server's schemas.

    from app.client import DockfleetClient

    with DockfleetClient() as fleet:            # $DOCKFLEET_URL or http://localhost:9595
        host = fleet.hosts.get_by_name("Unraid")
        run = fleet.runs.launch(directive_id=1, target_host_id=host.id)
        run = fleet.wait_for_run(run.id, timeout=600)   # woken by the run's events
        for event in fleet.events(types="run.failed,host.*"):  # GET /api/events/ (SSE)
            print(event.id, event.type, event.run_id, event.host_id, event.data)

Every failure raises DockfleetError (`.status`, `.detail`; status None when unreachable).
"""

from app.client._core import DEFAULT_URL, DockfleetError, RunWaitTimeout
from app.client.aio import AsyncDockfleetClient
from app.client.sync import DockfleetClient
from app.directives.schemas import DirectivePage, DirectiveRead
from app.events.schemas import EventPage, EventRead
from app.hosts.schemas import HostCreate, HostHealth, HostPage, HostRead, HostType, HostUpdate
from app.notifiers.schemas import (
    DeliveryPage,
    DeliveryRead,
    NotifierKind,
    NotifierPage,
    NotifierRead,
)
from app.runs.schemas import RunLogs, RunPage, RunRead, RunStatus
from app.schedules.schemas import FirePage, FireRead, RunNowRead, SchedulePage, ScheduleRead
from app.tasks.schemas import TaskPage, TaskRead

__all__ = [
    "DEFAULT_URL",
    "AsyncDockfleetClient",
    "DeliveryPage",
    "DeliveryRead",
    "DirectivePage",
    "DirectiveRead",
    "DockfleetClient",
    "DockfleetError",
    "EventPage",
    "EventRead",
    "FirePage",
    "FireRead",
    "HostCreate",
    "HostHealth",
    "HostPage",
    "HostRead",
    "HostType",
    "HostUpdate",
    "NotifierKind",
    "NotifierPage",
    "NotifierRead",
    "RunLogs",
    "RunNowRead",
    "RunPage",
    "RunRead",
    "RunStatus",
    "RunWaitTimeout",
    "SchedulePage",
    "ScheduleRead",
    "TaskPage",
    "TaskRead",
]
