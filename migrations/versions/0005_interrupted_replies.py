"""interrupted replies: a reply row is written as 'pending' before generation starts and
marked 'interrupted' at the next start if the process died before it finished

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 06:55:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = "status IN ('complete', 'cancelled', 'timeout', 'error')"
NEW = "status IN ('complete', 'cancelled', 'timeout', 'error', 'pending', 'interrupted')"


def upgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_messages_status"), type_="check")
        batch_op.create_check_constraint("status", NEW)


def downgrade() -> None:
    op.execute("UPDATE messages SET status = 'error' WHERE status IN ('pending', "
               "'interrupted')")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_messages_status"), type_="check")
        batch_op.create_check_constraint("status", OLD)
