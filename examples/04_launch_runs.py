"""Launch runs the runbook's three ways: default tasks, specific tasks, on a specific host.

    python examples/04_launch_runs.py
    python examples/04_launch_runs.py --directive nightly --target Unraid

The third launch targets the VM registered by 01 (or --target / $TARGET_HOST, an id or name);
it is skipped when that host is disabled. A launch no host can take is reported (503 and why
per host) and the others still go ahead; exit 1 if any launch was refused.
"""

from __future__ import annotations

import argparse
import os

from app.client import DockfleetClient, DockfleetError, HostRead, RunRead


def describe(run: RunRead) -> str:
    where = f" on {run.worker_host_name}" if run.worker_host_name else ""
    tasks = ", ".join(t.task_name for t in run.tasks)
    return f"run {run.id} {run.status.value}{where}: {tasks}"


def target_host(fleet: DockfleetClient, key: str | None) -> HostRead | None:
    """--target by id or name, else the first docker_tcp host named VM-… (from 01)."""
    if key:
        return fleet.hosts.get(int(key)) if key.isdigit() else fleet.hosts.get_by_name(key)
    return next((h for h in fleet.hosts.iter() if h.name.startswith("VM-")), None)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--directive", default="default", help="directive name")
    p.add_argument("--target", default=os.environ.get("TARGET_HOST"), help="$TARGET_HOST")
    o = p.parse_args()
    refused = 0
    with DockfleetClient() as fleet:
        directive = fleet.directives.get_by_name(o.directive)
        target = target_host(fleet, o.target)
        launches: list[tuple[str, dict]] = [
            ("default task selection", {}),
            ("specific tasks", {"tasks": ["log_triage", "gpu_report"]}),
        ]
        if target is not None and target.enabled:
            on_host = {"tasks": ["log_triage"], "target_host_id": target.id}
            launches.append((f"on host {target.name}", on_host))
        else:
            print("skipped: launch on a specific host (no enabled VM host; see 01 --vm-address)")
        for title, extra in launches:
            try:
                run = fleet.runs.launch(directive.id, **extra)
                print(f"{title}: {describe(run)}")
            except DockfleetError as exc:
                refused += 1
                print(f"{title}: refused: {exc}")
                for host in exc.body.get("hosts", []):
                    print(f"  {host['name']}: {'; '.join(host['reasons'])}")
    return 1 if refused else 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except DockfleetError as exc:
        raise SystemExit(f"error: {exc}") from None
