"""received updates: platform updates are stored before they are confirmed and deleted once
handled; replies cut off by max_tokens are stored as 'truncated'

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 11:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = "status IN ('complete', 'cancelled', 'timeout', 'error', 'pending', 'interrupted')"
NEW = ("status IN ('complete', 'cancelled', 'timeout', 'error', 'pending', 'interrupted', "
       "'truncated')")


def upgrade() -> None:
    op.create_table(
        "received_updates",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("update_id", sa.String(length=64), nullable=False),
        sa.Column("chat_id", sa.String(length=64), nullable=False),
        sa.Column("user_key", sa.String(length=100), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('received', 'started')",
                           name=op.f("ck_received_updates_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_received_updates")),
        sa.UniqueConstraint("platform", "update_id",
                            name=op.f("uq_received_updates_platform_update_id")),
    )
    with op.batch_alter_table("received_updates", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_received_updates_user_key"), ["user_key"],
                              unique=False)
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_messages_status"), type_="check")
        batch_op.create_check_constraint("status", NEW)


def downgrade() -> None:
    op.execute("UPDATE messages SET status = 'complete' WHERE status = 'truncated'")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_messages_status"), type_="check")
        batch_op.create_check_constraint("status", OLD)
    with op.batch_alter_table("received_updates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_received_updates_user_key"))
    op.drop_table("received_updates")
