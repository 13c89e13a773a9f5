"""Watch a run to its end: stream its logs live, then print how each task ended.

    python examples/05_watch_run.py          # the newest run
    python examples/05_watch_run.py 3 --timeout 300

Exit 0 when the run succeeded, 1 when it failed or was cancelled (or the timeout passed).
"""

from __future__ import annotations

import argparse
import sys

from app.client import DockfleetClient, DockfleetError, RunStatus


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("run_id", type=int, nargs="?", help="default: the newest run")
    p.add_argument("--timeout", type=float, default=600, help="seconds to wait at most")
    o = p.parse_args()
    with DockfleetClient() as fleet:
        if o.run_id is None:
            newest = fleet.runs.list(limit=1).results
            if not newest:
                print("no runs yet: launch one with examples/04_launch_runs.py")
                return 1
            o.run_id = newest[0].id
        print(f"following run {o.run_id}")
        for chunk in fleet.runs.follow_logs(o.run_id):
            sys.stdout.write(chunk)
            sys.stdout.flush()
        run = fleet.runs.wait_for_run(o.run_id, timeout=o.timeout)
    print(f"run {run.id} on {run.worker_host_name}: {run.status.value}")
    for task in run.tasks:
        print(
            f"  {task.position + 1}. {task.task_name}: {task.status.value} (exit {task.exit_code})"
        )
    if run.error:
        print(f"  error: {run.error}")
    return 0 if run.status == RunStatus.succeeded else 1


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except DockfleetError as exc:
        raise SystemExit(f"error: {exc}") from None
