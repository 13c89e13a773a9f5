"""Create the runbook's directive (`default`) unless it exists.

python examples/03_create_directive.py
python examples/03_create_directive.py --name nightly --task log_triage --task service_map
"""

from __future__ import annotations

import argparse

from app.client import DockfleetClient, DockfleetError


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--name", default="default")
    p.add_argument("--description", default="Default orchestrator directive")
    p.add_argument("--task", action="append", help="default task (repeatable); none = all")
    o = p.parse_args()
    with DockfleetClient() as fleet:
        try:
            directive = fleet.directives.get_by_name(o.name)
            print(f"directive {directive.name} exists (#{directive.id})")
        except DockfleetError as exc:
            if exc.status != 404:
                raise
            body = {"name": o.name, "description": o.description, "tasks": o.task or []}
            directive = fleet.directives.create(body)
            print(f"created directive {directive.name} (#{directive.id})")
    tasks = ", ".join(directive.tasks) or "every enabled task"
    print(f"  {directive.description!r}; tasks: {tasks}")
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except DockfleetError as exc:
        raise SystemExit(f"error: {exc}") from None
