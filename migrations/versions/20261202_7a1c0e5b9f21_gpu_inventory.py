"""gpu inventory: probes, GPUs by UUID, GPU memory/name asks of tasks and runs

Revision ID: 7a1c0e5b9f21
Revises: f585b5770648, 4b1e0c9d2f7a (joins the events and the runs-index heads)
Create Date: 2026-12-02 18:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import app.db

revision: str = "7a1c0e5b9f21"
down_revision: str | tuple[str, ...] | None = ("f585b5770648", "4b1e0c9d2f7a")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _host_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["host_id"],
        ["worker_hosts.id"],
        name=op.f(f"fk_{table}_host_id_worker_hosts"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "gpu_probes",
        sa.Column("host_id", sa.Integer(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("image", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=True),
        sa.Column("probed_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("discovered_at", app.db.UTCDateTime(), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=True),
        sa.Column("found", sa.Integer(), nullable=False),
        sa.Column("cdi_devices", sa.JSON(), nullable=True),
        _host_fk("gpu_probes"),
        sa.PrimaryKeyConstraint("host_id", name=op.f("pk_gpu_probes")),
    )
    op.create_table(
        "gpus",
        sa.Column("host_id", sa.Integer(), nullable=False),
        sa.Column("uuid", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("memory_total_mb", sa.Integer(), nullable=True),
        sa.Column("memory_used_mb", sa.Integer(), nullable=True),
        sa.Column("utilization_pct", sa.Integer(), nullable=True),
        sa.Column("temperature_c", sa.Float(), nullable=True),
        sa.Column("power_w", sa.Float(), nullable=True),
        sa.Column("processes", sa.JSON(), nullable=True),
        sa.Column("present", sa.Boolean(), nullable=False),
        sa.Column("health_error", sa.Text(), nullable=True),
        sa.Column("busy_reason", sa.Text(), nullable=True),
        sa.Column("first_seen_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", app.db.UTCDateTime(), nullable=True),
        _host_fk("gpus"),
        sa.PrimaryKeyConstraint("host_id", "uuid", name=op.f("pk_gpus")),
    )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("gpu_memory_mb", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("gpu_name", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True)
        )
    with op.batch_alter_table("task_definitions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("gpu_memory_mb", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("gpu_name", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("task_definitions", schema=None) as batch_op:
        batch_op.drop_column("gpu_name")
        batch_op.drop_column("gpu_memory_mb")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("gpu_name")
        batch_op.drop_column("gpu_memory_mb")
    op.drop_table("gpus")
    op.drop_table("gpu_probes")
