"""Two processes on one database, one clock the test moves: every fire time of a schedule is
claimed once, its run created once (SQLite here; PostgreSQL with DOCKFLEET_TEST_POSTGRES_URL)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

from sqlmodel import col, select

from app.runs.models import Run
from app.schedules.models import ScheduleFire
from tests.live_server import ROOT
from tests.schedules.conftest import Bench

MINUTES = 25


def _drive(url: str, tmp_path: Path, start: datetime) -> tuple[list[int], list[int]]:
    """Start two workers, move their clock a minute at a time, stop them; their claim counts."""
    clock_file, stop_file = tmp_path / "clock", tmp_path / "stop"
    clock_file.write_text(start.isoformat())
    argv = [sys.executable, "-m", "tests.schedules.fire_worker", url, str(clock_file)]
    workers = [
        subprocess.Popen([*argv, str(stop_file)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    try:
        time.sleep(1.0)  # both are polling
        for minute in range(1, MINUTES + 1):
            tmp = tmp_path / "clock.tmp"
            tmp.write_text((start + timedelta(minutes=minute, seconds=1)).isoformat())
            tmp.replace(clock_file)  # atomic: a worker never reads half a time
            time.sleep(0.25)
        time.sleep(1.0)
    finally:
        stop_file.touch()
        counts = [int((w.communicate(timeout=60)[0] or "0").strip() or 0) for w in workers]
    return counts, [w.returncode for w in workers]


async def test_two_processes_fire_each_time_exactly_once(bench: Bench, tmp_path: Path) -> None:
    url = str(bench.state.db.url)
    start = bench.clock.current  # 12:00
    every = await bench.schedule(name="every-minute", cron="* * * * *", overlap="allow")
    counts, codes = await asyncio.to_thread(_drive, url, tmp_path, start)
    assert codes == [0, 0], codes
    assert sum(counts) == MINUTES, counts
    async with bench.state.db.sessions() as session:
        fires = (
            await session.exec(
                select(ScheduleFire).where(col(ScheduleFire.schedule_id) == every["id"])
            )
        ).all()
        runs = (await session.exec(select(Run).where(col(Run.schedule_id) == every["id"]))).all()
    dues = Counter(f.due_at for f in fires)
    expected = {start + timedelta(minutes=m) for m in range(1, MINUTES + 1)}
    assert set(dues) == expected and set(dues.values()) == {1}
    assert all(f.outcome == "launched" for f in fires)
    assert {r.id for r in runs} == {f.run_id for f in fires}
    assert len(runs) == MINUTES
    shown = await bench.show(every["id"])
    assert shown["next_fire_at"] == (start + timedelta(minutes=MINUTES + 1)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    print("claims per process:", counts)
