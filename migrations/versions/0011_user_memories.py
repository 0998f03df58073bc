"""user memories: facts each user told a persona about themselves, one per slot

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-27 23:15:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "user_memories",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("persona", sa.String(length=64), nullable=False),
        sa.Column("slot", sa.String(length=100), nullable=False),
        sa.Column("clause", sa.Text(), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["message_id"], ["messages.id"],
                                name=op.f("fk_user_memories_message_id_messages"),
                                ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"],
                                name=op.f("fk_user_memories_user_id_users"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_memories")),
        sa.UniqueConstraint("user_id", "persona", "slot",
                            name=op.f("uq_user_memories_user_id_persona_slot")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("user_memories", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_user_memories_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("user_memories", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_user_memories_user_id"))
    op.drop_table("user_memories")
