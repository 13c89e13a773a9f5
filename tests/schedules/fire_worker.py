"""One "replica" for the exactly-once test: fires due schedules in a tight loop against the
database given, reading the time from a file the test moves, until a stop file appears.

    python -m tests.schedules.fire_worker DB_URL CLOCK_FILE STOP_FILE

Prints the number of fires it claimed (one line) when it stops.
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import datetime
from pathlib import Path

from sqlmodel import col, select

from app import clock
from app.config import Settings
from app.db import Database
from app.deps import AppState
from app.schedules.firing import Firer
from app.schedules.models import Schedule
from app.tasks.policy import TaskPolicy


def _stopped(stop_file: Path) -> bool:
    return stop_file.exists()


async def main(url: str, clock_file: Path, stop_file: Path) -> int:
    settings = Settings(
        _env_file=None,
        database_url=url,
        stale_after_seconds=10**9,
        schedule_grace_seconds=3600,
        db_busy_timeout_seconds=20,
    )
    db = Database(url, settings.db_busy_timeout_seconds)
    state = AppState(settings=settings, db=db, pool=None)  # type: ignore[arg-type]
    state.policy = TaskPolicy.of(settings)
    firer = Firer(state)
    claimed = 0
    deadline = time.monotonic() + 120  # bounded, whatever the test does
    with clock.use(lambda: datetime.fromisoformat(clock_file.read_text().strip())):
        while not _stopped(stop_file) and time.monotonic() < deadline:
            now = clock.now()
            async with db.sessions() as session:
                due = (
                    await session.exec(select(Schedule).where(col(Schedule.next_fire_at) <= now))
                ).all()
            for schedule in due:
                if await firer.fire_due(schedule, now) is not None:
                    claimed += 1
            await asyncio.sleep(0.002)
    await db.dispose()
    return claimed


if __name__ == "__main__":
    count = asyncio.run(main(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])))
    print(count, flush=True)
