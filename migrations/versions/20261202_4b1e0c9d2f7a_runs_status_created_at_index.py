"""runs: an index on (status, created_at) for the hot list

Revision ID: 4b1e0c9d2f7a
Revises: da67f518d2e3
Create Date: 2026-12-02 17:50:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "4b1e0c9d2f7a"
down_revision: str | None = "da67f518d2e3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index("ix_runs_status_created_at", ["status", "created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_status_created_at")
