"""seed task definitions: log_triage, gpu_report, service_map

Revision ID: aa6ed19a2d33
Revises: 5c3dca69818a
Create Date: 2026-11-27 22:52:00.000000

Written by hand (data only, no schema change). The rows are spelled out here rather than
imported from app/ so that this revision stays what it was when it shipped.
"""

import json
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import context, op

revision: str = "aa6ed19a2d33"
down_revision: str | None = "5c3dca69818a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_COLUMNS = ("command", "env", "binds")


def _table(json_type: type[sa.types.TypeEngine[object]]) -> sa.TableClause:
    """The columns this revision writes (the rest stay NULL), JSON ones typed as given."""
    return sa.table(
        "task_definitions",
        sa.column("name", sa.String),
        sa.column("description", sa.String),
        sa.column("image", sa.String),
        *(sa.column(name, json_type) for name in JSON_COLUMNS),
        sa.column("requires_gpu", sa.Boolean),
        sa.column("gpu_count", sa.Integer),
        sa.column("timeout_seconds", sa.Integer),
        sa.column("max_retries", sa.Integer),
        sa.column("network_mode", sa.String),
        sa.column("enabled", sa.Boolean),
        sa.column("created_at", sa.DateTime),
        sa.column("updated_at", sa.DateTime),
    )


task_definitions = _table(sa.JSON)

# busybox sh: the 20 biggest files under the host's /var/log, then the last 200 lines of its
# *.log files (recursively) that mention error/fail/panic. Exit 0 even when nothing matches.
LOG_TRIAGE_SCRIPT = (
    'echo "== 20 largest files under /var/log (KiB on disk; /host/log is the host\'s /var/log) =="; '
    "find /host/log -type f -exec du -k {} + 2>/dev/null | sort -rn | head -n 20; "
    'echo "== last 200 lines matching error|fail|panic (any case) in *.log files =="; '
    "find /host/log -type f -name '*.log' -exec grep -iHE 'error|fail|panic' {} + 2>/dev/null"
    " | tail -n 200; "
    "exit 0"
)

SEEDS = [
    {
        "name": "log_triage",
        "description": "Largest files under the host's /var/log and its recent error/fail/panic lines.",
        "image": "busybox:1.36",
        "command": ["sh", "-c", LOG_TRIAGE_SCRIPT],
        "requires_gpu": False,
        "gpu_count": 0,
        "timeout_seconds": 300,
        "binds": ["/var/log:/host/log:ro"],
        "network_mode": "none",
    },
    {
        "name": "gpu_report",
        "description": "nvidia-smi CSV of each GPU: index, name, memory used/total, utilisation.",
        "image": "nvidia/cuda:12.4.1-base-ubuntu22.04",
        "command": [
            "nvidia-smi",
            "--query-gpu=index,name,memory.used,memory.total,utilization.gpu",
            "--format=csv",
        ],
        "requires_gpu": True,
        "gpu_count": 1,
        "timeout_seconds": 120,
        "binds": [],
        "network_mode": None,
    },
    {
        "name": "service_map",
        "description": "Listening TCP and UDP sockets of the host (netstat -tuln in its network).",
        "image": "busybox:1.36",
        "command": ["netstat", "-tuln"],
        "requires_gpu": False,
        "gpu_count": 0,
        "timeout_seconds": 60,
        "binds": [],
        "network_mode": "host",
    },
]
NAMES = [seed["name"] for seed in SEEDS]


def upgrade() -> None:
    now = datetime.now(UTC).replace(tzinfo=None)  # the tables store naive UTC
    defaults = {"env": {}, "max_retries": 0, "enabled": True, "created_at": now, "updated_at": now}
    rows = [{**defaults, **seed} for seed in SEEDS]
    if context.is_offline_mode():
        # `--sql`: JSON has no literal renderer, so write its text (both databases cast it).
        for row in rows:
            row.update({name: json.dumps(row[name]) for name in JSON_COLUMNS})
        op.bulk_insert(_table(sa.Text), rows)
        return
    # Keep a task a user already made under one of these names.
    query = sa.select(task_definitions.c.name).where(task_definitions.c.name.in_(NAMES))
    existing = set(op.get_bind().execute(query).scalars())
    rows = [row for row in rows if row["name"] not in existing]
    if rows:
        op.bulk_insert(task_definitions, rows)


def downgrade() -> None:
    op.execute(task_definitions.delete().where(task_definitions.c.name.in_(NAMES)))
