"""server memories: a user memory remembers where it was told (private, or a server)

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-28 01:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("user_memories", schema=None) as batch_op:
        batch_op.add_column(sa.Column("scope", sa.String(length=100), server_default="",
                                      nullable=False))
        batch_op.drop_constraint("uq_user_memories_user_id_persona_slot", type_="unique")
        batch_op.create_unique_constraint(
            batch_op.f("uq_user_memories_user_id_persona_scope_slot"),
            ["user_id", "persona", "scope", "slot"])
        batch_op.create_index(batch_op.f("ix_user_memories_scope"), ["scope"], unique=False)


def downgrade() -> None:
    op.execute("DELETE FROM user_memories WHERE scope != ''")  # told in servers
    with op.batch_alter_table("user_memories", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_user_memories_scope"))
        batch_op.drop_constraint("uq_user_memories_user_id_persona_scope_slot",
                                 type_="unique")
        batch_op.create_unique_constraint(
            batch_op.f("uq_user_memories_user_id_persona_slot"), ["user_id", "persona", "slot"])
        batch_op.drop_column("scope")
