"""Record one `schedule.failed` event in a database, as a fire on another replica would:
`python -m tests.notifiers.record_event DB_URL`."""

from __future__ import annotations

import asyncio
import sys

from app.db import Database
from app.events import store as events


async def main(url: str) -> None:
    db = Database(url)
    async with db.session_scope() as session:
        await events.record(
            session, "schedule.failed", schedule="offline", status_code=503, error="no hosts"
        )
    await db.dispose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
